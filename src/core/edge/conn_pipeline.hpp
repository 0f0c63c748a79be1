// The stages of a public tcp connection or udp client that are pure, and the filter interface
// the other stages call: the same shape as the HTTP pipeline (http_pipeline.hpp), one level
// down. TcpPort and UdpPort (tcp_tunnel.cpp, udp_tunnel.cpp) run them in order:
//
//   tcp: accept -> decide_connection() -> accept filters -> hop to the agent's worker -> stream
//        budget, OPEN_STREAM -> relay (mux::pump) -> finish (complete filters, log, metrics)
//   udp: a datagram from a new client address -> decide_connection() -> new-source filters ->
//        client session on the agent's worker -> stream budget, OPEN_STREAM -> relay (records)
//        -> finish (complete filters, log, metrics)
//
// decide_connection() picks the tunnel or the refusal from the port, the client and the port's
// counts alone: the per-tunnel and per-source-address caps (the counts live with the port, which
// keeps them exact however a connection ends). Filters carry the features that act per
// connection by policy (IP allow and deny lists, metrics per tunnel): a feature adds a filter,
// never a branch in the relay.
// A chain holds only configured filters and a listener or tunnel without any has none (a null
// chain), so an unconfigured feature costs one pointer test per connection and nothing per byte.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/agents/quota.hpp"
#include "core/agents/registry.hpp"
#include "core/control/config.hpp"
#include "protocol/handshake.hpp"

namespace tunnel::core {

// ---- sources

// A client's source as the per-address caps count it (limits.*_per_address): an IPv4 address,
// or the /64 of an IPv6 address, since one host usually holds a whole /64 (as the agent
// listener's handshake cap and failed-AUTH throttle count). IPv4-mapped IPv6 counts as IPv4.
struct SourceKey {
  std::uint64_t bits = 0;  // IPv4: the address; IPv6: its first 64 bits
  bool v6 = false;
  bool operator==(const SourceKey&) const = default;
};
SourceKey source_key(const boost::asio::ip::address& address);
std::string to_string(const SourceKey& key);  // "192.0.2.7", "2001:db8:1:2::/64"

struct SourceKeyHash {
  std::size_t operator()(const SourceKey& key) const {
    return std::hash<std::uint64_t>{}(key.bits ^ (key.v6 ? 0x9e3779b97f4a7c15ull : 0));
  }
};

// How many connections (tcp) or client sessions (udp) of one port each source has open. Holds
// only sources with at least one, so never more entries than the port's own cap. Thread-safe:
// a tcp port adds on its listener's worker and removes on the agents' workers.
class SourceCounts {
 public:
  std::uint32_t count(const SourceKey& key) const;
  void add(const SourceKey& key);
  void remove(const SourceKey& key);  // a key not counted is ignored
  std::size_t sources() const;        // with at least one open now

