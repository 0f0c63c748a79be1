#include "core/edge/tcp_tunnel.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <chrono>

#include "core/agents/agent_gateway.hpp"
#include "core/edge/conn_pipeline.hpp"
#include "core/edge/stream_budget.hpp"
#include "mux/pump.hpp"
#include "transport/accept.hpp"
#include "transport/conn.hpp"

namespace tunnel::core {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kRefusedHelp =
    "Public TCP connections closed at once, by reason: no agent serves the port (no_agent), "
    "limits.max_connections_per_tcp_tunnel (tunnel_limit), "
    "limits.max_connections_per_tcp_tunnel_per_address (address_limit), a connection filter "
    "(filter), the agent's stream budget for tcp/udp tunnels (stream_budget), the agent could "
    "not open a stream (agent).";

struct TcpMetrics {
  explicit TcpMetrics(observability::Registry& r)
      : connections(r.counter("tunnel_tcp_connections_total",
                              "Public TCP connections accepted for tcp tunnels.")),
        refused_no_agent(r.counter("tunnel_tcp_connections_refused_total", kRefusedHelp,
                                   {{"reason", "no_agent"}})),
        refused_tunnel_limit(r.counter("tunnel_tcp_connections_refused_total", kRefusedHelp,
                                       {{"reason", "tunnel_limit"}})),
        refused_address_limit(r.counter("tunnel_tcp_connections_refused_total", kRefusedHelp,
                                        {{"reason", "address_limit"}})),
        refused_filter(r.counter("tunnel_tcp_connections_refused_total", kRefusedHelp,
                                 {{"reason", "filter"}})),
        refused_stream_budget(r.counter("tunnel_tcp_connections_refused_total", kRefusedHelp,
                                        {{"reason", "stream_budget"}})),
        refused_agent(
            r.counter("tunnel_tcp_connections_refused_total", kRefusedHelp, {{"reason", "agent"}})),
        active(r.gauge("tunnel_tcp_connections_active", "Public TCP connections open now.")),
        bytes_in(r.counter("tunnel_tcp_bytes_total", "Bytes relayed for tcp tunnels.",
                           {{"direction", "in"}})),
        bytes_out(r.counter("tunnel_tcp_bytes_total", "Bytes relayed for tcp tunnels.",
                            {{"direction", "out"}})) {}
  // The counter of a refusal's reason (ConnectionDecision::refusal_reason, or the stage's own).
  observability::Counter& refused(std::string_view reason) {
    if (reason == "no_agent") return refused_no_agent;
    if (reason == "tunnel_limit") return refused_tunnel_limit;
    if (reason == "address_limit") return refused_address_limit;
    if (reason == "filter") return refused_filter;
    if (reason == "stream_budget") return refused_stream_budget;
    return refused_agent;
  }
  observability::Counter& connections;
  observability::Counter& refused_no_agent;
  observability::Counter& refused_tunnel_limit;
  observability::Counter& refused_address_limit;
  observability::Counter& refused_filter;
  observability::Counter& refused_stream_budget;
  observability::Counter& refused_agent;
  observability::Gauge& active;
  observability::Counter& bytes_in;   // from clients
  observability::Counter& bytes_out;  // to clients
};

// The core's side of the pump: the socket is a public client's connection.
class ClientPumpHooks final : public mux::PumpHooks {
 public:
  ClientPumpHooks(TcpMetrics& metrics, const Throttle* throttle)
      : metrics_(metrics), throttle_(throttle) {}

  bool throttled() const override { return Throttle::engaged(throttle_); }
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

// What the connections of one tcp port share: their count (limits.max_connections_per_tcp_tunnel),
// their count per source address (limits.max_connections_per_tcp_tunnel_per_address) and the gate
// of refusal log lines. Relays of one port run on several agents' workers.
struct TcpBudget {
  std::atomic<std::uint32_t> connections{0};
  SourceCounts sources;  // only while the per-address cap is on
  LogGate refusals;
  void refused(std::uint16_t port, std::string_view peer, std::string_view why, MonotonicTime now) {
    std::uint64_t held = 0;
    if (!refusals.allow(held, now)) return;
    spdlog::warn(
        "tcp :{} {}: closed: {}{}", port, peer, why,
        held == 0 ? "" : " (" + std::to_string(held) + " more refused since the last line)");
  }
};

// What the stages after the accept hand on: who connected, where it goes, and since when.
struct TcpConnection {
  std::string peer;   // the client, "ip:port"
  std::string local;  // the address it reached
  SourceKey source;   // counted in TcpBudget::sources when `counted`
  bool counted = false;
  ConnectionDecision decision;
  Clock::time_point start;
};

class TcpPort : public PortListener, public std::enable_shared_from_this<TcpPort> {
 public:
  TcpPort(CoreContext& context, asio::any_io_executor executor, std::uint16_t port,
          std::shared_ptr<const ConnectionFilterChain> filters)
      : context_(context),
        executor_(executor),
        acceptor_(executor),
        port_(port),
        metrics_(std::make_shared<TcpMetrics>(context.metrics.registry)),
        filters_(std::move(filters)) {}

