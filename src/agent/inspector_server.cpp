#include "agent/inspector_server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>

#include "common/net_address.hpp"
#include "http/head.hpp"

namespace tunnel::agent {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxHead = 16 * 1024;
constexpr std::size_t kMaxBody = 1024 * 1024;
constexpr std::chrono::seconds kRequestTimeout{30};

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

}  // namespace

InspectorServer::InspectorServer(asio::any_io_executor executor, Inspector& inspector)
    : executor_(std::move(executor)), inspector_(inspector), acceptor_(executor_) {}

bool InspectorServer::listen(const std::string& address, std::string& error) {
  auto parsed = common::parse_listen_address(address);
  if (!parsed) {
    error = "--inspect-addr: " + parsed.error().message;
    return false;
  }
  std::string host = parsed.value().host;
  if (host == "localhost" || host.empty()) host = "127.0.0.1";
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(host, ec);
  if (ec) {
    error = "--inspect-addr: " + host + " is not an IP address or localhost";
    return false;
  }
  if (!ip.is_loopback()) {
    error = "--inspect-addr: " + host +
            " is not a loopback address; the inspector shows every request and its body, so "
            "it listens on loopback only (127.0.0.1, ::1)";
    return false;
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
      return true;
    }
    if (ec != asio::error::address_in_use) break;
  }
  error = "--inspect-addr: cannot listen on " + address +
          (first == 0 ? "" : " nor the next " + std::to_string(kPortsTried - 1) + " ports") + ": " +
          ec.message();
  acceptor_.close(ec);
  return false;
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
    parser.body_limit(kMaxBody);
    stream.expires_after(kRequestTimeout);
    auto [ec, n] = co_await bhttp::async_read(stream, buffer, parser, kNoThrow);
    (void)n;
    if (ec) co_return;
    const auto& request = parser.get();
    bhttp::response<bhttp::string_body> response;
    response.version(11);
    response.keep_alive(request.keep_alive());
    ApiResponse answer;
    const std::string_view host(request[bhttp::field::host]);
    if (!loopback_host(host)) {
      answer = {403, "application/json",
                R"({"status_code":403,"error_code":403,"msg":"the inspector answers requests )"
                R"(for localhost, 127.0.0.1 or [::1] only"})"};
    } else {
      const std::string method(request.method_string());
      const std::string target(request.target());
      answer = inspector_.handle_mutating(method, target);
    }
    response.result(static_cast<unsigned>(answer.status));
    response.set(bhttp::field::content_type, answer.content_type);
    response.set(bhttp::field::cache_control, "no-store");
    response.body() = std::move(answer.body);
    response.prepare_payload();
    auto [wec, written] = co_await bhttp::async_write(stream, response, kNoThrow);
    (void)written;
    if (wec || !response.keep_alive()) co_return;
  }
}

}  // namespace tunnel::agent