 private:
  mutable std::mutex mutex_;
  std::unordered_map<SourceKey, std::uint32_t, SourceKeyHash> counts_;
};

// What is known about a connection (tcp) or a new client address (udp) when it arrives.
struct ConnectionFacts {
  PortProtocol protocol = PortProtocol::kTcp;
  std::uint16_t port = 0;
  std::string_view peer;   // the client, "ip:port"
  std::string_view local;  // the address it reached, "ip:port"
  // tcp: connections of the port open now; udp: client sessions of the port now.
  std::uint32_t open = 0;
  // The same from the client's source address (SourceKey: an IPv4 address or an IPv6 /64).
  std::uint32_t open_from_source = 0;
};

// What a new udp client costs the clients the port has.
enum class UdpEviction {
  kNone,
  // The port has limits.max_clients_per_udp_tunnel clients: the least recently active one
  // makes room.
  kOldest,
  // The client's address has limits.max_clients_per_udp_tunnel_per_address: the least recently
  // active client of the same address makes room (an address churning through source ports
  // evicts only its own clients, never another address's).
  kOldestOfSource,
};

// What decide_connection() chose.
struct ConnectionDecision {
  Route route;          // valid when refusal is empty
  std::string refusal;  // "" = go on; else why (tcp: the connection closes; udp: dropped)
  // The refusal for metrics (the `reason` label of tunnel_tcp_connections_refused_total):
  // "no_agent", "tunnel_limit", "address_limit".
  std::string_view refusal_reason;
  UdpEviction evict = UdpEviction::kNone;  // udp only
  // What OPEN_STREAM carries: the client's and the listener's addresses, always (the agent
  // writes a PROXY header to its app from them when its tunnel asks for one; udp tunnels never
  // do, refused at registration).
  std::string open_payload;
};

// The registry's lookup for the port, as decide_connection() uses it (a stub in tests).
using PortLookup = std::function<LookupStatus(Route& out)>;

// Routes a connection to an agent of its port (round robin). Refuses when no agent serves the
// port and, for tcp, when the client's address has limits.max_connections_per_tcp_tunnel_per_
// address connections open to the port or the port has limits.max_connections_per_tcp_tunnel.
// A udp port evicts instead: the least recently active client of the same address when the
// address is at limits.max_clients_per_udp_tunnel_per_address, else the port's least recently
// active one when the port is at limits.max_clients_per_udp_tunnel. A per-address cap of 0 is
// no cap. The agent's stream budget (limits.streams_reserved_for_http) is checked later, on the
// agent's worker (stream_budget.hpp).
ConnectionDecision decide_connection(const ConnectionFacts& facts, const LimitsConfig& limits,
                                     const PortLookup& lookup);

// ---- filters

// A filter's answer: go on, or refuse with a reason (logged at a bounded rate and counted).
struct ConnectionVerdict {
  std::string refusal;  // "" = go on
  std::string_view by;  // the refusing filter's name (set by the chain)

  static ConnectionVerdict next() { return {}; }
  static ConnectionVerdict refuse(std::string reason) { return {std::move(reason), {}}; }
  bool proceed() const { return refusal.empty(); }
};

// The connection as filters see it; references stay valid for the connection's life.
struct ConnectionInfo {
  PortProtocol protocol = PortProtocol::kTcp;
  std::uint16_t port = 0;
  std::string_view peer;   // the client, "ip:port"
  std::string_view local;  // the address it reached, "ip:port"
  const Route& route;      // the tunnel: route.agent->account, route.tunnel_index
};

// How a connection (tcp) or a client session (udp) ended.
enum class ConnectionEnd {
  kRefused,  // closed before relaying: a later filter, the agent's stream budget, or the agent
  kClosed,   // both sides closed cleanly (tcp); ended by the agent (udp)
  kClient,   // the client's side failed (reset, error)
  kAgent,    // the agent reset the stream or its session ended
  kIdle,     // nothing either way for limits.tunnel_idle_timeout / udp_idle_timeout
  kEvicted,  // udp: a new client took its place (limits.max_clients_per_udp_tunnel)
};
std::string_view end_name(ConnectionEnd end);  // "refused", "closed", "client", ...

struct ConnectionSummary {
  ConnectionEnd end = ConnectionEnd::kClosed;
  std::string_view outcome;         // why, in words ("" after a clean close)
  std::uint64_t bytes_in = 0;       // from the client
  std::uint64_t bytes_out = 0;      // to the client
  std::uint64_t datagrams_in = 0;   // udp
  std::uint64_t datagrams_out = 0;  // udp
  double seconds = 0;
};

// Which hooks a connection filter implements; the edge skips hooks no filter of a chain asked
// for.
namespace conn_hook {
inline constexpr unsigned kAccept = 1u << 0;     // tcp: each accepted connection
inline constexpr unsigned kNewSource = 1u << 1;  // udp: each datagram from an address with no
                                                 // client session (a refused one asks again)
inline constexpr unsigned kComplete = 1u << 2;   // each connection or session that passed
}  // namespace conn_hook

// One feature on the path of tcp connections and udp clients. The accept and new-source hooks
// run on the listener's worker, before anything is sent to the agent; complete runs on the
// agent's worker. A filter is shared by every connection of its listener or tunnel, so hooks
// must be thread-safe.
class ConnectionFilter {
 public:
  virtual ~ConnectionFilter() = default;
  virtual std::string_view name() const = 0;
  virtual unsigned hooks() const = 0;  // a set of conn_hook::k*