  common::Status bind(const std::string& host, int adopt_fd) {
    const auto ip = tunnels_host_address(host);
    if (!ip) return ip.error();
    boost::system::error_code ec;
    const tcp::endpoint endpoint(ip.value(), port_);
    if (adopt_fd >= 0) {
      acceptor_.assign(endpoint.protocol(), adopt_fd, ec);
      if (ec) {
        ::close(adopt_fd);
        return common::fail(bind_error(port_, ec));
      }
      fd_ = adopt_fd;
      return common::success();
    }
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return common::fail(bind_error(port_, ec));
    fd_ = acceptor_.native_handle();
    return common::success();
  }

  int fd() const { return fd_; }

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

  // A connection closed before any stream was opened for it: counted, logged (at most one line
  // per 10 s per port).
  void refuse(tcp::socket& socket, std::string_view peer, std::string_view reason,
              std::string_view why) {
    boost::system::error_code ignored;
    metrics_->refused(reason).inc();
    budget_->refused(port_, peer, why, context_.time.monotonic_time());
    socket.close(ignored);
  }

  // Accept, decide and the accept filters, on the listener's worker; then the hop to the agent's.
  void dispatch(tcp::socket socket) {
    boost::system::error_code ec;
    TcpConnection c;
    c.start = Clock::now();
    const auto remote = socket.remote_endpoint(ec);
    c.peer = ec ? std::string("unknown") : transport::endpoint_string(remote);
    c.local = transport::endpoint_string(socket.local_endpoint(ec));
    // Only this worker adds connections (relays elsewhere only take theirs away), so the counts
    // cannot pass the limits between the check and the add below.
    ConnectionFacts facts{PortProtocol::kTcp, port_, c.peer, c.local,
                          budget_->connections.load(std::memory_order_relaxed)};
    const bool per_source = context_.config.limits.max_connections_per_tcp_tunnel_per_address != 0;
    if (per_source) {
      c.source = source_key(remote.address());
      facts.open_from_source = budget_->sources.count(c.source);
    }
    c.decision = decide_connection(facts, context_.config.limits, [this](Route& out) {
      return context_.registry.lookup_port(PortProtocol::kTcp, port_, out);
    });
    if (!c.decision.refusal.empty()) {
      refuse(socket, c.peer, c.decision.refusal_reason, c.decision.refusal);
      return;
    }
    const ConnectionFilterChain* tunnel_filters = c.decision.route.connection_filters.get();
    if (filters_ || tunnel_filters) {
      const ConnectionInfo info{PortProtocol::kTcp, port_, c.peer, c.local, c.decision.route};
      const ConnectionVerdict verdict =
          admit(filters_.get(), tunnel_filters, conn_hook::kAccept, info);
      if (!verdict.proceed()) {
        refuse(socket, c.peer, "filter",
               "refused by " + std::string(verdict.by) + ": " + verdict.refusal);
        return;
      }
    }
    budget_->connections.fetch_add(1, std::memory_order_relaxed);
    if (per_source) {
      budget_->sources.add(c.source);
      c.counted = true;
    }
    auto target = c.decision.route.agent->session->get_executor();
    if (target != executor_) {
      // The relay must run where the agent's session lives: move the descriptor there.
      const auto protocol = socket.local_endpoint(ec).protocol();
      const auto fd = ec ? -1 : socket.release(ec);
      if (ec) {
        spdlog::warn("tcp :{}: cannot hand a connection to the agent's worker: {}", port_,
                     ec.message());
        budget_->connections.fetch_sub(1, std::memory_order_relaxed);
        if (c.counted) budget_->sources.remove(c.source);
        return;
      }
      socket = tcp::socket(target, protocol, fd);
    }
    asio::co_spawn(target, relay(shared_from_this(), std::move(socket), std::move(c)),
                   asio::detached);
  }

