#include "core/admin.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "common/async.hpp"
#include "common/duration.hpp"
#include "core/agents/agent_gateway.hpp"
#include "core/control/api/api.hpp"
#include "core/inspect.hpp"
#include "http/error_page.hpp"
#include "http/message_parser.hpp"
#include "transport/tls.hpp"

namespace tunnel::core {
namespace {

using http::MessageParser;
using Step = MessageParser::Step;

// Admin connections served at once; more are closed at accept (the listener is for operators).
constexpr std::size_t kMaxConnections = 64;
// A request body must arrive within this, whatever its pace.
constexpr std::chrono::seconds kBodyTimeout{30};

std::string plain(int status, std::string_view content_type, std::string_view body) {
  std::string out =
      "HTTP/1.1 " + std::to_string(status) + " " + std::string(http::reason_phrase(status)) +
      "\r\nContent-Type: " + std::string(content_type) +
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nCache-Control: no-store\r\n\r\n";
  out += body;
  return out;
}

bool is_api_path(std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  return path == "/api/v1" || path.starts_with("/api/v1/");
}

std::string serialize(const api::ApiResponse& r, bool close) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " +
                    std::string(http::reason_phrase(r.status)) + "\r\n";
  for (const auto& [name, value] : r.headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (r.status != 204) out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  out += r.body;
  return out;
}

}  // namespace

std::string AdminServer::debug_log(const std::string& method, const std::string& target,
                                   const std::string& peer) {
  constexpr std::string_view kJson = "application/json";
  constexpr std::string_view kText = "text/plain; charset=utf-8";
  if (method == "GET" || method == "HEAD") return plain(200, kJson, log_level_->state_json());
  if (method == "DELETE") {
    log_level_->reset("DELETE /debug/log from " + peer);
    return plain(200, kJson, log_level_->state_json());
  }
  // POST /debug/log?level=debug&for=5m: the settings in the query, no body. With tunnel= or
  // agent=, that one's detailed lines (no level).
  std::string level, tunnel, agent;
  std::chrono::seconds duration = std::chrono::minutes(5);
  const auto q = target.find('?');
  std::string_view query = q == std::string::npos ? "" : std::string_view(target).substr(q + 1);
  while (!query.empty()) {
    const std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    const auto eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    if (key == "level") {
      level = value;
    } else if (key == "tunnel") {
      tunnel = value;
    } else if (key == "agent") {
      agent = value;
    } else if (key == "for") {
      auto parsed = common::parse_duration(value);
      if (!parsed) return plain(400, kText, "for: " + parsed.error().message + "\n");
      duration = std::chrono::duration_cast<std::chrono::seconds>(parsed.value());
    } else {
      return plain(400, kText,
                   "unknown parameter \"" + observability::escape_for_text_log(key) +
                       "\" (expected level, tunnel, agent and for)\n");
    }
  }
  const std::string source = "POST /debug/log from " + peer;
  if (!tunnel.empty() && !agent.empty()) {
    return plain(400, kText, "give tunnel or agent, not both\n");
  }
  common::Status set = common::success();
  if (!tunnel.empty() || !agent.empty()) {
    if (!level.empty() && level != "debug") {
      return plain(400, kText,
                   "tunnel and agent turn on their detailed (debug) lines: no other level\n");
    }
    using Kind = observability::LogLevelControl::SelectorKind;
    set = tunnel.empty() ? log_level_->select(Kind::kAgent, agent, duration, source)
                         : log_level_->select(Kind::kTunnel, tunnel, duration, source);
  } else if (level.empty()) {
    return plain(400, kText, "level is missing: POST /debug/log?level=debug&for=5m\n");
  } else {
    set = log_level_->set(level, duration, source);
  }
  if (!set) return plain(400, kText, set.error().message + "\n");
  return plain(200, kJson, log_level_->state_json());
}

asio::awaitable<std::string> AdminServer::debug_connections(const std::string& target) {
  const auto q = target.find('?');
  auto query = parse_inspect_query(q == std::string::npos ? std::string_view{}
                                                          : std::string_view(target).substr(q + 1));
  if (!query) co_return plain(400, "text/plain; charset=utf-8", query.error().message + "\n");
  bool truncated = false;
  auto agents = gateway_->agents();
  std::string matching = query.value().agent;
  const auto sessions =
      co_await snapshot_sessions(std::move(agents), std::move(matching), truncated);
  const auto doc = connections_json(
      sessions, query.value(), truncated, context_.time.monotonic_time(),
      unix_seconds(context_.time),
      static_cast<std::uint64_t>(std::max(0.0, context_.metrics.public_connections.value())));
  if (!query.value().agent.empty() && sessions.empty()) {
    co_return plain(404, "application/json", doc.dump() + "\n");
  }
  co_return plain(200, "application/json", doc.dump() + "\n");
}

std::string AdminServer::respond(const std::string& method, const std::string& target, bool& close,
                                 const std::string& peer) {
  const std::string path = target.substr(0, target.find('?'));
  if (path == "/debug/log" && log_level_ != nullptr) {
    if (method != "GET" && method != "HEAD" && method != "POST" && method != "DELETE") {
      close = true;
      return http::error_response(405, "/debug/log answers GET, POST and DELETE.", "", true);
    }
    return debug_log(method, target, peer);
  }
  if (method != "GET" && method != "HEAD") {
    close = true;
    return http::error_response(405, "The admin endpoints only answer GET.", "", true);
  }
  if (path == "/healthz") return plain(200, "text/plain; charset=utf-8", "ok\n");
  if (path == "/readyz") {
    // As cloudflared's /ready: the status repeated in the body, with what serves traffic now.
    const bool ready = !context_.draining;
    const int status = ready ? 200 : 503;
    const auto sessions = static_cast<std::uint64_t>(context_.metrics.agents.value());
    const std::string body = "{\"status\":" + std::to_string(status) +
                             ",\"ready\":" + (ready ? "true" : "false") +
                             ",\"sessions\":" + std::to_string(sessions) +
                             ",\"workers\":" + std::to_string(context_.workers) +
                             ",\"draining\":" + (ready ? "false" : "true") + "}\n";
    return plain(status, "application/json", body);
  }
  if (path == "/metrics") {
    return plain(200, observability::kPrometheusContentType, context_.metrics.registry.render());
  }
  return http::error_response(
      404,
      "Unknown admin path " + path +
          " (try /healthz, /readyz, /metrics, /debug/log, /debug/connections, /api/v1).",
      "", false);
}

namespace {

struct Count {
  explicit Count(std::size_t& counter) : n(counter) { ++n; }
  Count(const Count&) = delete;
  Count& operator=(const Count&) = delete;
  ~Count() { --n; }
  std::size_t& n;
};

}  // namespace

asio::awaitable<void> AdminServer::serve(transport::tcp::socket socket) {
  if (connections_ >= kMaxConnections) co_return;  // the socket closes
  const Count count(connections_);
  co_await serve_conn(transport::make_tcp_conn(std::move(socket)), false);
}

asio::awaitable<void> AdminServer::serve_api(transport::tcp::socket socket,
                                             asio::ssl::context& tls) {
  if (api_connections_ >= kMaxConnections) co_return;  // the socket closes
  const Count count(api_connections_);
  const auto timeout = context_.config.limits.header_timeout;
  // A TLS client starts with a handshake record (0x16); anything else is most likely plain
  // HTTP sent to the wrong scheme: say so rather than fail the handshake silently.
  transport::error_code ec;
  if (!co_await with_timeout(socket.async_wait(transport::tcp::socket::wait_read,
                                               asio::redirect_error(asio::use_awaitable, ec)),
                             timeout) ||
      ec) {
    co_return;
  }
  unsigned char first = 0;
  if (::recv(socket.native_handle(), &first, 1, MSG_PEEK) != 1) co_return;
  if (first != 0x16) {
    // Read what the client sent (its request head, most likely) so that closing does not
    // reset the connection under the answer.
    std::array<char, 16384> discard{};
    while (::recv(socket.native_handle(), discard.data(), discard.size(), MSG_DONTWAIT) > 0) {
    }
    const std::string page = http::error_response(
        400, "This is the API listener: it speaks HTTPS only (use https://).", "", true);
    co_await asio::async_write(socket, asio::buffer(page),
                               asio::redirect_error(asio::use_awaitable, ec));
    socket.shutdown(transport::tcp::socket::shutdown_send, ec);
    co_return;
  }
  auto conn = co_await transport::accept_tls(std::move(socket), tls, timeout);
  if (!conn) {
    spdlog::debug("api listener: {}", conn.error().message);
    co_return;
  }
  co_await serve_conn(std::move(conn).value(), true);
}

asio::awaitable<void> AdminServer::serve_conn(std::unique_ptr<transport::Conn> conn,
                                              bool api_only) {
  MessageParser parser(MessageParser::Kind::kRequest);
  std::vector<char> buf(8192);
  std::string pending;
  transport::error_code ec;
  for (;;) {
    const Step step = parser.parse(pending);
    if (step.type == Step::kHead && api_ != nullptr && is_api_path(parser.request().target)) {
      pending.erase(0, step.consumed);
      bool close = !parser.keep_alive();
      std::string response;
      const auto length = parser.content_length();
      if (!length) {
        close = true;
        response = serialize(
            api::problem_response(411, "length-required",
                                  "send the body with Content-Length (chunked is not accepted)"),
            close);
      } else if (*length > max_body_) {
        close = true;  // the body is not read
        response = serialize(api::problem_response(
                                 413, "too-large",
                                 "the body is larger than " + std::to_string(max_body_) + " bytes"),
                             close);
      } else {
        if (parser.expects_continue() && *length > 0) {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          co_await conn->write(asio::buffer(kContinue), ec);
          if (ec) break;
        }
        api::ApiRequest request;
        request.body.reserve(*length);
        const auto deadline = std::chrono::steady_clock::now() + kBodyTimeout;
        bool complete = false;
        for (;;) {
          const Step body = parser.parse(pending);
          if (body.type == Step::kBody || body.type == Step::kMessageEnd) {
            request.body.append(pending.data(), body.consumed);
            pending.erase(0, body.consumed);
            if (body.type == Step::kMessageEnd) {
              complete = true;
              break;
            }
            continue;
          }
          if (body.type != Step::kNeedMore) break;
          pending.clear();
          const auto left = deadline - std::chrono::steady_clock::now();
          if (left <= std::chrono::steady_clock::duration::zero()) break;
          auto n = co_await with_timeout(conn->read_some(asio::buffer(buf), ec), left);
          if (!n || ec) break;
          pending.assign(buf.data(), *n);
        }
        if (!complete) break;  // the peer left or stalled mid-body: nothing to answer
        request.method = parser.request().method;
        request.target = parser.request().target;
        for (const auto& h : parser.request().headers)
          request.headers.emplace_back(h.name, h.value);
        request.peer = conn->peer();
        response = serialize(api_->handle(request), close);
      }
      co_await conn->write(asio::buffer(response), ec);
      if (close || ec) break;
      continue;
    }
    if (step.type == Step::kHead) {
      pending.erase(0, step.consumed);
      bool close = !parser.keep_alive() || parser.has_body();
      const auto& request = parser.request();
      std::string response;
      if (api_only) {
        response =
            serialize(api::problem_response(404, "not-found",
                                            "this listener serves the API only: /api/v1/..."),
                      close);
      } else if (gateway_ != nullptr && (request.method == "GET" || request.method == "HEAD") &&
                 request.target.substr(0, request.target.find('?')) == "/debug/connections") {
        const std::string target = request.target;
        response = co_await debug_connections(target);
      } else {
        response = respond(request.method, request.target, close, conn->peer());
      }
      if (parser.request().method == "HEAD") response.resize(response.find("\r\n\r\n") + 4);
      co_await conn->write(asio::buffer(response), ec);
      if (close || ec) break;
      // Skip the (empty) message end of a GET without a body.
      const Step end = parser.parse(pending);
      pending.erase(0, end.consumed);
      continue;
    }
    if (step.type == Step::kError) {
      const std::string page =
          http::error_response(parser.error_status(), parser.error(), "", true);
      co_await conn->write(asio::buffer(page), ec);
      break;
    }
    pending.clear();
    auto n = co_await with_timeout(conn->read_some(asio::buffer(buf), ec),
                                   context_.config.limits.header_timeout);
    if (!n || ec) break;
    pending.assign(buf.data(), *n);
  }
  co_await conn->shutdown_send();
}

}  // namespace tunnel::core
