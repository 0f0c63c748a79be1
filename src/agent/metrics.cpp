#include "agent/metrics.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

#include "agent/forwarder.hpp"
#include "transport/conn.hpp"

namespace tunnel::agent {
namespace {

namespace asio = boost::asio;

// The agent's request durations: the core's buckets (100 us .. 60 s, 1-2-5).
constexpr double kBuckets[] = {0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                               0.2,    0.5,    1.0,    2.0,   5.0,   10.0,  20.0, 30.0, 60.0};
constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
constexpr const char* kCauses[] = {"app_refused", "app_error", "bad_request"};

constexpr std::size_t kMaxConnections = 16;
constexpr std::size_t kMaxHead = 8 * 1024;
constexpr auto kHeadTimeout = std::chrono::seconds(5);

std::string reply(int status, std::string_view reason, std::string_view type,
                  std::string_view body) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                    "\r\nContent-Type: " + std::string(type) +
                    "\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
  out += body;
  return out;
}

asio::awaitable<void> serve_one(asio::ip::tcp::socket socket, observability::Registry& registry,
                                std::shared_ptr<std::size_t> connections) {
  struct Count {
    std::size_t& n;
    ~Count() { --n; }
  } count{*connections};
  auto conn = transport::make_tcp_conn(std::move(socket));
  conn->set_read_deadline(std::chrono::steady_clock::now() + kHeadTimeout);
  std::string head;
  char buf[2048];
  transport::error_code ec;
  while (head.find("\r\n\r\n") == std::string::npos) {
    const std::size_t n = co_await conn->read_some(asio::buffer(buf), ec);
    if (ec) co_return;
    head.append(buf, n);
    if (head.size() > kMaxHead) co_return;
  }
  const auto line_end = head.find("\r\n");
  const std::string_view line(head.data(), line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = line.find(' ', sp1 == line.npos ? 0 : sp1 + 1);
  std::string response;
  if (sp1 == line.npos || sp2 == line.npos) {
    response = reply(400, "Bad Request", "text/plain; charset=utf-8", "bad request line\n");
  } else {
    const std::string_view method = line.substr(0, sp1);
    std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    path = path.substr(0, path.find('?'));
    if (method != "GET" && method != "HEAD") {
      response = reply(405, "Method Not Allowed", "text/plain; charset=utf-8", "GET only\n");
    } else if (path == "/metrics") {
      response = reply(200, "OK", observability::kPrometheusContentType, registry.render());
    } else if (path == "/healthz") {
      response = reply(200, "OK", "text/plain; charset=utf-8", "ok\n");
    } else {
      response = reply(404, "Not Found", "text/plain; charset=utf-8",
                       "unknown path (try /metrics or /healthz)\n");
    }
    if (method == "HEAD") response.resize(response.find("\r\n\r\n") + 4);
  }
  co_await conn->write(asio::buffer(response), ec);
  co_await conn->shutdown_send();
}

}  // namespace

AgentTunnelMetrics::AgentTunnelMetrics(observability::Registry& registry, const std::string& tunnel)
    : active(registry.gauge("tunnel_agent_requests_active",
                            "Requests at the local app now, per tunnel.", {{"tunnel", tunnel}})),
      registry_(registry),
      tunnel_(tunnel),
      duration_(registry.histogram(
          "tunnel_agent_request_duration_seconds",
          "Time from a stream's arrival at the agent to the end of the local app's response, per "
          "tunnel.",
          kBuckets, {{"tunnel", tunnel}})) {}

void AgentTunnelMetrics::count(const ForwardResult& result) {
  duration_.observe(std::chrono::duration<double>(result.elapsed).count());
  if (result.status != 0) {
    const std::size_t i = result.status >= 100 && result.status < 600 ? result.status / 100 - 1 : 4;
    if (requests_[i] == nullptr) {
      requests_[i] = &registry_.counter(
          "tunnel_agent_requests_total",
          "Responses of the local apps relayed to the core, per tunnel and status class.",
          {{"tunnel", tunnel_}, {"class", kClasses[i]}});
    }
    requests_[i]->inc();
  }
  if (!result.error.empty()) {
    const std::size_t i = result.unreachable ? 0 : result.bad_request ? 2 : 1;
    if (errors_[i] == nullptr) {
      errors_[i] = &registry_.counter(
          "tunnel_agent_request_errors_total",
          "Requests the local app did not answer, per tunnel and cause: app_refused (could not "
          "connect), app_error (closed early, not HTTP), bad_request (a head the agent could not "
          "read).",
          {{"tunnel", tunnel_}, {"cause", kCauses[i]}});
    }
    errors_[i]->inc();
  }
}

AgentMetrics::AgentMetrics(observability::Registry& r)
    : registry(r),
      sessions(r.counter("tunnel_agent_sessions_total", "Sessions to the core established.")),
      reconnects(r.counter("tunnel_agent_reconnects_total",
                           "Sessions to the core established after the first one.")),
      connect_failures(r.counter("tunnel_agent_connect_failures_total",
                                 "Attempts to connect to the core that failed (and were "
                                 "retried): dial, TLS, or a refusal that may pass.")) {}

AgentTunnelMetrics* AgentMetrics::tunnel(const std::string& name) {
  if (auto it = tunnels_.find(name); it != tunnels_.end()) return it->second.get();
  const std::string key = tunnels_.size() < kMaxTunnels ? name : std::string("_other");
  if (auto it = tunnels_.find(key); it != tunnels_.end()) return it->second.get();
  return tunnels_.emplace(key, std::make_unique<AgentTunnelMetrics>(registry, key))
      .first->second.get();
}

asio::awaitable<void> serve_metrics(asio::ip::tcp::acceptor& acceptor,
                                    observability::Registry& registry) {
  auto connections = std::make_shared<std::size_t>(0);
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) continue;                               // EMFILE and the like: the next accept may work
    if (*connections >= kMaxConnections) continue;  // the socket closes
    ++*connections;
    asio::co_spawn(acceptor.get_executor(), serve_one(std::move(socket), registry, connections),
                   asio::detached);
  }
}

}  // namespace tunnel::agent
