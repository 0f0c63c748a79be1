#include "core/edge/tcp_tunnel.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <chrono>

#include "core/agents/agent_gateway.hpp"
#include "core/edge/stream_budget.hpp"
#include "mux/pump.hpp"
#include "protocol/proxy_header.hpp"
#include "transport/accept.hpp"
#include "transport/conn.hpp"

namespace tunnel::core {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct TcpMetrics {
  explicit TcpMetrics(observability::Registry& r)
      : connections(r.counter("tunnel_tcp_connections_total",
                              "Public TCP connections accepted for tcp tunnels.")),
        refused(r.counter("tunnel_tcp_connections_refused_total",
                          "Public TCP connections closed at once: no agent could take them.")),
        active(r.gauge("tunnel_tcp_connections_active", "Public TCP connections open now.")),
        bytes_in(r.counter("tunnel_tcp_bytes_total", "Bytes relayed for tcp tunnels.",
                           {{"direction", "in"}})),
        bytes_out(r.counter("tunnel_tcp_bytes_total", "Bytes relayed for tcp tunnels.",
                            {{"direction", "out"}})) {}
  observability::Counter& connections;
  observability::Counter& refused;
  observability::Gauge& active;
  observability::Counter& bytes_in;   // from clients
  observability::Counter& bytes_out;  // to clients
};

// The core's side of the pump: the socket is a public client's connection.
class ClientPumpHooks final : public mux::PumpHooks {
 public:
  ClientPumpHooks(TcpMetrics& metrics, const Throttle* throttle)
      : metrics_(metrics), throttle_(throttle) {}

  bool throttled() const override { return throttle_ != nullptr; }
  asio::awaitable<void> throttle(mux::PumpDirection direction, std::size_t n) override {
    const Direction way =
        direction == mux::PumpDirection::kToStream ? Direction::kIn : Direction::kOut;
    co_await core::throttle(throttle_, way, n);
  }
  void forwarded(mux::PumpDirection direction, std::size_t n) override {
    (direction == mux::PumpDirection::kToStream ? metrics_.bytes_in : metrics_.bytes_out).inc(n);
  }
  std::string socket_failed(bool /*reading*/, const boost::system::error_code& ec) override {
    return "the client connection failed: " + ec.message();
  }

 private:
  TcpMetrics& metrics_;
  const Throttle* throttle_;  // bandwidth limits of the tunnel; null = none
};

// What the connections of one tcp port share: their count (limits.max_connections_per_tcp_tunnel)
// and the gate of refusal log lines. Relays of one port run on several agents' workers.
struct TcpBudget {
  std::atomic<std::uint32_t> connections{0};
  LogGate refusals;
  void refused(std::uint16_t port, const std::string& peer, const std::string& why) {
    std::uint64_t held = 0;
    if (!refusals.allow(held)) return;
    spdlog::warn(
        "tcp :{} {}: closed: {}{}", port, peer, why,
        held == 0 ? "" : " (" + std::to_string(held) + " more refused since the last line)");
  }
};

asio::awaitable<void> relay(tcp::socket client, Route route, std::uint16_t port,
                            std::shared_ptr<TcpMetrics> metrics, const LimitsConfig& limits,
                            std::shared_ptr<TcpBudget> budget) {
  const auto start = Clock::now();
  boost::system::error_code ignored;
  client.set_option(tcp::no_delay(true), ignored);
  const std::string peer = transport::remote_string(client);
  const std::string local = transport::endpoint_string(client.local_endpoint(ignored));
  auto session = route.agent->session;
  struct Slot {
    TcpBudget& budget;
    ~Slot() { budget.connections.fetch_sub(1, std::memory_order_relaxed); }
  } slot{*budget};
  std::string error = take_raw_stream(*route.agent, limits);
  if (!error.empty()) {
    metrics->refused.inc();
    budget->refused(port, peer, error);
    client.close(ignored);
    co_return;
  }
  struct RawSlot {
    AgentSession& agent;
    ~RawSlot() { release_raw_stream(agent); }
  } raw_slot{*route.agent};
  auto stream =
      session->open_stream(route.tunnel_index, protocol::format_addresses(peer, local), error);
  if (!stream) {
    metrics->refused.inc();
    budget->refused(port, peer,
                    "the agent " + session->name() + " cannot take connections: " + error);
    client.close(ignored);
    co_return;
  }
  metrics->active.inc();
  ClientPumpHooks hooks(*metrics, route.throttle.get());
  mux::PumpOptions options;
  options.reset_code = protocol::ErrorCode::kCancel;
  options.peer = "the agent";
  options.session = "the agent session";
  options.idle_timeout = limits.tunnel_idle_timeout;
  options.idle_setting = "limits.tunnel_idle_timeout";
  const mux::PumpResult r = co_await mux::pump(client, *stream, hooks, options);
  client.close(ignored);
  metrics->active.dec();
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  if (r.outcome.empty()) {
    spdlog::info("tcp :{} {} closed after {:.1f} ms in={} out={}", port, peer, ms, r.to_stream,
                 r.to_socket);
  } else {
    spdlog::info("tcp :{} {} closed after {:.1f} ms in={} out={}: {}", port, peer, ms, r.to_stream,
                 r.to_socket, r.outcome);
  }
}

class TcpPort : public PortListener, public std::enable_shared_from_this<TcpPort> {
 public:
  TcpPort(CoreContext& context, asio::any_io_executor executor, std::uint16_t port)
      : context_(context),
        executor_(executor),
        acceptor_(executor),
        port_(port),
        metrics_(std::make_shared<TcpMetrics>(context.metrics.registry)) {}