  // On the agent's worker: the agent's stream budget, OPEN_STREAM, the relay, and the finish.
  static asio::awaitable<void> relay(std::shared_ptr<TcpPort> self, tcp::socket client,
                                     TcpConnection c) {
    const LimitsConfig& limits = self->context_.config.limits;
    TcpMetrics& metrics = *self->metrics_;
    const Route& route = c.decision.route;
    boost::system::error_code ignored;
    client.set_option(tcp::no_delay(true), ignored);
    struct Slot {
      TcpBudget& budget;
      const TcpConnection& connection;
      ~Slot() {
        budget.connections.fetch_sub(1, std::memory_order_relaxed);
        if (connection.counted) budget.sources.remove(connection.source);
      }
    } slot{*self->budget_, c};
    const ConnectionInfo info{PortProtocol::kTcp, self->port_, c.peer, c.local, route};
    ConnectionSummary summary;
    std::string error;
    if (auto taken = take_raw_stream(*route.agent, limits); !taken) {
      error = std::move(taken).error().message;
      self->refuse(client, c.peer, "stream_budget", error);
      summary.end = ConnectionEnd::kRefused;
      summary.outcome = error;
      self->finish(info, summary, c.start);
      co_return;
    }
    struct RawSlot {
      AgentSession& agent;
      ~RawSlot() { release_raw_stream(agent); }
    } raw_slot{*route.agent};
    auto session = route.agent->session;
    auto opened = session->open_stream(route.tunnel_index, c.decision.open_payload);
    if (!opened) {
      error =
          "the agent " + session->name() + " cannot take connections: " + opened.error().message;
      self->refuse(client, c.peer, "agent", error);
      summary.end = ConnectionEnd::kRefused;
      summary.outcome = error;
      self->finish(info, summary, c.start);
      co_return;
    }
    const std::shared_ptr<mux::Stream> stream = std::move(opened).value();
    metrics.active.inc();
    ClientPumpHooks hooks(metrics, route.throttle.get());
    mux::PumpOptions options;
    options.reset_code = protocol::ErrorCode::kCancel;
    options.peer = "the agent";
    options.session = "the agent session";
    options.idle_timeout = limits.tunnel_idle_timeout;
    options.idle_setting = "limits.tunnel_idle_timeout";
    const mux::PumpResult r = co_await mux::pump(client, *stream, hooks, options);
    client.close(ignored);
    metrics.active.dec();
    summary.end = r.outcome.empty() ? ConnectionEnd::kClosed
                  : r.idle          ? ConnectionEnd::kIdle
                  : r.socket_failed ? ConnectionEnd::kClient
                                    : ConnectionEnd::kAgent;
    summary.outcome = r.outcome;
    summary.bytes_in = r.to_stream;
    summary.bytes_out = r.to_socket;
    if (route.usage) {
      route.usage->add(r.to_stream, r.to_socket, summary.end == ConnectionEnd::kAgent);
    }
    const double seconds = self->finish(info, summary, c.start);
    if (r.outcome.empty()) {
      spdlog::info("tcp :{} {} closed after {:.1f} ms in={} out={}", self->port_, c.peer,
                   seconds * 1000, r.to_stream, r.to_socket);
    } else {
      spdlog::info("tcp :{} {} closed after {:.1f} ms in={} out={}: {}", self->port_, c.peer,
                   seconds * 1000, r.to_stream, r.to_socket, r.outcome);
    }
  }

  // The complete hooks of a connection that passed the accept hooks. Returns its duration.
  double finish(const ConnectionInfo& info, ConnectionSummary& summary, Clock::time_point start) {
    summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    complete(filters_.get(), info.route.connection_filters.get(), info, summary);
    return summary.seconds;
  }

  CoreContext& context_;
  asio::any_io_executor executor_;
  tcp::acceptor acceptor_;
  std::uint16_t port_;
  int fd_ = -1;  // the acceptor's descriptor (an upgrade hands it over)
  std::shared_ptr<TcpMetrics> metrics_;
  std::shared_ptr<TcpBudget> budget_ = std::make_shared<TcpBudget>();
  std::shared_ptr<const ConnectionFilterChain> filters_;  // the listener's; null = none
};

}  // namespace

std::string bind_error(std::uint16_t port, const boost::system::error_code& ec) {
  if (ec == asio::error::address_in_use) return "port " + std::to_string(port) + " is in use";
  return "port " + std::to_string(port) + ": " + ec.message();
}

common::Result<asio::ip::address> tunnels_host_address(const std::string& host) {
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(host, ec);
  if (ec) return common::fail("tunnels host \"" + host + "\" is not an IP address");
  return ip;
}

common::Result<std::shared_ptr<PortListener>> open_tcp_port(
    CoreContext& context, asio::any_io_executor executor, const std::string& host,
    std::uint16_t port, std::shared_ptr<const ConnectionFilterChain> listener_filters, int adopt_fd,
    int* bound_fd) {
  auto listener =
      std::make_shared<TcpPort>(context, std::move(executor), port, std::move(listener_filters));
  if (auto bound = listener->bind(host, adopt_fd); !bound) return bound.error();
  if (bound_fd != nullptr) *bound_fd = listener->fd();
  listener->start();
  return std::shared_ptr<PortListener>(std::move(listener));
}

}  // namespace tunnel::core
