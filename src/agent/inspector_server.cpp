#include "agent/inspector_server.hpp"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <span>
#include <variant>
#include <vector>

#include "agent/config.hpp"
#include "common/async.hpp"
#include "common/net_address.hpp"
#include "http/head.hpp"
#include "http/message_parser.hpp"

namespace tunnel::agent {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxHead = 16 * 1024;
constexpr std::size_t kMaxBody = 1024 * 1024;
constexpr std::size_t kMaxImport = 64 * 1024 * 1024;  // a HAR to import
constexpr std::string_view kImportPath = "/api/requests/http/import";
constexpr std::chrono::seconds kRequestTimeout{30};
constexpr std::chrono::seconds kWriteTimeout{10};  // an event stream's client must read
constexpr std::chrono::seconds kKeepAlive{15};     // a comment on an idle event stream
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// Host names a page served from this machine uses: "localhost", "127.x.y.z", "[::1]", with any
// port.
bool loopback_host(std::string_view host) {
  if (host.starts_with('[')) {
    const std::size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    host = host.substr(1, close - 1);
  } else if (const std::size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (http::iequals(host, "localhost")) return true;
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(std::string(host), ec);
  return !ec && ip.is_loopback();
}

// "Bearer PASSWORD" or "Basic base64(USER:PASSWORD)" with any user name; constant time in the
// password.
bool authorized(std::string_view header, const std::string& password) {
  std::string given;
  if (header.size() > 7 && http::iequals(header.substr(0, 7), "Bearer ")) {
    given = std::string(header.substr(7));
  } else if (header.size() > 6 && http::iequals(header.substr(0, 6), "Basic ")) {
    std::string decoded;
    if (!base64_decode(header.substr(6), decoded)) return false;
    const std::size_t colon = decoded.find(':');
    if (colon == std::string::npos) return false;
    given = decoded.substr(colon + 1);
  } else {
    return false;
  }
  return given.size() == password.size() &&
         CRYPTO_memcmp(given.data(), password.data(), password.size()) == 0;
}

}  // namespace

InspectorServer::InspectorServer(asio::any_io_executor executor, Inspector& inspector)
    : executor_(std::move(executor)), inspector_(inspector), acceptor_(executor_) {}

common::Status InspectorServer::listen(const std::string& address) {
  auto parsed = common::parse_listen_address(address);
  if (!parsed) {
    return common::fail("--inspect-addr: " + parsed.error().message);
  }
  std::string host = parsed.value().host;
  if (host == "localhost" || host.empty()) host = "127.0.0.1";
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(host, ec);
  if (ec) {
    return common::fail("--inspect-addr: " + host + " is not an IP address or localhost");
  }
  if (!ip.is_loopback() && password_.empty()) {
    return common::fail(
        "--inspect-addr: " + host +
        " is not a loopback address; the inspector shows every request and its body, so "
        "it listens on loopback only (127.0.0.1, ::1) unless --inspect-password (or "
        "inspect_password) is set");
  }
  const std::uint16_t first = parsed.value().port;
  const int tries = first == 0 ? 1 : kPortsTried;
  for (int i = 0; i < tries && first + i <= 65535; ++i) {
    const tcp::endpoint endpoint(ip, static_cast<std::uint16_t>(first + i));
    acceptor_.close(ec);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) {
      const tcp::endpoint bound = acceptor_.local_endpoint(ec);
      address_ = (ip.is_v6() ? "[" + ip.to_string() + "]" : ip.to_string()) + ":" +
                 std::to_string(bound.port());
      inspector_.set_address(address_);
      return common::success();
    }
    if (ec != asio::error::address_in_use) break;
  }
  std::string why =
      "--inspect-addr: cannot listen on " + address +
      (first == 0 ? "" : " nor the next " + std::to_string(kPortsTried - 1) + " ports") + ": " +
      ec.message();
  acceptor_.close(ec);
  return common::fail(std::move(why));
}

asio::awaitable<void> InspectorServer::run() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(kNoThrow);
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) continue;
    if (*connections_ >= kMaxConnections) {
      boost::system::error_code ignored;
      socket.close(ignored);  // over the bound: the client retries
      continue;
    }
    asio::co_spawn(executor_, serve(std::move(socket)), asio::detached);
  }
}

void InspectorServer::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

