// The Connector against a fake core (plain TCP, protocol v2) that misbehaves the way issue 25's
// audit did: GOAWAY right after AUTH, a 1 ms heartbeat interval, terminal escapes in a NOTICE.
#include "agent/connector.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>

#include "common/result_testing.hpp"
#include "mux/frame_io.hpp"
#include "observability/log.hpp"

namespace tunnel::agent {
namespace {

using namespace std::chrono_literals;
using protocol::FrameType;
using transport::tcp;

struct FakeCoreBehaviour {
  std::uint32_t heartbeat_interval_ms = 10'000;
  bool go_away_after_auth = false;
  std::string notice;                      // sent after AUTH when not empty
  std::string url = "http://app.example";  // the tunnel's public address in the AUTH reply
  bool refuse = false;  // answer AUTH with success false, this code and this text
  std::string refusal_code;
  std::string refusal_error;
};

// Accepts agents, answers AUTH with success (v2), then does what `behaviour` says and reads (and
// counts) what the agent sends until it leaves.
class FakeCore {
 public:
  FakeCore(asio::io_context& io, FakeCoreBehaviour behaviour)
      : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        behaviour_(std::move(behaviour)) {
    asio::co_spawn(io, accept_loop(), asio::detached);
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void stop() {
    transport::error_code ignored;
    acceptor_.close(ignored);
  }

  int connections = 0;
  int pings = 0;
  int open = 0;                            // sessions after AUTH that have not ended
  int max_open = 0;                        // the most at once
  int go_aways = 0;                        // GOAWAY frames from the agent
  std::vector<std::uint16_t> asked_ports;  // remote_port of the first tunnel in each AUTH

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      ++connections;
      asio::co_spawn(acceptor_.get_executor(), serve(transport::make_tcp_conn(std::move(socket))),
                     asio::detached);
    }
  }

  asio::awaitable<void> serve(std::unique_ptr<transport::Conn> conn) {
    mux::FrameReader reader(protocol::kVersion1, protocol::kMaxAuthPayload);
    mux::Frame frame;
    transport::error_code ec;
    if (!co_await reader.next(*conn, frame, ec)) co_return;
    if (auto request = protocol::parse_auth_request(mux::as_text(frame.payload));
        request && !request.value().tunnels.empty()) {
      asked_ports.push_back(request.value().tunnels.front().remote_port);
    }
    protocol::AuthResponse reply;
    reply.success = true;
    reply.agent_id = "fake";
    reply.protocol_version = protocol::kVersion2;
    reply.heartbeat_interval_ms = behaviour_.heartbeat_interval_ms;
    reply.initial_window = 256 * 1024;
    protocol::TunnelResult tunnel;
    tunnel.name = "app.example";
    tunnel.url = behaviour_.url;
    tunnel.ok = true;
    reply.tunnels.push_back(tunnel);
    if (behaviour_.refuse) {
      reply.success = false;
      reply.code = behaviour_.refusal_code;
      reply.error = behaviour_.refusal_error;
      reply.tunnels.clear();
    }
    const std::string body = protocol::serialize(reply);
    co_await mux::write_frame(*conn, protocol::kVersion1, FrameType::kAuth, protocol::flags::kAck,
                              0, mux::as_bytes(body), ec);
    if (behaviour_.refuse) {
      co_await conn->shutdown_send();
      co_return;
    }
    if (behaviour_.go_away_after_auth) {
      std::vector<std::uint8_t> payload(8);
      protocol::put_u32(payload.data() + 4,
                        static_cast<std::uint32_t>(protocol::ErrorCode::kGoingAway));
      co_await mux::write_frame(*conn, protocol::kVersion2, FrameType::kGoAway, 0, 0, payload, ec);
    }
    if (!behaviour_.notice.empty()) {
      std::string payload = std::string("\0\0", 2) + behaviour_.notice;
      co_await mux::write_frame(*conn, protocol::kVersion2, FrameType::kNotice, 0, 0,
                                mux::as_bytes(payload), ec);
    }
    reader.set_version(protocol::kVersion2);
    reader.set_max_payload(protocol::kMaxPayload);
    max_open = std::max(max_open, ++open);
    struct Open {
      int& count;
      ~Open() { --count; }
    } guard{open};
    while (co_await reader.next(*conn, frame, ec)) {
      if (frame.header.frame_type() == FrameType::kGoAway) ++go_aways;
      if (frame.header.frame_type() == FrameType::kPing &&
          !frame.header.has(protocol::flags::kAck)) {
        ++pings;
        co_await mux::write_frame(*conn, protocol::kVersion2, FrameType::kPing,
                                  protocol::flags::kAck, 0, frame.payload, ec);
      }
    }
  }

