// Which agents serve which public hostname. Shared by every worker thread (guarded by a mutex;
// one short lookup per request).
//
// A hostname belongs to one account at a time. Several agents of that account may serve it and
// share its traffic round robin. When its last agent leaves, the name stays reserved for the
// account for `offline_hold` (requests get 503, not 404, and no other account can take it), so
// an agent restart or a core restart never hands the name to someone else.
//
// Ports of tcp and udp tunnels follow the same rules, keyed by (protocol, port): one account at
// a time, shared round robin by its agents, held for the account for `offline_hold` after its
// last agent leaves. The registry also owns the port's listener: it is opened by the first
// claim and closed when the last agent leaves. A port chosen by the core (port 0) goes back to
// the same holder (the tunnel's local target, within the account) when it asks again within the
// hold.
//
// Ownership outlives the process through owned()/restore() (an OwnershipStore keeps it): after
// a restart every name and port of the previous run is held for its account for
// `offline_hold`, so no other account can take it while the owner's agents reconnect.
//
// An account's explicit names (an exact subdomain or domain in its config) win over another
// account that holds the name only through a pattern ("*", "app-*", "*.example.org"): the
// explicit claim takes the name over, online or held. An online holder's routes are removed
// at once (its agents keep their sessions, and `claim` hands the routes back so that the
// gateway can tell those agents).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.hpp"
#include "common/time_source.hpp"
#include "core/agents/bandwidth.hpp"
#include "core/agents/usage.hpp"
#include "core/control/config.hpp"

namespace tunnel::core {

class AgentSession;
class AccountQuota;  // core/agents/quota.hpp
class TunnelSeries;  // core/agents/tunnel_metrics.hpp
class FilterChain;   // core/edge/http_pipeline.hpp: built by the edge, carried opaquely here
class ConnectionFilterChain;  // core/edge/conn_pipeline.hpp: the same for tcp/udp tunnels

struct Route {
  std::shared_ptr<AgentSession> agent;
  std::uint16_t tunnel_index = 0;
  std::string local;  // the agent's local target, for error pages ("localhost:3000")
  std::shared_ptr<const Throttle> throttle;  // bandwidth limits; null = none
  // http: the tunnel's own request filters (after the listener's); null = none.
  std::shared_ptr<const FilterChain> filters;
  // tcp/udp: the tunnel's own connection filters (after the port listener's); null = none.
  std::shared_ptr<const ConnectionFilterChain> connection_filters;
  // Where its requests are counted for the store's usage (core/agents/usage.hpp); null = not
  // counted (a core without a store).
  std::shared_ptr<UsageCounters> usage;
  // The account's quotas on live traffic (core/agents/quota.hpp); null = none (a core without a
  // store). The filters that enforce them hold it too.
  std::shared_ptr<AccountQuota> quota{};
  // Its series in the per-tunnel metrics (core/agents/tunnel_metrics.hpp), resolved at
  // registration; null = not counted per tunnel.
  std::shared_ptr<TunnelSeries> metrics{};
};

// kUnhealthy: every agent serving the name reports its app unhealthy (the route found is one of
// them, for the reason).
enum class LookupStatus { kFound, kUnknown, kOffline, kUnhealthy };

// One agent (an agent id within an account) may hold several sessions (the agent's
// --connections, a GOAWAY handover, a rotation): they count once against max_agents, and at most
// this many at a time.
inline constexpr std::size_t kMaxSessionsPerAgent = 16;
enum class AddAgent { kAdded, kTooManyAgents, kTooManySessions };

enum class PortProtocol { kTcp, kUdp };
std::string_view protocol_name(PortProtocol protocol);  // "tcp", "udp"

// A bound public port (a TCP listener or a UDP socket). close() may be called from any thread.
class PortListener {
 public:
  virtual ~PortListener() = default;
  virtual void close() = 0;
};

// Binds `port` (never 0), or says why it cannot ("port 15432 is in use").
using OpenPort = std::function<common::Result<std::shared_ptr<PortListener>>(std::uint16_t port)>;

class Registry {
 public:
  using Clock = std::chrono::steady_clock;
  // Holds and their expiry are measured by `time` (which must outlive the registry).
  explicit Registry(TimeSource& time, std::chrono::seconds offline_hold = std::chrono::minutes(10))
      : time_(time), offline_hold_(offline_hold) {}