asio::awaitable<void> InspectorServer::serve(tcp::socket socket) {
  ++*connections_;
  struct Count {
    std::shared_ptr<std::size_t> n;
    ~Count() { --*n; }
  } count{connections_};
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(kMaxHead + kMaxBody);
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(kMaxHead);
    // Beast checks a Content-Length against the body limit as the head ends: the larger bound
    // goes first, the smaller one once the target is known.
    parser.body_limit(kMaxImport);
    stream.expires_after(kRequestTimeout);
    auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser, kNoThrow);
    (void)hn;
    if (hec) co_return;
    // A HAR to import may be large; every other body is small.
    const bool importing = parser.get().target().starts_with(kImportPath);
    if (!importing) {
      if (parser.content_length().value_or(0) > kMaxBody) co_return;
      parser.body_limit(kMaxBody);
    }
    auto [ec, n] = co_await bhttp::async_read(stream, buffer, parser, kNoThrow);
    (void)n;
    if (ec) co_return;
    const auto& request = parser.get();
    bhttp::response<bhttp::string_body> response;
    response.version(11);
    response.keep_alive(request.keep_alive());
    ApiResponse answer;
    const std::string_view host(request[bhttp::field::host]);
    bool unauthorized = false;
    if (!password_.empty()) {
      unauthorized = !authorized(request[bhttp::field::authorization], password_);
      if (unauthorized) {
        answer.status = 401;
        answer.body = R"({"status_code":401,"error_code":401,"msg":"the inspector needs its )"
                      R"(password: HTTP Basic (any user name) or Bearer"})";
      }
    } else if (!loopback_host(host)) {
      answer = {403, "application/json",
                R"({"status_code":403,"error_code":403,"msg":"the inspector answers requests )"
                R"(for localhost, 127.0.0.1 or [::1] only"})"};
    } else {
      const std::string method(request.method_string());
      const std::string target(request.target());
      if (method == "GET" && target.substr(0, target.find('?')) == "/api/requests/http/stream") {
        co_await stream_events(stream);
        co_return;
      }
      if (method == "POST" && importing) {
        answer = inspector_.import_har(request.body(), target);
      } else if (method == "POST" && target == "/api/requests/http") {
        auto plan = inspector_.plan_replay(request.body());
        if (plan) {
          answer = co_await replay(std::move(plan).value());
        } else {
          answer = problem_response(plan.error());
        }
      } else {
        answer = inspector_.handle_mutating(method, target);
      }
    }
    response.result(static_cast<unsigned>(answer.status));
    response.set(bhttp::field::content_type, answer.content_type);
    response.set(bhttp::field::cache_control, "no-store");
    // The page's scripts are their own paths (no inline script), everything from here only;
    // the traffic it shows is data, never markup.
    response.set("Content-Security-Policy", kContentSecurityPolicy);
    response.set("X-Content-Type-Options", "nosniff");
    response.set("Referrer-Policy", "no-referrer");
    if (unauthorized) {
      response.set(bhttp::field::www_authenticate, R"(Basic realm="tunnel-agent inspector")");
    }
    response.body() = std::move(answer.body);
    response.prepare_payload();
    auto [wec, written] = co_await bhttp::async_write(stream, response, kNoThrow);
    (void)written;
    if (wec || !response.keep_alive()) co_return;
  }
}

asio::awaitable<void> InspectorServer::stream_events(beast::tcp_stream& stream) {
  using namespace asio::experimental::awaitable_operators;
  auto signal = std::make_shared<Signal>(executor_);
  std::shared_ptr<EventHub> hub = inspector_.events();
  auto subscriber = hub->subscribe([signal] { signal->notify(); });
  if (!subscriber) {
    std::string busy =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        "Connection: close\r\nContent-Length: ";
    const std::string body =
        problem_response(common::fail(common::ErrorKind::kUnavailable,
                                      "the inspector streams to " +
                                          std::to_string(EventHub::kMaxSubscribers) +
                                          " subscribers at most; close one"))
            .body;
    busy += std::to_string(body.size()) + "\r\n\r\n" + body;
    stream.expires_after(kWriteTimeout);
    co_await asio::async_write(stream, asio::buffer(busy), kNoThrow);
    co_return;
  }
  struct Leave {
    std::shared_ptr<EventHub> hub;
    std::shared_ptr<EventHub::Subscriber> subscriber;
    ~Leave() { hub->unsubscribe(subscriber); }
  } leave{hub, subscriber};
  std::string out =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
      "Connection: close\r\n\r\nretry: 2000\n\n";
  for (;;) {
    stream.expires_after(kWriteTimeout);
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(out), kNoThrow);
    (void)n;
    if (ec || subscriber->dropped) co_return;
    out.clear();
    stream.expires_never();
    while (subscriber->queue.empty() && !subscriber->dropped) {
      // Wake on an event, on the client closing (or sending anything), or to keep alive.
      auto woke = co_await (signal->wait_for(kKeepAlive) ||
                            stream.socket().async_wait(tcp::socket::wait_read, kNoThrow));
      if (woke.index() == 1) co_return;
      if (!std::get<0>(woke)) {
        out = ": keep-alive\n\n";
        break;
      }
    }
    if (subscriber->dropped) co_return;
    for (auto& event : subscriber->queue) out += event;
    subscriber->queue.clear();
    subscriber->bytes = 0;
  }
}

