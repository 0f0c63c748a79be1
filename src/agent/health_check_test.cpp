// Health checks of the local app (issue 19): the rise/fall thresholds, the spec's text, and one
// check against real loopback sockets.
#include "agent/health_check.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <optional>

namespace tunnel::agent {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

TEST(HealthState, FallAndRiseThresholds) {
  HealthState state(2, 3);
  EXPECT_TRUE(state.healthy());
  EXPECT_FALSE(state.observe(false));
  EXPECT_FALSE(state.observe(false));
  EXPECT_FALSE(state.observe(true)) << "a pass resets the count of failures";
  EXPECT_FALSE(state.observe(false));
  EXPECT_FALSE(state.observe(false));
  EXPECT_TRUE(state.observe(false)) << "the third failure in a row";
  EXPECT_FALSE(state.healthy());
  EXPECT_FALSE(state.observe(false));
  EXPECT_FALSE(state.observe(true));
  EXPECT_FALSE(state.observe(false)) << "a failure resets the count of passes";
  EXPECT_FALSE(state.observe(true));
  EXPECT_TRUE(state.observe(true)) << "the second pass in a row";
  EXPECT_TRUE(state.healthy());

  HealthState once(1, 1);
  EXPECT_TRUE(once.observe(false));
  EXPECT_TRUE(once.observe(true));
}

TEST(HealthCheckSpec, ParseAndDescribe) {
  EXPECT_FALSE(parse_health_check("").value().enabled());
  EXPECT_FALSE(parse_health_check("none").value().enabled());
  EXPECT_EQ(parse_health_check("tcp").value().describe(), "tcp");
  EXPECT_EQ(parse_health_check("http").value().describe(), "http GET /");
  EXPECT_EQ(parse_health_check("http:/healthz?full=1").value().describe(),
            "http GET /healthz?full=1");
  EXPECT_EQ(parse_health_check("http:healthz").error().message,
            "the path of an http health check starts with '/': \"http:healthz\"");
  EXPECT_EQ(parse_health_check("http:/a b").error().message,
            "the path of an http health check has no spaces or control characters: "
            "\"http:/a b\"");
  EXPECT_EQ(parse_health_check("udp").error().message,
            "expected tcp, http or http:/PATH, got \"udp\"");
}

// A loopback server that answers each connection with `answer` (nothing: it closes at once;
// "silent": it reads and never answers).
class App {
 public:
  App(asio::io_context& io, std::string answer)
      : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        answer_(std::move(answer)) {
    asio::co_spawn(io, serve(), asio::detached);
  }
  common::NetAddress address() const { return {"127.0.0.1", acceptor_.local_endpoint().port()}; }
  std::string request;  // the last request's first bytes

 private:
  asio::awaitable<void> serve() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      if (answer_.empty()) continue;  // closes
      std::array<char, 512> buf{};
      auto [read_ec, n] =
          co_await socket.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      (void)read_ec;
      request.assign(buf.data(), n);
      if (answer_ == "silent") {
        held_.push_back(std::move(socket));
        continue;
      }
      co_await asio::async_write(socket, asio::buffer(answer_),
                                 asio::as_tuple(asio::use_awaitable));
    }
  }

  tcp::acceptor acceptor_;
  std::string answer_;
  std::vector<tcp::socket> held_;
};

std::string check(asio::io_context& io, const std::string& spec_text,
                  const common::NetAddress& target) {
  HealthCheckSpec spec = parse_health_check(spec_text).value();
  spec.timeout = 300ms;
  std::optional<std::string> result;
  asio::co_spawn(io, run_health_check(io.get_executor(), spec, target),
                 [&](std::exception_ptr e, std::string why) {
                   if (e) std::rethrow_exception(e);
                   result = std::move(why);
                 });
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!result && std::chrono::steady_clock::now() < deadline) io.run_one_for(50ms);
  EXPECT_TRUE(result.has_value());
  return result.value_or("(no result)");
}

TEST(HealthCheck, TcpAndHttpAgainstLoopback) {
  asio::io_context io;
  App ok(io, "HTTP/1.1 204 No Content\r\n\r\n");
  App failing(io, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  App not_http(io, "SSH-2.0-OpenSSH\r\n");
  App silent(io, "silent");
  EXPECT_EQ(check(io, "tcp", ok.address()), "");
  EXPECT_EQ(check(io, "http:/healthz", ok.address()), "");
  EXPECT_TRUE(ok.request.starts_with("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:")) << ok.request;
  EXPECT_EQ(check(io, "http:/healthz", failing.address()), "GET /healthz answered 503");
  EXPECT_EQ(check(io, "http", not_http.address()), "GET /: the answer is not HTTP");
  EXPECT_EQ(check(io, "http", silent.address()),
            "http GET / " + silent.address().to_string() + ": no answer within 300 ms");

  // Nobody listens on a port that was just closed.
  common::NetAddress closed;
  {
    tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    closed = {"127.0.0.1", probe.local_endpoint().port()};
  }
  const std::string refused = check(io, "tcp", closed);
  EXPECT_NE(refused.find("Connection refused"), std::string::npos) << refused;
}

}  // namespace
}  // namespace tunnel::agent