  tcp::acceptor acceptor_;
  FakeCoreBehaviour behaviour_;
};

ConnectorOptions options_for(const FakeCore& core) {
  ConnectorOptions o;
  o.server_host = "127.0.0.1";
  o.server_port = core.port();
  o.token = "token";
  o.agent_id = "test-agent";
  ForwardSpec spec;
  spec.request.subdomain = "app";
  spec.request.local = "127.0.0.1:1";
  spec.local = common::NetAddress{"127.0.0.1", 1};
  o.tunnels.push_back(spec);
  return o;
}

// Runs a Connector against `core` for `how_long`, then stops it; returns run()'s exit code.
int run_for(asio::io_context& io, FakeCore& core, std::chrono::milliseconds how_long) {
  RealTimeSource time;  // real heartbeats and reconnect timing against a real fake core
  Connector connector(io.get_executor(), options_for(core), time);
  std::optional<int> code;
  asio::co_spawn(io, connector.run(), [&](std::exception_ptr e, int c) {
    if (e) std::rethrow_exception(e);
    code = c;
  });
  asio::steady_timer timer(io, how_long);
  timer.async_wait([&](const transport::error_code&) { connector.stop(); });
  const auto deadline = std::chrono::steady_clock::now() + how_long + 30s;
  while (!code && std::chrono::steady_clock::now() < deadline) io.run_one_for(100ms);
  core.stop();
  io.run_for(200ms);
  EXPECT_TRUE(code.has_value()) << "run() did not return after stop()";
  return code.value_or(-1);
}

// Before: 8,471 reconnects in 3.5 s. Each reconnect after a session that did not last waits for
// the backoff (full jitter from 100 ms, doubling): a handful of attempts in 3 s.
TEST(ConnectorTest, GoAwayRightAfterAuthIsRetriedWithBackoff) {
  asio::io_context io;
  FakeCoreBehaviour behaviour;
  behaviour.go_away_after_auth = true;
  FakeCore core(io, behaviour);
  EXPECT_EQ(run_for(io, core, 3s), 0);
  EXPECT_GE(core.connections, 2) << "the agent did not reconnect after GOAWAY";
  EXPECT_LE(core.connections, 15) << "the agent reconnected in a loop";
}

// Runs `connector` for `how_long`, then stops it; returns run()'s exit code.
int run_connector_for(asio::io_context& io, Connector& connector,
                      std::chrono::milliseconds how_long) {
  std::optional<int> code;
  asio::co_spawn(io, connector.run(), [&](std::exception_ptr e, int c) {
    if (e) std::rethrow_exception(e);
    code = c;
  });
  asio::steady_timer timer(io, how_long);
  timer.async_wait([&](const transport::error_code&) { connector.stop(); });
  const auto deadline = std::chrono::steady_clock::now() + how_long + 30s;
  while (!code && std::chrono::steady_clock::now() < deadline) io.run_one_for(100ms);
  EXPECT_TRUE(code.has_value()) << "run() did not return after stop()";
  return code.value_or(-1);
}

// Issue 19: --connections N to each of several cores; every session registers the tunnels.
TEST(ConnectorTest, HoldsConnectionsSessionsToEveryCore) {
  asio::io_context io;
  FakeCore a(io, {});
  FakeCore b(io, {});
  RealTimeSource time;
  ConnectorOptions options = options_for(a);
  options.servers = {{"127.0.0.1", a.port()}, {"127.0.0.1", b.port()}};
  options.connections = 3;
  Connector connector(io.get_executor(), options, time);
  EXPECT_EQ(connector.core_names(),
            (std::vector<std::string>{"127.0.0.1:" + std::to_string(a.port()),
                                      "127.0.0.1:" + std::to_string(b.port())}));
  std::size_t most = 0;
  asio::steady_timer probe(io, 700ms);
  probe.async_wait([&](const transport::error_code&) {
    most = connector.live_sessions();
    EXPECT_EQ(connector.live_sessions(0), 3u);
    EXPECT_EQ(connector.live_sessions(1), 3u);
  });
  EXPECT_EQ(run_connector_for(io, connector, 1s), 0);
  EXPECT_EQ(most, 6u);
  EXPECT_EQ(a.connections, 3);
  EXPECT_EQ(b.connections, 3);
  EXPECT_EQ(a.max_open, 3);
  a.stop();
  b.stop();
  io.run_for(200ms);
}

// A core that refuses the agent for good ends only its own sessions: the other core keeps them.
TEST(ConnectorTest, AFinalRefusalFromOneCoreLeavesTheOthers) {
  asio::io_context io;
  FakeCoreBehaviour refusing;
  refusing.refuse = true;
  refusing.refusal_code = "bad_token";
  refusing.refusal_error = "authentication failed";
  FakeCore bad(io, refusing);
  FakeCore good(io, {});
  RealTimeSource time;
  ConnectorOptions options = options_for(good);
  options.servers = {{"127.0.0.1", bad.port()}, {"127.0.0.1", good.port()}};
  options.connections = 2;
  Connector connector(io.get_executor(), options, time);
  EXPECT_EQ(run_connector_for(io, connector, 1s), 0) << "stopped by stop(), not by the refusal";
  EXPECT_EQ(bad.connections, 1) << "the second slot waits for the first one's AUTH";
  EXPECT_EQ(good.max_open, 2);
  bad.stop();
  good.stop();
  io.run_for(200ms);
}

// With several sessions per core, a final refusal still ends the agent: the sessions waiting
// for the first one's AUTH give up with it.
TEST(ConnectorTest, AFinalRefusalEndsEverySessionOfThatCore) {
  asio::io_context io;
  FakeCoreBehaviour refusing;
  refusing.refuse = true;
  refusing.refusal_code = "bad_token";
  refusing.refusal_error = "authentication failed";
  FakeCore core(io, refusing);
  RealTimeSource time;
  ConnectorOptions options = options_for(core);
  options.connections = 3;
  Connector connector(io.get_executor(), options, time);
  EXPECT_EQ(run_connector_for(io, connector, 20s), 1);
  EXPECT_EQ(core.connections, 1);
  core.stop();
  io.run_for(200ms);
}

// --session-max-age: the replacement session is up before the old one gets GOAWAY, so the core
// never has fewer sessions than asked for.
TEST(ConnectorTest, AnOldSessionIsReplacedBeforeItDrains) {
  asio::io_context io;
  FakeCore core(io, {});
  RealTimeSource time;
  ConnectorOptions options = options_for(core);
  options.session_max_age = 300ms;
  Connector connector(io.get_executor(), options, time);
  int fewest = 1;
  asio::steady_timer probe(io);
  const auto until = std::chrono::steady_clock::now() + 1s;  // before stop() closes them all
  std::function<void()> sample = [&] {
    if (std::chrono::steady_clock::now() >= until) return;
    if (core.max_open > 0) fewest = std::min(fewest, core.open);
    probe.expires_after(5ms);
    probe.async_wait([&](const transport::error_code& ec) {
      if (!ec) sample();
    });
  };
  sample();
  EXPECT_EQ(run_connector_for(io, connector, 1100ms), 0);
  probe.cancel();
  EXPECT_GE(core.connections, 3);
  EXPECT_LE(core.connections, 5);
  EXPECT_GE(core.go_aways, 2) << "the old sessions were not told to drain";
  EXPECT_EQ(fewest, 1) << "a moment without a session";
  core.stop();
  io.run_for(200ms);
}

TEST(ConnectorTest, HeartbeatIntervalFromTheCoreIsClamped) {
  EXPECT_EQ(heartbeat_interval_from_core(1), kMinHeartbeatInterval);
  EXPECT_EQ(heartbeat_interval_from_core(0xFFFFFFFFu), kMaxHeartbeatInterval);
  EXPECT_EQ(heartbeat_interval_from_core(15'000), 15s);

  // End to end: a core asking for 1 ms gets a PING a second, not a thousand.
  asio::io_context io;
  FakeCoreBehaviour behaviour;
  behaviour.heartbeat_interval_ms = 1;
  FakeCore core(io, behaviour);
  EXPECT_EQ(run_for(io, core, 2500ms), 0);
  EXPECT_EQ(core.connections, 1);
  EXPECT_LE(core.pings, 3);
}

TEST(ConnectorTest, NoticeTextIsPrintedWithControlCharactersEscaped) {
  ASSERT_TRUE(common::is_ok(observability::init_logging("text", "info")));
  asio::io_context io;
  FakeCoreBehaviour behaviour;
  behaviour.notice = "rate limit\x1b[2J\r\nforged line";
  FakeCore core(io, behaviour);
  testing::internal::CaptureStderr();
  run_for(io, core, 500ms);
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find(R"(rate limit\x1b[2J\r\nforged line)"), std::string::npos) << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
}

// Issue 25 "terminal escape sequences in core-provided text are stripped before printing": the
// log escaped them, but the public address went to stdout as the core sent it.
TEST(ConnectorTest, ThePublicAddressIsPrintedWithControlCharactersEscaped) {
  ASSERT_TRUE(common::is_ok(observability::init_logging("text", "info")));
  asio::io_context io;
  FakeCoreBehaviour behaviour;
  behaviour.url = "http://app.example\x1b]0;owned\x07\x1b[2J\rForwarding  http://evil";
  FakeCore core(io, behaviour);
  testing::internal::CaptureStdout();
  run_for(io, core, 500ms);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(
      out.find(R"(Forwarding  http://app.example\x1b]0;owned\x07\x1b[2J\rForwarding  http://evil)"),
      std::string::npos)
      << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
}

TEST(ConnectorTest, AFinalRefusalCodeEndsWithExitCode1) {
  for (const char* code : {"bad_token", "not_allowed", "bad_request"}) {
    asio::io_context io;
    FakeCoreBehaviour behaviour;
    behaviour.refuse = true;
    behaviour.refusal_code = code;
    behaviour.refusal_error = "some text the agent must not need";
    FakeCore core(io, behaviour);
    EXPECT_EQ(run_for(io, core, 3s), 1) << code;
    EXPECT_EQ(core.connections, 1) << code;
  }
}

// Issue 25: a name another account took (after a core restart) must not make the owner's
// agent exit; it retries with backoff and says why.
TEST(ConnectorTest, NameTakenIsRetriedWithBackoffSayingWhy) {
  ASSERT_TRUE(common::is_ok(observability::init_logging("text", "info")));
  asio::io_context io;
  FakeCoreBehaviour behaviour;
  behaviour.refuse = true;
  behaviour.refusal_code = "name_taken";
  behaviour.refusal_error = "app.example is in use by another account";
  FakeCore core(io, behaviour);
  testing::internal::CaptureStderr();
  const int code = run_for(io, core, 2s);
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 0);
  EXPECT_GE(core.connections, 2);
  EXPECT_LE(core.connections, 15);
  EXPECT_NE(out.find("app.example is in use by another account (retrying: the other account may "
                     "release it)"),
            std::string::npos)
      << out;
}

TEST(ConnectorTest, RefusalCodeDecidesAndTheTextIsTheFallback) {
  // The code wins over the text.
  EXPECT_FALSE(refusal_is_retryable("bad_token", "max_agents"));
  EXPECT_TRUE(refusal_is_retryable("shutting_down", "authentication failed"));
  EXPECT_TRUE(refusal_is_retryable("limit", ""));
  EXPECT_TRUE(refusal_is_retryable("unavailable", ""));
  EXPECT_FALSE(refusal_is_retryable("not_allowed", "x is in use by another account"));
  // Old cores (no code) and codes this build does not know: the text.
  EXPECT_TRUE(refusal_is_retryable("", "the core is shutting down; retry shortly"));
  EXPECT_TRUE(refusal_is_retryable("", "account a already has 10 agents connected (max_agents)"));
  EXPECT_TRUE(refusal_is_retryable("", "app.localhost is in use by another account"));
  EXPECT_TRUE(refusal_is_retryable("some_new_code",
                                   "app.localhost is reserved by another account "
                                   "(its agent left recently)"));
  EXPECT_FALSE(refusal_is_retryable("", "authentication failed: unknown token"));
  EXPECT_FALSE(refusal_is_retryable("", "account bob may not use the subdomain alice-app"));
  EXPECT_FALSE(refusal_is_retryable("",
                                    "account bob may not use the subdomain a; "
                                    "b.localhost is in use by another account"));
}

}  // namespace
}  // namespace tunnel::agent