  virtual ConnectionVerdict on_accept(const ConnectionInfo& /*connection*/) { return {}; }
  virtual ConnectionVerdict on_new_source(const ConnectionInfo& /*client*/) { return {}; }
  // Every connection whose accept (or new-source) hooks all passed, however it ended.
  virtual void on_complete(const ConnectionInfo& /*connection*/,
                           const ConnectionSummary& /*summary*/) {}
};

// An ordered list of connection filters (a listener's, or a tunnel's). Immutable once built;
// shared.
class ConnectionFilterChain {
 public:
  ConnectionFilterChain() = default;
  explicit ConnectionFilterChain(std::vector<std::shared_ptr<ConnectionFilter>> filters);

  bool empty() const { return filters_.empty(); }
  bool wants(unsigned hook_bits) const { return (hooks_ & hook_bits) != 0; }
  const std::vector<std::shared_ptr<ConnectionFilter>>& filters() const { return filters_; }

  // Runs the hook of every filter that has it, in order, until one refuses.
  ConnectionVerdict accept(const ConnectionInfo& connection) const;
  ConnectionVerdict new_source(const ConnectionInfo& client) const;
  void complete(const ConnectionInfo& connection, const ConnectionSummary& summary) const;

 private:
  std::vector<std::shared_ptr<ConnectionFilter>> filters_;
  unsigned hooks_ = 0;
};

// The listener's chain, then the tunnel's (either may be null): the verdict of the first
// refusal. `hook` is conn_hook::kAccept or kNewSource.
ConnectionVerdict admit(const ConnectionFilterChain* listener, const ConnectionFilterChain* tunnel,
                        unsigned hook, const ConnectionInfo& connection);
// The complete hooks of both chains (either may be null).
void complete(const ConnectionFilterChain* listener, const ConnectionFilterChain* tunnel,
              const ConnectionInfo& connection, const ConnectionSummary& summary);

// The chain every connection of a tcp or udp port passes, from the configuration; null while
// no feature configured for them needs one (today: none; IP lists and metrics come with issues
// 23 and 18).
std::shared_ptr<const ConnectionFilterChain> port_listener_filters(const Config& config);

// The account's quotas of the control plane's store (core/agents/quota.hpp) for tcp
// connections and udp client flows: one over max_connections, max_requests_per_second or
// bytes_per_month is refused (the tcp connection closed at once, the udp datagram dropped; both
// logged at a bounded rate naming the quota, and counted); an admitted one holds one of the
// account's connections until it completes, and its bytes count for the month. Last in the
// tunnel's chain: complete runs only for connections that passed every accept hook.
class QuotaConnectionFilter final : public ConnectionFilter {
 public:
  explicit QuotaConnectionFilter(std::shared_ptr<AccountQuota> quota) : quota_(std::move(quota)) {}
  std::string_view name() const override { return "quota"; }
  unsigned hooks() const override {
    return conn_hook::kAccept | conn_hook::kNewSource | conn_hook::kComplete;
  }
  ConnectionVerdict on_accept(const ConnectionInfo& connection) override;
  ConnectionVerdict on_new_source(const ConnectionInfo& client) override;
  void on_complete(const ConnectionInfo& connection, const ConnectionSummary& summary) override;

 private:
  std::shared_ptr<AccountQuota> quota_;
};

struct AccessScope;  // core/edge/access.hpp

// The chain of one tcp or udp tunnel, from what its agent asked for, its account's quota (null
// in a core without a store) and, when given, the access rules of the core and the account;
// null when it needs none. The error names a wrong access rule.
common::Result<std::shared_ptr<const ConnectionFilterChain>> tunnel_connection_filters(
    const protocol::TunnelRequest& request, const std::shared_ptr<AccountQuota>& quota,
    const AccessScope* access = nullptr);

}  // namespace tunnel::core
