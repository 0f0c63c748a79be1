#include "core/edge/tcp_tunnel.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <vector>

#include "core/agents/agent_gateway.hpp"
#include "protocol/proxy_header.hpp"
#include "transport/accept.hpp"
#include "transport/conn.hpp"

namespace tunnel::core {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kBufferSize = 64 * 1024;

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

// One client connection and its stream.
struct Relay {
  tcp::socket client;
  std::shared_ptr<mux::Stream> stream;
  std::string peer;
  std::uint16_t port = 0;
  TcpMetrics& metrics;
  const Throttle* throttle = nullptr;  // bandwidth limits of the tunnel; null = none
  std::uint64_t in = 0;
  std::uint64_t out = 0;
  bool aborted = false;  // one side broke: the other stops without touching the stream again
  std::string outcome;
  Clock::time_point last_activity = Clock::now();

  // The stream failed: reset the client (agent RESET) or just close it (session gone).
  void abort_client(const transport::error_code& ec) {
    if (aborted) return;
    aborted = true;
    boost::system::error_code ignored;
    if (stream->is_reset()) {
      outcome = "reset by the agent (" +
                std::string(protocol::error_code_name(stream->reset_code())) +
                (stream->reset_message().empty() ? "" : ": " + stream->reset_message()) + ")";
      client.set_option(tcp::socket::linger(true, 0), ignored);
    } else {
      outcome = "the agent session ended (" + ec.message() + ")";
      client.shutdown(tcp::socket::shutdown_both, ignored);
    }
    client.close(ignored);
  }
  // The client failed: reset the stream.
  void abort_stream(const std::string& why) {
    if (aborted) return;
    aborted = true;
    outcome = why;
    stream->reset(protocol::ErrorCode::kCancel, why);
    boost::system::error_code ignored;
    client.close(ignored);
  }
};

asio::awaitable<void> client_to_agent(Relay& r) {
  std::vector<std::uint8_t> buf(kBufferSize);
  transport::error_code ec;
  for (;;) {
    auto [rec, n] = co_await r.client.async_read_some(asio::buffer(buf), kNoThrow);
    if (r.aborted) co_return;
    if (rec == asio::error::eof) {
      co_await r.stream->close_write(ec);  // the client's FIN, passed on as END_STREAM
      if (ec) r.abort_client(ec);
      co_return;
    }
    if (rec) {
      r.abort_stream("the client connection failed: " + rec.message());
      co_return;
    }
    r.in += n;
    r.metrics.bytes_in.inc(n);
    r.last_activity = Clock::now();
    if (r.throttle != nullptr) co_await throttle(r.throttle, Direction::kIn, n);
    if (r.aborted) co_return;
    co_await r.stream->write(std::span<const std::uint8_t>(buf.data(), n), ec);
    if (r.aborted) co_return;
    if (ec) {
      r.abort_client(ec);
      co_return;
    }
    // A throttled tunnel keeps its 64 KiB steps.
    if (r.throttle == nullptr) mux::grow_after_full_read(buf, n);
  }
}

asio::awaitable<void> agent_to_client(Relay& r) {
  std::vector<std::uint8_t> buf(kBufferSize);
  transport::error_code ec;
  for (;;) {
    const std::size_t n = co_await r.stream->read_some(asio::buffer(buf), ec);
    if (r.aborted) co_return;
    if (ec) {
      r.abort_client(ec);
      co_return;
    }
    if (n == 0) {  // END_STREAM: half-close towards the client
      boost::system::error_code ignored;
      r.client.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    r.last_activity = Clock::now();
    if (r.throttle != nullptr) co_await throttle(r.throttle, Direction::kOut, n);
    if (r.aborted) co_return;
    auto [wec, written] =
        co_await asio::async_write(r.client, asio::buffer(buf.data(), n), kNoThrow);
    (void)written;
    if (r.aborted) co_return;
    if (wec) {
      r.abort_stream("the client connection failed: " + wec.message());
      co_return;
    }
    r.out += n;
    r.metrics.bytes_out.inc(n);
  }
}

// Ends a connection with no byte either way for `timeout` (limits.tunnel_idle_timeout). Runs
// until then: the relay's `||` cancels it when the connection ends first.
asio::awaitable<void> idle_watch(Relay& r, std::chrono::milliseconds timeout) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_at(r.last_activity + timeout);
    auto [ec] = co_await timer.async_wait(kNoThrow);
    if (ec) co_return;  // cancelled: the relay finished
    if (Clock::now() - r.last_activity >= timeout) break;
  }
  r.abort_stream("idle for " + std::to_string(timeout.count() / 1000) +
                 " s (limits.tunnel_idle_timeout)");
  // Stay until cancelled, so the relay halves (now failing) decide when the connection ends.
  timer.expires_at(Clock::time_point::max());
  co_await timer.async_wait(kNoThrow);
}

asio::awaitable<void> relay(tcp::socket client, Route route, std::uint16_t port,
                            std::shared_ptr<TcpMetrics> metrics,
                            std::chrono::milliseconds idle_timeout) {
  using namespace asio::experimental::awaitable_operators;
  const auto start = Clock::now();
  boost::system::error_code ignored;
  client.set_option(tcp::no_delay(true), ignored);
  const std::string peer = transport::remote_string(client);
  const std::string local = transport::endpoint_string(client.local_endpoint(ignored));
  auto session = route.agent->session;
  std::string error;
  auto stream =
      session->open_stream(route.tunnel_index, protocol::format_addresses(peer, local), error);
  if (!stream) {
    metrics->refused.inc();
    spdlog::warn("tcp :{} {}: closed: the agent {} cannot take connections: {}", port, peer,
                 session->name(), error);
    client.close(ignored);
    co_return;
  }
  metrics->active.inc();
  Relay r{std::move(client), stream, peer, port, *metrics, route.throttle.get(), 0, 0, false, {},
          Clock::now()};
  if (idle_timeout.count() > 0) {
    co_await ((client_to_agent(r) && agent_to_client(r)) || idle_watch(r, idle_timeout));
  } else {
    co_await (client_to_agent(r) && agent_to_client(r));
  }
  r.client.close(ignored);
  metrics->active.dec();
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  if (r.outcome.empty()) {
    spdlog::info("tcp :{} {} closed after {:.1f} ms in={} out={}", port, peer, ms, r.in, r.out);
  } else {
    spdlog::info("tcp :{} {} closed after {:.1f} ms in={} out={}: {}", port, peer, ms, r.in, r.out,
                 r.outcome);
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
    auto target = route.agent->session->get_executor();
    if (target != executor_) {
      // The relay must run where the agent's session lives: move the descriptor there.
      const auto protocol = socket.local_endpoint(ec).protocol();
      const auto fd = ec ? -1 : socket.release(ec);
      if (ec) {
        spdlog::warn("tcp :{}: cannot hand a connection to the agent's worker: {}", port_,
                     ec.message());
        return;
      }
      socket = tcp::socket(target, protocol, fd);
    }
    asio::co_spawn(target,
                   relay(std::move(socket), std::move(route), port_, metrics_,
                         context_.config.limits.tunnel_idle_timeout),
                   asio::detached);
  }

  CoreContext& context_;
  asio::any_io_executor executor_;
  tcp::acceptor acceptor_;
  std::uint16_t port_;
  std::shared_ptr<TcpMetrics> metrics_;
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
