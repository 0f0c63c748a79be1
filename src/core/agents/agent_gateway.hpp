// The core's side of an agent connection: TLS, the AUTH exchange, tunnel registration, and the
// mux session for the agent's life.
#pragma once

#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/agents/context.hpp"
#include "mux/session.hpp"
#include "protocol/handshake.hpp"

namespace tunnel::core {

// One connected agent. Lives on one worker (its session's executor).
class AgentSession {
 public:
  std::shared_ptr<mux::Session> session;
  std::string account;
  std::string agent_id;
  // What routes call it (docs/routing.md): the name it sent in AUTH, else its agent id; and the
  // group it declared ("" = none). Read-only after AUTH.
  std::string name;
  std::string group;
  std::int64_t registered_id = 0;      // the store's id of a registered agent; 0 = a token or JWT
  bool assigned = false;               // it serves what the store assigns to it, nothing of its own
  std::string peer;                    // its address
  std::string version;                 // as it said in AUTH
  std::int64_t connected_at = 0;       // Unix seconds
  std::vector<std::string> hostnames;  // index = tunnel index on the wire (tcp/udp: the url)
  std::vector<std::string> locals;
  // Streams its tcp and udp tunnels hold now (against raw_stream_budget()). Touched only on
  // the session's executor, where those relays run.
  std::uint32_t raw_streams = 0;
  // The agent sent GOAWAY on this session (it rotates it, or leaves): the registry's lookups pass
  // over it while another session serves the name. Set on the session's executor, read by any.
  std::atomic<bool> withdrawn{false};
  // Tunnels whose app fails the agent's health check (the agent's health notices; bit i = tunnel i,
  // tunnels from 64 on are never withdrawn). Set on the session's executor, read by any thread.
  std::atomic<std::uint64_t> unhealthy{0};
  bool tunnel_unhealthy(std::uint16_t index) const {
    return index < 64 && ((unhealthy.load(std::memory_order_relaxed) >> index) & 1u) != 0;
  }
  // Why tunnel `index` is unhealthy, as the agent said ("" when it is healthy). Any thread.
  std::string health_reason(std::uint16_t index) const;
  // Records a health report; true when it changed the tunnel's state.
  bool set_health(std::uint16_t index, bool healthy, const std::string& reason);

 private:
  mutable std::mutex health_mutex_;
  std::map<std::uint16_t, std::string> health_reasons_;
};

// Opens the public listener of a tcp or udp tunnel's port on `executor` (the edge implements
// it; the agent side only decides who may claim which port), or says why it cannot.
using PortOpener = std::function<common::Result<std::shared_ptr<PortListener>>(
    PortProtocol protocol, asio::any_io_executor executor, std::uint16_t port)>;

// The request filters of an http tunnel, from what its agent asked for, its account, the
// account's quota (null without a store) and its hostname (the edge implements it); null when
// the tunnel needs none. An error (what the agent asked for is wrong, e.g. an access rule)
// refuses the tunnel.
using TunnelFilterFactory = std::function<common::Result<std::shared_ptr<const FilterChain>>(
    const protocol::TunnelRequest& request, const Account& account,
    const std::shared_ptr<AccountQuota>& quota, const std::string& host)>;

// The connection filters of a tcp or udp tunnel, the same way (the edge implements it).
using ConnectionFilterFactory =
    std::function<common::Result<std::shared_ptr<const ConnectionFilterChain>>(
        const protocol::TunnelRequest& request, const Account& account,
        const std::shared_ptr<AccountQuota>& quota)>;

// An agent connection's place among those before AUTH (limits.max_agent_handshakes*): given
// back when AUTH succeeds (release()) or the connection ends. Move-only; empty = refused.
class HandshakeSlot {
 public:
  HandshakeSlot() = default;
  HandshakeSlot(HandshakeLimiter::Slot slot, observability::Gauge& gauge)
      : slot_(std::move(slot)), gauge_(&gauge) {}
  HandshakeSlot(HandshakeSlot&&) noexcept = default;
  HandshakeSlot& operator=(HandshakeSlot&& other) noexcept {
    if (this != &other) {
      release();
      slot_ = std::move(other.slot_);
      gauge_ = other.gauge_;
    }
    return *this;
  }
  ~HandshakeSlot();
  void release();
  explicit operator bool() const { return static_cast<bool>(slot_); }

 private:
  HandshakeLimiter::Slot slot_;
  observability::Gauge* gauge_ = nullptr;
};

class AgentGateway {
 public:
  AgentGateway(CoreContext& context, PortOpener open_port, TunnelFilterFactory tunnel_filters,
               ConnectionFilterFactory connection_filters = nullptr)
      : context_(context),
        open_port_(std::move(open_port)),
        tunnel_filters_(std::move(tunnel_filters)),
        connection_filters_(std::move(connection_filters)) {}

  // Serves one accepted TCP connection until the agent leaves. Never throws.
  asio::awaitable<void> serve(transport::tcp::socket socket, asio::ssl::context& tls);
  // The same without TLS (listen.agent_plain).
  asio::awaitable<void> serve_plain(transport::tcp::socket socket);

  // Sends GOAWAY to every agent (drain) and, after `grace`, closes what is left.
  void go_away_all();
  void close_all();
  // Resolves when no agent session has streams left.
  std::size_t session_count() const;
  // The connected agents now (a copy; each AgentSession is read-only after its AUTH).
  std::vector<std::shared_ptr<AgentSession>> agents() const;

 private:
  // A slot for a new connection, or an empty one (counted and logged) when a cap is reached.
  HandshakeSlot admit(const transport::tcp::socket& socket);
  asio::awaitable<void> serve_conn(std::unique_ptr<transport::Conn> conn, HandshakeSlot slot);
  asio::awaitable<void> run_session(std::unique_ptr<transport::Conn> conn,
                                    HandshakeSlot& handshake);
  // Registers `tunnels` (what the agent asked for, or what the store assigns to it when
  // `assigned`: each result then carries its local target); fills `response.tunnels`. False if
  // any was refused.
  bool register_tunnels(const std::vector<protocol::TunnelRequest>& tunnels, bool assigned,
                        const protocol::AuthRequest& request, const Authenticated& auth,
                        const Account& account, const ControlView* view,
                        const std::shared_ptr<AgentSession>& agent,
                        protocol::AuthResponse& response);
  // A tcp or udp tunnel: checks the port policy, claims the port (opening it if needed). On
  // a refusal, `code` gets its refusal code.
  common::Status register_port(const Account& account, const ControlView* view,
                               const protocol::TunnelRequest& request, std::size_t index,
                               const std::shared_ptr<AgentSession>& agent,
                               std::shared_ptr<const Throttle> throttle,
                               const std::shared_ptr<AccountQuota>& quota,
                               protocol::TunnelResult& result, std::string_view& code);

  // Tells the agents whose routes to `host` an explicit claim of `account` took away (NOTICE),
  // and logs it.
  void tell_displaced(const std::string& host, const std::string& account,
                      const std::vector<Route>& displaced);
  // Tells every agent of a name that `agent` now shares (round robin) so, in a NOTICE: a second
  // agent taking the same subdomain by mistake must not go unnoticed.
  void announce_shared_names(const AgentSession& agent);

  CoreContext& context_;
  PortOpener open_port_;
  TunnelFilterFactory tunnel_filters_;
  ConnectionFilterFactory connection_filters_;
  mutable std::mutex mutex_;
  std::vector<std::weak_ptr<AgentSession>> sessions_;
};

}  // namespace tunnel::core
