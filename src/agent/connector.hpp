// The agent's connection to the core: dial (TLS), AUTH, one mux::Session whose streams are
// forwarded to the local apps, and reconnection with backoff when the session ends.
//
// A refusal that retrying cannot fix (a bad token, a name taken or not allowed) ends run() with
// exit code 1; GOAWAY from a draining core starts a new session at once while the old one
// finishes its streams; stop() closes every session (CLOSE on stream 0) and run() returns 0.
// Every reconnect after a session that lasted less than `stable_after` (it ended, or the core
// sent GOAWAY) waits for the backoff, so a core that drops or sends away every agent at once
// cannot make it reconnect in a tight loop.
// Everything runs on one executor.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agent/allow_local.hpp"
#include "agent/health_check.hpp"
#include "agent/inspector.hpp"
#include "agent/local_pool.hpp"
#include "agent/metrics.hpp"
#include "common/async.hpp"
#include "common/net_address.hpp"
#include "common/version.hpp"
#include "mux/session.hpp"
#include "protocol/handshake.hpp"
#include "protocol/proxy_header.hpp"
#include "transport/tls.hpp"

namespace tunnel::agent {

inline constexpr std::string_view kAgentVersion = common::kVersion;

// One tunnel: what the core is asked for, and where its requests go.
struct ForwardSpec {
  protocol::TunnelRequest request;  // request.local is shown to the user
  common::NetAddress local;
  protocol::ProxyProtocol proxy_protocol =
      protocol::ProxyProtocol::kNone;  // header sent to the local app
  // A tunnel the core assigned whose target this agent does not forward to (outside
  // allow_local, or not an address): why. Its streams are refused.
  std::string refused;
  // Its series when the agent serves /metrics (set per session, from the core's reply).
  AgentTunnelMetrics* metrics = nullptr;
  // The active health check of its app (own tunnels only; none for assigned ones).
  HealthCheckSpec health;
};

// The tunnels the core assigned in its AUTH reply (each result's `local`), checked against the
// agent's allow list.
std::vector<ForwardSpec> assigned_tunnels(const protocol::AuthResponse& reply,
                                          const std::vector<LocalRule>& allow_local);

struct ConnectorOptions {
  std::string server_host = "localhost";
  std::uint16_t server_port = 8443;
  // Several cores (issue 19): the agent holds `connections` sessions to each and registers its
  // tunnels on every one. Empty: the one core at server_host:server_port.
  std::vector<common::NetAddress> servers;
  // Sessions per core; new streams come over all of them (the core round-robins). A session
  // that ends (missed PINGs, a lost connection) is replaced while the others carry the traffic.
  std::size_t connections = 1;
  // A session older than this is replaced: the new one is up before the old one drains
  // (GOAWAY to the core, the streams in flight finish). 0 = never.
  std::chrono::milliseconds session_max_age{0};
  transport::ClientTls tls;  // context == nullptr: plain TCP (tests)
  std::string token;
  std::string agent_id;
  // Sent in AUTH (protocol::AuthRequest::name, group); "" = not sent (the core uses the id).
  std::string name;
  std::string group;
  std::vector<ForwardSpec> tunnels;
  // No tunnels of its own: serve what the core assigns (protocol::kAssignedTunnels), forwarding
  // only to targets `allow_local` allows.
  bool assigned = false;
  std::vector<LocalRule> allow_local;
  std::uint32_t initial_window = 256 * 1024;
  std::size_t window_growth_budget = 32 * 1024 * 1024;  // mux::Options::window_growth_budget
  std::chrono::milliseconds dial_timeout{10'000};
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds backoff_base{100};
  std::chrono::milliseconds backoff_cap{10'000};
  std::chrono::milliseconds stable_after{10'000};  // a session that lived longer resets backoff
  LocalPool::Options pool;
  AgentMetrics* metrics = nullptr;  // null: no /metrics; must outlive the connector
  // The request inspector (agent/inspector.hpp), or nullptr when it is off; it outlives the
  // connector.
  Inspector* inspector = nullptr;
};

// A stable name for this agent process: the host name, cleaned, plus a random suffix.
std::string default_agent_id();

// The heartbeat interval the core asked for in its AUTH reply, kept within sane bounds (with a
// warning): a broken or hostile core must not make the agent ping every millisecond.
inline constexpr std::chrono::milliseconds kMinHeartbeatInterval{1'000};
inline constexpr std::chrono::milliseconds kMaxHeartbeatInterval{600'000};
std::chrono::milliseconds heartbeat_interval_from_core(std::uint32_t ms);

// Whether an AUTH refusal can go away by itself: decided by the refusal code (protocol
// refusal::k*): the core drains, an account limit (max_agents: it may still count our previous
// session), a name or port another account holds (it may be released, e.g. after a core
// restart), no free port. Final: a bad request or token, a name the account may not use. A core
// that sends no code (or one this build does not know) is judged by its English text.
bool refusal_is_retryable(std::string_view code, std::string_view error);

class Connector {
 public:
  // `time` (the agent main's) decides heartbeats, the pool's idle expiry and whether a session
  // lasted; it must outlive the connector.
  Connector(asio::any_io_executor executor, ConnectorOptions options, TimeSource& time);
  ~Connector();

  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // Connects and reconnects until stop() or a final refusal. Returns the process exit code:
  // 0 after stop(), 1 when the core refused us for good.
  asio::awaitable<int> run();
  // Closes the sessions cleanly and makes run() return. Call on the executor.
  void stop();

  // For tests and the console.
  std::size_t live_sessions() const { return live_.size(); }
  // The cores, "host:port", in the order given, and the sessions open to one of them now.
  std::vector<std::string> core_names() const;
  std::size_t live_sessions(std::size_t core) const;
  // The agent's own tunnels and their health (a tunnel without a health check is healthy).
  std::size_t tunnels_checked() const { return health_.size(); }
  bool health_checked(std::size_t tunnel) const { return (*tunnels_)[tunnel].health.enabled(); }
  bool tunnel_healthy(std::size_t tunnel) const { return health_[tunnel].state.healthy(); }
  const std::string& tunnel_local(std::size_t tunnel) const {
    return (*tunnels_)[tunnel].request.local;
  }
  std::uint64_t connects() const { return connects_; }
  // The round-trip time of the newest session's last PING, in seconds; 0 before one.
  double rtt_seconds() const;

 private:
  struct Live;
  struct CoreLink;
  struct Handshake {
    std::shared_ptr<mux::Session> session;
    std::shared_ptr<const std::vector<ForwardSpec>> tunnels;  // what this session serves
    protocol::AuthResponse reply;
    std::string error;
    bool final = false;  // a refusal: do not retry
  };
  asio::awaitable<Handshake> connect(CoreLink& core);
  asio::awaitable<void> serve(std::shared_ptr<Live> live);
  // Closes `live` once its streams are done, not before `grace` has passed.
  asio::awaitable<void> drain(std::shared_ptr<Live> live,
                              std::chrono::milliseconds grace = std::chrono::milliseconds(0));
  // One session's life to `core`, reconnected with backoff until stop() or a final refusal.
  asio::awaitable<void> run_slot(CoreLink& core, std::size_t slot);
  // Checks tunnel `index`'s app every interval until stop(); tells every session when its
  // health changes.
  asio::awaitable<void> health_loop(std::size_t index);
  void announce(const CoreLink& core, const protocol::AuthResponse& reply,
                const std::vector<ForwardSpec>& tunnels, bool first);
  void log_core_status(const CoreLink& core) const;

  asio::any_io_executor executor_;
  ConnectorOptions options_;
  TimeSource& time_;
  std::vector<std::unique_ptr<CoreLink>> cores_;
  std::shared_ptr<LocalPool> pool_;
  std::shared_ptr<const std::vector<ForwardSpec>> tunnels_;
  std::vector<std::shared_ptr<Live>> live_;
  struct TunnelHealth {
    HealthState state;
    std::string reason;  // the last failure, while unhealthy
  };
  std::vector<TunnelHealth> health_;  // per own tunnel
  std::size_t checks_running_ = 0;
  Signal wake_;  // stop(), a session ended, a GOAWAY
  bool stopping_ = false;
  bool refused_ = false;  // a slot ended on a final refusal
  std::size_t slots_running_ = 0;
  std::uint64_t connects_ = 0;
};

}  // namespace tunnel::agent