  bool bind(const std::string& host, std::string& error) {
    const auto ip = tunnels_host_address(host, error);
    if (!ip) return false;
    boost::system::error_code ec;
    const tcp::endpoint endpoint(*ip, port_);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      error = bind_error(port_, ec);
      return false;
    }
    return true;
  }

  void start() { asio::co_spawn(executor_, accept_loop(shared_from_this()), asio::detached); }

  void close() override {
    asio::post(executor_, [self = shared_from_this()] {
      boost::system::error_code ignored;
      self->acceptor_.close(ignored);
      spdlog::info("tcp :{} closed (no agent serves it)", self->port_);
    });
  }

 private:
  static asio::awaitable<void> accept_loop(std::shared_ptr<TcpPort> self) {
    const std::string what = "tcp :" + std::to_string(self->port_);
    co_await transport::accept_loop(self->acceptor_, what, [&self](tcp::socket socket) {
      self->metrics_->connections.inc();
      self->dispatch(std::move(socket));
    });
  }

  void dispatch(tcp::socket socket) {
    Route route;
    boost::system::error_code ec;
    if (context_.registry.lookup_port(PortProtocol::kTcp, port_, route) != LookupStatus::kFound) {
      metrics_->refused.inc();
      socket.close(ec);
      return;
    }
    const std::uint32_t limit = context_.config.limits.max_connections_per_tcp_tunnel;
    if (budget_->connections.fetch_add(1, std::memory_order_relaxed) >= limit) {
      budget_->connections.fetch_sub(1, std::memory_order_relaxed);
      metrics_->refused.inc();
      budget_->refused(port_, transport::remote_string(socket),
                       "the tunnel has " + std::to_string(limit) +
                           " connections open (limits.max_connections_per_tcp_tunnel)");
      socket.close(ec);
      return;
    }
    auto target = route.agent->session->get_executor();
    if (target != executor_) {
      // The relay must run where the agent's session lives: move the descriptor there.
      const auto protocol = socket.local_endpoint(ec).protocol();
      const auto fd = ec ? -1 : socket.release(ec);
      if (ec) {
        spdlog::warn("tcp :{}: cannot hand a connection to the agent's worker: {}", port_,
                     ec.message());
        budget_->connections.fetch_sub(1, std::memory_order_relaxed);
        return;
      }
      socket = tcp::socket(target, protocol, fd);
    }
    asio::co_spawn(target,
                   relay(std::move(socket), std::move(route), port_, metrics_,
                         context_.config.limits, budget_),
                   asio::detached);
  }

  CoreContext& context_;
  asio::any_io_executor executor_;
  tcp::acceptor acceptor_;
  std::uint16_t port_;
  std::shared_ptr<TcpMetrics> metrics_;
  std::shared_ptr<TcpBudget> budget_ = std::make_shared<TcpBudget>();
};

}  // namespace

std::string bind_error(std::uint16_t port, const boost::system::error_code& ec) {
  if (ec == asio::error::address_in_use) return "port " + std::to_string(port) + " is in use";
  return "port " + std::to_string(port) + ": " + ec.message();
}

std::optional<asio::ip::address> tunnels_host_address(const std::string& host, std::string& error) {
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(host, ec);
  if (ec) {
    error = "tunnels host \"" + host + "\" is not an IP address";
    return std::nullopt;
  }
  return ip;
}

std::shared_ptr<PortListener> open_tcp_port(CoreContext& context, asio::any_io_executor executor,
                                            const std::string& host, std::uint16_t port,
                                            std::string& error) {
  auto listener = std::make_shared<TcpPort>(context, std::move(executor), port);
  if (!listener->bind(host, error)) return nullptr;
  listener->start();
  return listener;
}

}  // namespace tunnel::core
