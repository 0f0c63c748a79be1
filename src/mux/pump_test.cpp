// The socket<->stream pump between two real sessions: the test plays the stream's far end
// (the core side of a SessionPair opens the stream) and the socket's peer (the other end of a
// loopback TCP pair); the agent side runs pump() on the accepted stream and its socket.
#include "mux/pump.hpp"

#include <gtest/gtest.h>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "mux/session_test_support.hpp"

namespace tunnel::mux {
namespace {

using namespace test;
using protocol::ErrorCode;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

class TestHooks : public PumpHooks {
 public:
  bool throttle_on = false;
  std::string refuse_eof;
  std::vector<std::pair<PumpDirection, std::size_t>> throttled_chunks;
  std::uint64_t forwarded_to_stream = 0;
  std::uint64_t forwarded_to_socket = 0;

  bool throttled() const override { return throttle_on; }
  asio::awaitable<void> throttle(PumpDirection direction, std::size_t n) override {
    throttled_chunks.emplace_back(direction, n);
    co_await sleep_for(1ms);
  }
  void forwarded(PumpDirection direction, std::size_t n) override {
    (direction == PumpDirection::kToStream ? forwarded_to_stream : forwarded_to_socket) += n;
  }
  std::string socket_failed(bool reading, const boost::system::error_code& ec) override {
    return std::string(reading ? "reading" : "writing") + " the test socket: " + ec.message();
  }
  std::string refuse_socket_eof() override { return refuse_eof; }
};

class PumpTest : public ::testing::Test {
 protected:
  PumpTest() : pair(protocol::kVersion2) {
    auto [a, b] = tcp_pair(pair.io);
    pumped.emplace(std::move(a));
    peer.emplace(std::move(b));
    options.reset_code = ErrorCode::kLocalError;
    options.peer = "the core";
    options.session = "the session";
  }

  // Accepts the stream the test opens and pumps it into `pumped` until both ends are done.
  static asio::awaitable<void> serve(std::shared_ptr<Session> agent, tcp::socket& socket,
                                     PumpHooks& hooks, const PumpOptions& options,
                                     std::optional<PumpResult>& result) {
    auto stream = co_await agent->accept();
    if (!stream) co_return;
    result = co_await pump(socket, *stream, hooks, options);
  }

  void start() {
    asio::co_spawn(pair.io, serve(pair.agent, *pumped, hooks, options, result), asio::detached);
  }

  std::shared_ptr<Stream> open() { return opened(pair.core->open_stream(0, "")); }

  SessionPair pair;
  std::optional<tcp::socket> pumped;  // the pump's socket
  std::optional<tcp::socket> peer;    // the socket's peer, played by the test
  TestHooks hooks;
  PumpOptions options;
  std::optional<PumpResult> result;
};

// Reads the socket until EOF or an error.
asio::awaitable<std::pair<std::string, boost::system::error_code>> read_to_end(tcp::socket& s) {
  std::string out;
  auto [ec, n] = co_await asio::async_read(s, asio::dynamic_buffer(out), kNoThrow);
  (void)n;
  co_return std::make_pair(std::move(out), ec);
}

// Reads the stream until END_STREAM or an error.
asio::awaitable<std::pair<std::string, error_code>> read_to_end(Stream& s) {
  std::string out;
  std::vector<char> buf(16 * 1024);
  error_code ec;
  for (;;) {
    const std::size_t n = co_await s.read_some(asio::buffer(buf), ec);
    if (ec || n == 0) break;
    out.append(buf.data(), n);
  }
  co_return std::make_pair(std::move(out), ec);
}

TEST_F(PumpTest, RelaysBothWaysAndPassesEachHalfCloseOn) {
  start();
  const std::string up(300 * 1024, 'u');  // more than one 64 KiB read
  const std::string down = "down";
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = open();
    CO_ASSERT_TRUE(stream);
    error_code ec;
    co_await stream->write(as_bytes(up), ec, true);  // END_STREAM: the peer sees a FIN
    CO_ASSERT_TRUE(!ec);
    auto [got, rec] = co_await read_to_end(*peer);
    EXPECT_EQ(rec, asio::error::eof) << rec.message();
    EXPECT_EQ(got.size(), up.size());
    EXPECT_EQ(got, up);
    // The other half is still open: the peer answers, then sends its FIN.
    co_await asio::async_write(*peer, asio::buffer(down), kNoThrow);
    peer->shutdown(tcp::socket::shutdown_send);
    auto [back, sec] = co_await read_to_end(*stream);
    EXPECT_FALSE(sec) << sec.message();
    EXPECT_EQ(back, down);
    CO_ASSERT_TRUE(co_await wait_until([&] { return result.has_value(); }, 10s));
  });
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, "");
  EXPECT_FALSE(result->socket_failed);
  EXPECT_EQ(result->to_socket, up.size());
  EXPECT_EQ(result->to_stream, down.size());
  EXPECT_EQ(hooks.forwarded_to_socket, up.size());
  EXPECT_EQ(hooks.forwarded_to_stream, down.size());
  EXPECT_TRUE(hooks.throttled_chunks.empty());
}