  // Adds `route` for `host` on behalf of `account`. An error if another account holds the name
  // (online or recently) and this claim does not win over it (see above).
  // `explicit_name`: the account's config names this host exactly (not through a pattern).
  // `displaced` (optional) gets the routes of another account's agents that this explicit claim
  // took the name from: they stay connected but no longer get the name's traffic, and should be
  // told.
  // `max_held`: the most names and ports the account may hold (accounts[].max_names; 0 =
  // unlimited): a claim that would add one more is refused, naming the key.
  common::Status claim(const std::string& host, const std::string& account, Route route,
                       bool explicit_name = false, std::vector<Route>* displaced = nullptr,
                       std::size_t max_held = 0);
  // Removes every route of `agent` (it disconnected); its names go offline if it was the last.
  void release_agent(const AgentSession* agent);
  // Undoes the claims of an agent whose AUTH was refused: names and ports it took fresh are
  // forgotten at once (no offline hold, so a refused AUTH reserves nothing), and those it joined
  // are left as they were before (a hold keeps its original start). Listeners it opened close.
  void rollback_agent(const AgentSession* agent);
  // Picks the next agent for `host` (round robin), passing over sessions that are withdrawn
  // (AgentSession::withdrawn: the agent said GOAWAY) and tunnels whose app the agent reports
  // unhealthy while another route is neither. When every route's app is unhealthy: kUnhealthy.
  LookupStatus lookup(const std::string& host, Route& out);
  // Every route of `host` now (several when agents share it round robin).
  std::vector<Route> routes_of(const std::string& host) const;

  // Connected agents of an account (distinct agent ids, for max_agents).
  std::size_t agents_of(const std::string& account) const;
  // Counts one more session of `agent_id`: refused when it is a new agent and the account has
  // `limit` agents (0 = unlimited), or the agent has kMaxSessionsPerAgent sessions.
  AddAgent add_agent(const std::string& account, const std::string& agent_id, std::size_t limit);
  void remove_agent(const std::string& account, const std::string& agent_id);
  // Tunnels the account's connected agents asked for (limits.max_tunnels_per_account): adds
  // `n` unless that would pass `limit` (0 = unlimited); `serving` gets the count before.
  bool add_tunnels(const std::string& account, std::size_t n, std::size_t limit,
                   std::size_t& serving);
  void remove_tunnels(const std::string& account, std::size_t n);

  std::size_t hostname_count() const;
  // Names and ports the account holds: served, held after its agents left, restored from a
  // previous run (what accounts[].max_names caps; expired holds may count until swept).
  std::size_t held_by(const std::string& account) const;
  std::chrono::seconds offline_hold() const { return offline_hold_; }
  TimeSource& time() const { return time_; }
  // time().system_time() in unix seconds, for owned() and restore().
  std::int64_t now_unix() const;

  // Adds `route` for `port` on behalf of `account`, opening the port with `open` when no agent
  // serves it yet. Port 0 picks a free port in `rules.ranges` (random start). `rules.ranges` is
  // not checked for an explicit port (the caller does, to word the refusal). Returns the port,
  // or why not: taken by another account, the account's max_ports reached, or `open` failed.
  // `holder` names who asks (the gateway uses the tunnel's local target: agent ids change when
  // an agent restarts): a port 0 request gets back the port its holder had when that port is
  // held for the account.
  // `max_held` as for claim().
  common::Result<std::uint16_t> claim_port(PortProtocol protocol, std::uint16_t port,
                                           const std::string& account, const PortRules& rules,
                                           Route route, const OpenPort& open,
                                           const std::string& holder = "",
                                           std::size_t max_held = 0);
  // Picks the next agent for a port (round robin).
  LookupStatus lookup_port(PortProtocol protocol, std::uint16_t port, Route& out);
  // Ports of `protocol` that `account` serves now (with at least one agent).
  std::size_t ports_of(PortProtocol protocol, const std::string& account) const;