asio::awaitable<ApiResponse> InspectorServer::replay(ReplayPlan plan) {
  using Clock = std::chrono::steady_clock;
  const auto fail = [](int status, const std::string& message) {
    nlohmann::json body;
    body["status_code"] = status;
    body["error_code"] = status;
    body["msg"] = message;
    return ApiResponse{status, "application/json", body.dump()};
  };
  auto target = parse_local_target(plan.local);
  if (!target)
    co_return fail(409,
                   "the request's local address " + plan.local + ": " + target.error().message);
  const std::string where = target.value().to_string();
  ExchangeCapture capture;
  capture.body_cap = inspector_.options().body_cap;
  capture.opened = Clock::now();
  const std::size_t head_end = plan.bytes.find("\r\n\r\n");
  capture.request_head_size = head_end == std::string::npos ? plan.bytes.size() : head_end + 4;
  capture.request_raw = plan.bytes.substr(0, capture.request_head_size);
  capture.add_request_body(plan.bytes.data() + capture.request_head_size,
                           plan.bytes.size() - capture.request_head_size);
  const auto started = std::chrono::system_clock::now();

  tcp::resolver resolver(executor_);
  const std::string port = std::to_string(target.value().port);
  auto [rec, endpoints] = co_await resolver.async_resolve(target.value().host, port, kNoThrow);
  if (rec) co_return fail(502, "resolving " + where + ": " + rec.message());
  beast::tcp_stream app(executor_);
  app.expires_after(kRequestTimeout);
  auto [cec, endpoint] = co_await app.async_connect(endpoints, kNoThrow);
  (void)endpoint;
  if (cec) co_return fail(502, "cannot reach the local app at " + where + ": " + cec.message());
  auto [wec, written] = co_await asio::async_write(app, asio::buffer(plan.bytes), kNoThrow);
  (void)written;
  std::string error;
  if (wec) error = "writing the request to " + where + ": " + wec.message();

  http::MessageParser parser(http::MessageParser::Kind::kResponse);
  parser.expect_response_to(plan.method);
  std::vector<char> buf(16 * 1024);
  bool final_head = false;
  bool end = false;
  while (error.empty() && !end) {
    auto [ec, n] = co_await app.async_read_some(asio::buffer(buf), kNoThrow);
    if (ec) {
      if (ec == asio::error::eof && final_head &&
          parser.finish().type == http::MessageParser::Step::kMessageEnd) {
        break;
      }
      error = "the local app at " + where + " broke off its response (" + ec.message() + ")";
      break;
    }
    std::size_t offset = 0;
    std::size_t head_at = 0;
    const bool head_before = final_head;
    while (!end) {
      const auto step = parser.parse(std::span<const char>(buf.data() + offset, n - offset));
      if (step.type == http::MessageParser::Step::kNeedMore) {
        offset = n;
        break;
      }
      if (step.type == http::MessageParser::Step::kError) {
        error = "the local app at " + where + " sent an invalid response: " + parser.error();
        break;
      }
      offset += step.consumed;
      if (step.type == http::MessageParser::Step::kHead && !parser.is_interim()) {
        final_head = true;
        head_at = offset;
        capture.app_head = Clock::now();
      } else if ((step.type == http::MessageParser::Step::kMessageEnd && final_head) ||
                 step.type == http::MessageParser::Step::kUpgrade) {
        end = true;  // a replayed upgrade is not followed into raw bytes
      }
    }
    capture.add_response(buf.data(), offset, head_before, head_at);
  }
  capture.ended = Clock::now();
  Exchange exchange;
  exchange.tunnel_name = plan.tunnel_name;
  exchange.local = plan.local;
  exchange.replay_of = plan.replay_of;
  exchange.error = error;
  exchange.start = started;
  exchange.capture = std::move(capture);
  const std::string id = inspector_.add(std::move(exchange));
  ApiResponse answer = inspector_.handle("GET", "/api/requests/http/" + id);
  if (answer.status == 200) answer.status = 201;
  co_return answer;
}

}  // namespace tunnel::agent