TEST_F(PumpTest, AStreamResetResetsTheSocket) {
  start();
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = open();
    CO_ASSERT_TRUE(stream);
    error_code ec;
    co_await stream->write(as_bytes(std::string_view("x")), ec);
    char byte = 0;
    auto [rec, n] = co_await asio::async_read(*peer, asio::buffer(&byte, 1), kNoThrow);
    CO_ASSERT_TRUE(!rec && n == 1);
    stream->reset(ErrorCode::kCancel, "the client left");
    auto [got, end] = co_await read_to_end(*peer);
    EXPECT_EQ(end, asio::error::connection_reset) << end.message();
    CO_ASSERT_TRUE(co_await wait_until([&] { return result.has_value(); }, 10s));
  });
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, "reset by the core (CANCEL: the client left)");
  EXPECT_FALSE(result->socket_failed);
}

TEST_F(PumpTest, ASocketResetResetsTheStreamWithTheReason) {
  start();
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = open();
    CO_ASSERT_TRUE(stream);
    error_code ec;
    co_await stream->write(as_bytes(std::string_view("x")), ec);
    char byte = 0;
    auto [rec, n] = co_await asio::async_read(*peer, asio::buffer(&byte, 1), kNoThrow);
    CO_ASSERT_TRUE(!rec && n == 1);
    peer->set_option(tcp::socket::linger(true, 0));
    peer->close();  // RST
    auto [got, sec] = co_await read_to_end(*stream);
    EXPECT_TRUE(sec);
    EXPECT_TRUE(stream->is_reset());
    EXPECT_EQ(stream->reset_code(), ErrorCode::kLocalError);
    EXPECT_EQ(stream->reset_message(), "reading the test socket: Connection reset by peer");
    CO_ASSERT_TRUE(co_await wait_until([&] { return result.has_value(); }, 10s));
  });
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, "reading the test socket: Connection reset by peer");
  EXPECT_TRUE(result->socket_failed);
}

TEST_F(PumpTest, ARefusedEofResetsTheStreamInsteadOfEndingIt) {
  hooks.refuse_eof = "it closed at once";
  start();
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = open();
    CO_ASSERT_TRUE(stream);
    peer->shutdown(tcp::socket::shutdown_send);
    auto [got, sec] = co_await read_to_end(*stream);
    EXPECT_TRUE(sec);
    EXPECT_EQ(stream->reset_code(), ErrorCode::kLocalError);
    EXPECT_EQ(stream->reset_message(), "it closed at once");
    CO_ASSERT_TRUE(co_await wait_until([&] { return result.has_value(); }, 10s));
  });
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, "it closed at once");
}

TEST_F(PumpTest, TheSessionEndingClosesTheSocket) {
  start();
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = open();
    CO_ASSERT_TRUE(stream);
    error_code ec;
    co_await stream->write(as_bytes(std::string_view("x")), ec);
    char byte = 0;
    co_await asio::async_read(*peer, asio::buffer(&byte, 1), kNoThrow);
    pair.agent->close("going away");
    auto [got, end] = co_await read_to_end(*peer);
    EXPECT_EQ(end, asio::error::eof) << end.message();
    CO_ASSERT_TRUE(co_await wait_until([&] { return result.has_value(); }, 10s));
  });
  ASSERT_TRUE(result);
  EXPECT_TRUE(result->outcome.starts_with("the session ended (")) << result->outcome;
}

TEST_F(PumpTest, AnIdleConnectionIsEndedAfterTheIdleTimeout) {
  options.idle_timeout = std::chrono::milliseconds(1000);
  options.idle_setting = "limits.tunnel_idle_timeout";
  start();
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = open();
    CO_ASSERT_TRUE(stream);
    auto [got, sec] = co_await read_to_end(*stream);
    EXPECT_TRUE(stream->is_reset());
    EXPECT_EQ(stream->reset_message(), "idle for 1 s (limits.tunnel_idle_timeout)");
    auto [bytes, end] = co_await read_to_end(*peer);
    EXPECT_TRUE(end == asio::error::eof || end == asio::error::connection_reset) << end.message();
    CO_ASSERT_TRUE(co_await wait_until([&] { return result.has_value(); }, 10s));
  });
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, "idle for 1 s (limits.tunnel_idle_timeout)");
  EXPECT_TRUE(result->socket_failed);
  EXPECT_TRUE(result->idle);
}

TEST_F(PumpTest, AThrottledPumpWaitsBeforeEveryChunkAndCountsWhatWentThrough) {
  hooks.throttle_on = true;
  start();
  const std::string up(200 * 1024, 'u');
  const std::string down(150 * 1024, 'd');
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = open();
    CO_ASSERT_TRUE(stream);
    error_code ec;
    co_await stream->write(as_bytes(up), ec, true);
    auto [got, rec] = co_await read_to_end(*peer);
    EXPECT_EQ(got.size(), up.size());
    co_await asio::async_write(*peer, asio::buffer(down), kNoThrow);
    peer->shutdown(tcp::socket::shutdown_send);
    auto [back, sec] = co_await read_to_end(*stream);
    EXPECT_EQ(back.size(), down.size());
    CO_ASSERT_TRUE(co_await wait_until([&] { return result.has_value(); }, 10s));
  });
  ASSERT_TRUE(result);
  std::uint64_t throttled_up = 0;
  std::uint64_t throttled_down = 0;
  for (const auto& [direction, n] : hooks.throttled_chunks) {
    EXPECT_LE(n, 64u * 1024) << "a throttled pump reads at most 64 KiB at once";
    (direction == PumpDirection::kToSocket ? throttled_up : throttled_down) += n;
  }
  EXPECT_EQ(throttled_up, up.size());
  EXPECT_EQ(throttled_down, down.size());
  EXPECT_EQ(result->to_socket, up.size());
  EXPECT_EQ(result->to_stream, down.size());
}

}  // namespace
}  // namespace tunnel::mux