  // Who owns what, for a store that outlives the process (core/agents/ownership_store.hpp).
  struct Owned {
    std::string key;  // a hostname, or "tcp:15432" / "udp:5353"
    std::string account;
    std::string holder;  // ports: the holder of the last claim; "" for names
    bool explicit_name = false;
    std::int64_t offline_since = 0;  // unix seconds; 0 = served when the snapshot was taken
  };
  std::vector<Owned> owned(std::int64_t now_unix) const;
  // Adds what a previous run owned as held (offline) entries: served ones are held for
  // `offline_hold` from now, offline ones for what is left of their hold. Entries already
  // present win. Returns how many were added.
  std::size_t restore(const std::vector<Owned>& owned, std::int64_t now_unix);
  // Changes whenever owned() would: compare to decide whether to save.
  std::uint64_t generation() const;

 private:
  struct Entry {
    std::string account;
    std::vector<Route> routes;
    std::size_t next = 0;
    Clock::time_point offline_since{};
    bool explicit_name = false;
  };
  bool expired(const Entry& entry, Clock::time_point now) const {
    return entry.routes.empty() && now - entry.offline_since > offline_hold_;
  }

  struct PortEntry {
    std::string account;
    std::vector<Route> routes;
    std::size_t next = 0;
    Clock::time_point offline_since{};
    std::shared_ptr<PortListener> listener;  // null while offline
    std::string holder;
  };
  static std::uint32_t port_key(PortProtocol protocol, std::uint16_t port) {
    return (protocol == PortProtocol::kUdp ? 0x10000u : 0u) | port;
  }
  bool port_expired(const PortEntry& entry, Clock::time_point now) const {
    return entry.routes.empty() && now - entry.offline_since > offline_hold_;
  }
  std::size_t ports_of_locked(PortProtocol protocol, const std::string& account) const;
  // Keeps held_ in step with the entries of hosts_ and ports_. Lock held.
  void count_in(const std::string& account) { ++held_[account]; }
  void count_out(const std::string& account);
  // Forgets expired holds (a full walk). Lock held.
  void sweep_locked(Clock::time_point now);
  // Success when `account` may hold one more name or port, else the refusal. A full sweep
  // first when at the limit, at most once a second. Lock held.
  common::Status check_held_limit(const std::string& account, std::size_t max_held);
  // Adds the route to a port entry (opening it if needed). Lock held.
  common::Status claim_port_locked(PortProtocol protocol, std::uint16_t port,
                                   const std::string& account, Route& route, const OpenPort& open,
                                   const std::string& holder);

  // What each connected agent claimed, so releasing it touches only those entries.
  struct Claims {
    std::vector<std::string> hosts;
    std::vector<std::uint32_t> ports;
    // The subset this agent created (no entry, or another account's expired one, before).
    std::vector<std::string> created_hosts;
    std::vector<std::uint32_t> created_ports;
  };
  static constexpr auto kSweepInterval = std::chrono::seconds(60);

  TimeSource& time_;
  mutable std::mutex mutex_;
  std::unordered_map<const AgentSession*, Claims> claims_;
  Clock::time_point last_sweep_{};
  std::unordered_map<std::string, Entry> hosts_;
  std::unordered_map<std::uint32_t, PortEntry> ports_;
  // account -> agent id -> sessions
  std::unordered_map<std::string, std::unordered_map<std::string, std::size_t>> agents_per_account_;
  std::unordered_map<std::string, std::size_t> tunnels_per_account_;
  std::unordered_map<std::string, std::size_t> held_;  // entries of hosts_ and ports_ per account
  std::chrono::seconds offline_hold_;
  std::uint64_t generation_ = 0;
};

}  // namespace tunnel::core
