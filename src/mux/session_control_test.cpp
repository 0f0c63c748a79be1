// Control path of two real Sessions over loopback TCP: reset, GOAWAY, heartbeats, close(), and a
// Session fed hostile bytes from a plain socket.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <cstdlib>
#include <new>

#include "common/result_testing.hpp"
#include "mux/session_test_support.hpp"

// Records the largest single allocation so a test can show that a hostile frame length is
// rejected before any buffer grows for it.
namespace {
std::atomic<std::size_t> g_largest_allocation{0};
}  // namespace

void* operator new(std::size_t size) {
  std::size_t seen = g_largest_allocation.load(std::memory_order_relaxed);
  while (size > seen && !g_largest_allocation.compare_exchange_weak(seen, size)) {
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace tunnel::mux::test {
namespace {

using protocol::ErrorCode;
using protocol::FrameType;
namespace flags = protocol::flags;

class SessionControlTest : public ::testing::TestWithParam<std::uint8_t> {
 protected:
  std::uint8_t version() const { return GetParam(); }
  bool v2() const { return GetParam() >= protocol::kVersion2; }
};

std::string version_name(const ::testing::TestParamInfo<std::uint8_t>& info) {
  return "v" + std::to_string(info.param);
}

TEST_P(SessionControlTest, AgentResetReachesTheCoreWithCodeAndMessage) {
  SessionPair pair(version());
  ASSERT_TRUE(pair.ready());
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = opened(pair.core->open_stream(1, "x"));
    CO_ASSERT_TRUE(stream != nullptr);
    auto accepted = co_await pair.agent->accept();
    CO_ASSERT_TRUE(accepted != nullptr);
    accepted->reset(ErrorCode::kLocalUnreachable, "dial 127.0.0.1:9: connection refused");
    EXPECT_TRUE(accepted->is_reset());
    std::uint8_t buf[16];
    error_code ec;
    const auto n = co_await stream->read_some(asio::buffer(buf), ec);
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(ec, asio::error::connection_reset) << ec.message();
    EXPECT_TRUE(stream->is_reset());
    EXPECT_EQ(stream->reset_code(), v2() ? ErrorCode::kLocalUnreachable : ErrorCode::kLocalError);
    EXPECT_EQ(stream->reset_message(), "dial 127.0.0.1:9: connection refused");
    // Writes fail too, and both sessions forgot the stream.
    co_await stream->write(as_bytes("late"), ec);
    EXPECT_TRUE(ec);
    EXPECT_EQ(pair.core->stream_count(), 0u);
    EXPECT_EQ(pair.agent->stream_count(), 0u);
    EXPECT_TRUE(pair.core->is_open());
    EXPECT_TRUE(pair.agent->is_open());
  });
}

TEST(SessionResetTest, CoreResetWakesTheAgentReader) {
  SessionPair pair(protocol::kVersion2);
  ASSERT_TRUE(pair.ready());
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = opened(pair.core->open_stream(1, ""));
    CO_ASSERT_TRUE(stream != nullptr);
    auto accepted = co_await pair.agent->accept();
    CO_ASSERT_TRUE(accepted != nullptr);
    asio::co_spawn(
        co_await asio::this_coro::executor,
        [stream]() -> asio::awaitable<void> {
          co_await sleep_for(20ms);
          stream->reset(ErrorCode::kCancel, "client went away");
        },
        asio::detached);
    std::uint8_t buf[16];
    error_code ec;
    EXPECT_EQ(co_await accepted->read_some(asio::buffer(buf), ec), 0u);
    EXPECT_EQ(ec, asio::error::connection_reset);
    EXPECT_EQ(accepted->reset_code(), ErrorCode::kCancel);
    EXPECT_EQ(accepted->reset_message(), "client went away");
    EXPECT_EQ(pair.agent->stream_count(), 0u);
  });
}

TEST(SessionReadDeadlineTest, ReadTimesOutAndTheStreamStaysUsable) {
  SessionPair pair(protocol::kVersion2);
  ASSERT_TRUE(pair.ready());
  pair.run([&]() -> asio::awaitable<void> {
    const OpenedStream s = co_await open_accepted(pair);
    CO_ASSERT_TRUE(s.ok());
    const auto& stream = s.core;
    const auto& accepted = s.agent;
    std::uint8_t buf[16];
    error_code ec;
    const auto start = Clock::now();
    EXPECT_EQ(co_await stream->read_some(asio::buffer(buf), ec, Clock::now() + 50ms), 0u);
    EXPECT_EQ(ec, asio::error::timed_out) << ec.message();
    EXPECT_GE(Clock::now() - start, 50ms);
    EXPECT_LT(Clock::now() - start, 2s);
    EXPECT_FALSE(stream->failed());
    // Data that comes before the next deadline is read; a wait without deadline still works.
    ec = {};
    co_await accepted->write(as_bytes("hi"), ec);
    CO_ASSERT_TRUE(!ec);
    ec = {};
    EXPECT_EQ(co_await stream->read_some(asio::buffer(buf), ec, Clock::now() + 5s), 2u);
    EXPECT_FALSE(ec) << ec.message();
    asio::co_spawn(
        co_await asio::this_coro::executor,
        [accepted]() -> asio::awaitable<void> {
          co_await sleep_for(20ms);
          error_code wec;
          co_await accepted->write(as_bytes("abc"), wec);
        },
        asio::detached);
    EXPECT_EQ(co_await stream->read_some(asio::buffer(buf), ec), 3u);
    EXPECT_FALSE(ec) << ec.message();
  });
}

TEST_P(SessionControlTest, OnGoneRunsForThePeersResetAndNotForOurOwn) {
  SessionPair pair(version());
  ASSERT_TRUE(pair.ready());
  pair.run([&]() -> asio::awaitable<void> {
    const OpenedStream s1 = co_await open_accepted(pair);
    CO_ASSERT_TRUE(s1.ok());
    const auto& first = s1.core;
    const auto& accepted = s1.agent;
    int gone = 0;
    accepted->on_gone([&] { ++gone; });
    first->reset(ErrorCode::kCancel, "client went away");
    EXPECT_TRUE(co_await wait_until([&] { return gone == 1; }, 2s));

    // Our own reset does not call it; a cleared hook is never called.
    const OpenedStream s2 = co_await open_accepted(pair);
    CO_ASSERT_TRUE(s2.ok());
    const auto& own = s2.agent;
    int own_gone = 0;
    own->on_gone([&] { ++own_gone; });
    own->reset(ErrorCode::kLocalError, "app failed");
    EXPECT_EQ(own_gone, 0);
    const OpenedStream s3 = co_await open_accepted(pair);
    CO_ASSERT_TRUE(s3.ok());
    const auto& third = s3.core;
    const auto& cleared = s3.agent;
    int cleared_gone = 0;
    cleared->on_gone([&] { ++cleared_gone; });
    cleared->on_gone(nullptr);
    third->reset(ErrorCode::kCancel, "bye");
    EXPECT_TRUE(co_await wait_until([&] { return cleared->read_closed(); }, 2s));
    EXPECT_EQ(cleared_gone, 0);

    // The end of the session counts as gone.
    const OpenedStream s4 = co_await open_accepted(pair);
    CO_ASSERT_TRUE(s4.ok());
    const auto& last = s4.agent;
    int last_gone = 0;
    last->on_gone([&] { ++last_gone; });
    pair.core->close("test over");
    EXPECT_TRUE(co_await wait_until([&] { return last_gone == 1; }, 5s));
  });
}

TEST_P(SessionControlTest, NoticeReachesTheAgentOnV2Only) {
  SessionPair pair(version());
  ASSERT_TRUE(pair.ready());
  std::vector<std::pair<std::uint16_t, std::string>> seen;
  pair.agent->on_notice = [&](std::uint16_t index, const std::string& message) {
    seen.emplace_back(index, message);
  };
  pair.run([&]() -> asio::awaitable<void> {
    pair.core->notice(3, "dropped 2 datagrams");
    pair.core->notice(0, std::string(10000, 'x'));  // cut to a bounded size
    if (v2()) {
      EXPECT_TRUE(co_await wait_until([&] { return seen.size() == 2; }, 2s));
      if (seen.size() == 2) {
        EXPECT_EQ(seen[0], (std::pair<std::uint16_t, std::string>{3, "dropped 2 datagrams"}));
        EXPECT_EQ(seen[1].first, 0);
        EXPECT_EQ(seen[1].second.size(), 4096u);
      }
    } else {
      // v1 has no NOTICE: nothing is sent, and the session stays healthy.
      auto stream = opened(pair.core->open_stream(0, ""));
      CO_ASSERT_TRUE(stream != nullptr);
      EXPECT_TRUE(co_await pair.agent->accept() != nullptr);
      EXPECT_TRUE(seen.empty());
    }
    EXPECT_TRUE(pair.agent->is_open());
  });
}

TEST_P(SessionControlTest, GoAwayRefusesNewStreamsAndLetsOpenOnesFinish) {
  SessionPair pair(version());
  ASSERT_TRUE(pair.ready());
  std::optional<std::pair<ErrorCode, std::string>> seen;
  pair.agent->on_go_away = [&](ErrorCode code, const std::string& message) {
    seen.emplace(code, message);
  };
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = opened(pair.core->open_stream(1, ""));
    CO_ASSERT_TRUE(stream != nullptr);
    auto accepted = co_await pair.agent->accept();
    CO_ASSERT_TRUE(accepted != nullptr);

    pair.core->go_away(ErrorCode::kGoingAway, "core restarting");
    EXPECT_TRUE(pair.core->is_draining());
    if (v2()) {
      EXPECT_TRUE(co_await wait_until([&] { return seen.has_value(); }, 2s))
          << "on_go_away did not fire";
      if (seen) {
        EXPECT_EQ(seen->first, ErrorCode::kGoingAway);
        EXPECT_EQ(seen->second, "core restarting");
      }
      EXPECT_TRUE(pair.agent->peer_going_away());
    }
    const auto refused = pair.core->open_stream(2, "");
    EXPECT_FALSE(refused);
    EXPECT_FALSE(common::error_of(refused).empty());

    // wait_idle() resolves only once the open stream has finished both ways.
    bool idle = false;
    asio::co_spawn(
        co_await asio::this_coro::executor,
        [&]() -> asio::awaitable<void> {
          co_await pair.core->wait_idle();
          idle = true;
        },
        asio::detached);
    co_await sleep_for(30ms);
    EXPECT_FALSE(idle) << "wait_idle() resolved with a stream still open";

    error_code ec;
    co_await stream->write(as_bytes("still works"), ec, true);
    EXPECT_FALSE(ec) << ec.message();
    std::string got(32, '\0');
    const auto n = co_await accepted->read_some(asio::buffer(got), ec);
    EXPECT_EQ(got.substr(0, n), "still works");
    co_await accepted->write(as_bytes("reply"), ec, true);
    EXPECT_FALSE(ec) << ec.message();
    const auto m = co_await stream->read_some(asio::buffer(got), ec);
    EXPECT_EQ(got.substr(0, m), "reply");
    EXPECT_EQ(co_await stream->read_some(asio::buffer(got), ec), 0u);
    EXPECT_TRUE(co_await wait_until([&] { return idle; }, 2s)) << "wait_idle() did not resolve";
    EXPECT_TRUE(pair.core->is_open());
  });
}

struct HostileCase {
  std::string name;
  std::uint8_t version;
  std::vector<std::uint8_t> bytes;
  std::string expect;  // in run()'s result
};

std::vector<HostileCase> hostile_cases() {
  std::vector<HostileCase> cases;
  for (std::uint8_t v : {protocol::kVersion1, protocol::kVersion2}) {
    const std::string vs = "v" + std::to_string(v);
    auto huge = frame(v, 3, 0, 1);
    protocol::put_u32(huge.data(), 0xFFFFFFFFu);
    cases.push_back({vs + "_length_ffffffff", v, huge, "frame length 4294967295 is above"});
    auto over = frame(v, 3, 0, 1);
    protocol::put_u32(over.data(), protocol::kMaxLength + 1);
    cases.push_back({vs + "_length_max_plus_1", v, over, "is above the maximum"});
    auto tiny = frame(v, 3, 0, 1);
    protocol::put_u32(tiny.data(), 3);
    cases.push_back({vs + "_length_below_header", v, tiny, "below the minimum"});
    auto magic = frame(v, 5, 0, 0);
    magic[4] = 'X';
    cases.push_back({vs + "_bad_magic", v, magic, "bad magic"});
    const std::uint8_t other = v == 1 ? 2 : 1;
    cases.push_back({vs + "_version_mismatch", v, frame(other, 5, 0, 0),
                     "unsupported version " + std::to_string(other)});
    cases.push_back({vs + "_data_never_opened", v, frame(v, 3, 0, 5, "hello"),
                     "DATA for stream 5 that was never opened"});
  }
  cases.push_back({"v1_unknown_type", 1, frame(1, 9, 0, 0, "12345678"), "unknown frame type 9"});
  cases.push_back({"v2_window_update_3_bytes", 2, frame(2, 6, 0, 1, "abc"),
                   "WINDOW_UPDATE payload is not 4 bytes"});
  cases.push_back({"v2_goaway_short", 2, frame(2, 8, 0, 0, "abc"), "GOAWAY payload"});
  cases.push_back({"v2_notice_short", 2, frame(2, 10, 0, 0, "a"), "NOTICE payload"});
  cases.push_back({"v2_open_from_agent", 2, {}, "OPEN_STREAM from the agent"});
  return cases;
}

class HostileInputTest : public ::testing::TestWithParam<HostileCase> {};

TEST_P(HostileInputTest, EndsOnlyThatSessionWithANamedReason) {
  const HostileCase& c = GetParam();
  SessionPair healthy(c.version);
  ASSERT_TRUE(healthy.ready());
  asio::co_spawn(healthy.io, echo_server(healthy.agent), asio::detached);
  // A core session for the agent->core case, an agent session for every other.
  const bool core_under_test = c.name == "v2_open_from_agent";
  Options options = options_for(c.version);
  RawPeer peer(healthy.io, core_under_test ? Role::kCore : Role::kAgent, options);
  std::vector<std::uint8_t> bytes =
      core_under_test ? frame(2, 2, 0, 1, std::string("\0\1", 2)) : c.bytes;
  healthy.run([&]() -> asio::awaitable<void> {
    g_largest_allocation = 0;
    co_await asio::async_write(peer.raw, asio::buffer(bytes), asio::use_awaitable);
    CO_ASSERT_TRUE(co_await wait_until([&] { return peer.reason.has_value(); }, 5s));
    EXPECT_NE(peer.reason->find("protocol error"), std::string::npos) << *peer.reason;
    EXPECT_NE(peer.reason->find(c.expect), std::string::npos) << *peer.reason;
    EXPECT_FALSE(peer.session->is_open());
    EXPECT_LT(g_largest_allocation.load(), 1024u * 1024) << "allocated for a hostile length";
    // The raw end sees the connection end.
    std::vector<std::uint8_t> sink(64 * 1024);
    for (;;) {
      auto [ec, n] = co_await peer.raw.async_read_some(asio::buffer(sink),
                                                       asio::as_tuple(asio::use_awaitable));
      if (ec) break;
    }
    // The other session of the same process is untouched.
    EXPECT_TRUE(healthy.core->is_open());
    auto stream = opened(healthy.core->open_stream(1, ""));
    CO_ASSERT_TRUE(stream != nullptr);
    error_code ec;
    co_await stream->write(as_bytes("ok"), ec, true);
    char buf[8];
    const auto n = co_await stream->read_some(asio::buffer(buf), ec);
    EXPECT_EQ(std::string(buf, n), "ok");
  });
  peer.session.reset();
}

INSTANTIATE_TEST_SUITE_P(Frames, HostileInputTest, ::testing::ValuesIn(hostile_cases()),
                         [](const auto& test_info) { return test_info.param.name; });

// v2 skips frame types it does not know: the session stays up and still answers a PING.
TEST(HostileInputTest, UnknownV2TypeIsIgnored) {
  asio::io_context io;
  RawPeer peer(io, Role::kAgent, options_for(protocol::kVersion2));
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto bytes = frame(2, 42, 0x80, 3, "from a newer build");
        const auto ping = frame(2, 9, 0, 0, "12345678");
        bytes.insert(bytes.end(), ping.begin(), ping.end());
        co_await asio::async_write(peer.raw, asio::buffer(bytes), asio::use_awaitable);
        std::vector<std::uint8_t> got(ping.size());
        co_await asio::async_read(peer.raw, asio::buffer(got), asio::use_awaitable);
        const auto decoded = protocol::decode_header(got, protocol::kVersion2);
        EXPECT_EQ(decoded.status, protocol::DecodeStatus::kOk) << decoded.error;
        EXPECT_EQ(decoded.header.type, 9);
        EXPECT_TRUE(decoded.header.has(flags::kAck));
        EXPECT_EQ(std::string(got.begin() + 13, got.end()), "12345678");
        EXPECT_TRUE(peer.session->is_open());
        EXPECT_FALSE(peer.reason.has_value());
        peer.session->close("test over");
        done = true;
      },
      asio::detached);
  EXPECT_TRUE(run_until(
      io, [&] { return done && peer.reason.has_value(); }, 5s));
}

// The heartbeat tests run on the sessions' simulated clock (10 s interval, 30 s timeout, the
// defaults): the decisions are exact and nothing waits for real heartbeats. What the decisions
// are at each instant is tested without sockets in heartbeat_test.cpp.

// Reads one frame header (and its payload) from a raw peer's socket.
asio::awaitable<protocol::FrameHeader> read_frame(tcp::socket& raw, std::uint8_t version) {
  std::array<std::uint8_t, protocol::kHeaderSize> head{};
  co_await asio::async_read(raw, asio::buffer(head), asio::use_awaitable);
  const auto decoded = protocol::decode_header(head, version);
  EXPECT_EQ(decoded.status, protocol::DecodeStatus::kOk) << decoded.error;
  std::vector<std::uint8_t> payload(decoded.header.payload_size());
  co_await asio::async_read(raw, asio::buffer(payload), asio::use_awaitable);
  co_return decoded.header;
}

TEST_P(SessionControlTest, SilentPeerIsDroppedAtExactlyTheHeartbeatTimeout) {
  asio::io_context io;
  // v1: the core only answers heartbeats, so the silent one is the agent.
  Options options = options_for(version());
  const Role role = v2() ? Role::kAgent : Role::kCore;
  if (!v2()) options.send_heartbeats = false;
  RawPeer peer(io, role, options);
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        peer.time.advance(30s - 1ms);
        peer.session->time_moved();
        if (v2()) {
          // The PING due since 10 s shows that the session decided at 29.999 s, and kept going.
          const auto ping = co_await read_frame(peer.raw, version());
          EXPECT_EQ(ping.frame_type(), FrameType::kPing);
          EXPECT_FALSE(ping.has(flags::kAck));
        }
        EXPECT_TRUE(peer.session->is_open()) << peer.reason.value_or("");
        peer.time.advance(1ms);
        peer.session->time_moved();
        EXPECT_TRUE(co_await wait_until([&] { return peer.reason.has_value(); }, 5s))
            << "not dropped at the timeout";
        done = true;
      },
      asio::detached);
  EXPECT_TRUE(run_until(
      io, [&] { return done; }, 10s));
  EXPECT_EQ(peer.reason.value_or(""),
            "no frame from the peer for 30000 ms (heartbeat timeout 30000 ms)");
}

// Streams are refused once the agent is silent for 2 intervals, before the timeout drops it.
TEST(SessionSilenceTest, OpenStreamIsRefusedOnceThePeerIsSilentFor2Intervals) {
  asio::io_context io;
  RawPeer peer(io, Role::kCore, options_for(protocol::kVersion2));
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        std::string error;
        peer.time.advance(20s - 1ms);
        peer.session->time_moved();
        co_await read_frame(peer.raw, protocol::kVersion2);  // the PING of 10 s: it decided
        auto stream = opened(peer.session->open_stream(1, ""));
        EXPECT_TRUE(stream != nullptr);
        if (stream) stream->reset(ErrorCode::kCancel, "test");
        peer.time.advance(1ms);
        peer.session->time_moved();
        EXPECT_TRUE(co_await wait_until(
            [&] {
              auto extra = peer.session->open_stream(1, "");
              if (extra) extra.value()->reset(ErrorCode::kCancel, "test");
              if (!extra) error = extra.error().message;
              return !extra;
            },
            5s));
        EXPECT_EQ(error,
                  "the agent has sent nothing for over 20000 ms (2 heartbeat intervals); it is "
                  "dropped after 30000 ms");
        EXPECT_TRUE(peer.session->is_open());
        // One frame from the agent and streams flow again.
        const auto pong = frame(2, static_cast<std::uint8_t>(FrameType::kPing), flags::kAck, 0,
                                std::string(8, '\0'));
        co_await asio::async_write(peer.raw, asio::buffer(pong), asio::use_awaitable);
        EXPECT_TRUE(co_await wait_until(
            [&] {
              auto extra = opened(peer.session->open_stream(1, ""));
              if (extra) extra->reset(ErrorCode::kCancel, "test");
              return extra != nullptr;
            },
            5s));
        peer.session->close("test over");
        done = true;
      },
      asio::detached);
  EXPECT_TRUE(run_until(
      io, [&] { return done && peer.reason.has_value(); }, 10s));
}

TEST_P(SessionControlTest, HealthyPairStaysUpAndMeasuresRtt) {
  Options core = options_for(version());
  Options agent = options_for(version());
  if (!v2()) core.send_heartbeats = false;
  SessionPair pair(core, agent);
  ASSERT_TRUE(pair.ready());
  pair.run([&]() -> asio::awaitable<void> {
    // Ten intervals, well past the timeout: each time the PINGs go out and are answered (v1:
    // the agent's HEARTBEAT), so both ends keep hearing from each other.
    for (int i = 0; i < 10; ++i) {
      pair.advance(10s);
      const auto now = pair.time.monotonic_time();
      EXPECT_TRUE(co_await wait_until(
          [&] { return pair.core->last_received() == now && pair.agent->last_received() == now; },
          5s))
          << "no heartbeat answered at interval " << i;
    }
    EXPECT_TRUE(pair.core->is_open()) << pair.core_reason.value_or("");
    EXPECT_TRUE(pair.agent->is_open()) << pair.agent_reason.value_or("");
    EXPECT_GT(pair.agent->rtt().count(), 0);
    if (v2()) {
      EXPECT_GT(pair.core->rtt().count(), 0);
    }
  });
}

// v1 stops reading the connection while a stream holds too much unread data; the peer's
// heartbeats then sit unread, which must not count as a silent peer.
TEST(SessionV1Test, BackpressureIsNotAHeartbeatTimeout) {
  Options core = options_for(protocol::kVersion1);
  core.send_heartbeats = false;
  Options agent = options_for(protocol::kVersion1);
  agent.v1_stream_buffer = 64 * 1024;
  SessionPair pair(core, agent);
  ASSERT_TRUE(pair.ready());
  pair.run([&]() -> asio::awaitable<void> {
    auto stream = opened(pair.core->open_stream(0, ""));
    CO_ASSERT_TRUE(stream != nullptr);
    auto accepted = co_await pair.agent->accept();
    CO_ASSERT_TRUE(accepted != nullptr);
    constexpr std::size_t kTotal = 4 * 1024 * 1024;
    bool written = false;
    error_code wec;
    asio::co_spawn(
        co_await asio::this_coro::executor,
        [&]() -> asio::awaitable<void> {
          co_await send_pattern(*stream, 9, kTotal, 64 * 1024, true, wec);
          written = true;
        },
        asio::detached);
    // The agent stops reading once the stream holds its v1 bound.
    CO_ASSERT_TRUE(
        co_await wait_until([&] { return accepted->buffered() > agent.v1_stream_buffer; }, 5s));
    // Twice the timeout while the agent does not read: it hears nothing (its HEARTBEAT acks sit
    // unread), the core hears its HEARTBEATs.
    for (int i = 0; i < 6; ++i) {
      pair.advance(10s);
      const auto now = pair.time.monotonic_time();
      EXPECT_TRUE(co_await wait_until([&] { return pair.core->last_received() == now; }, 5s))
          << "the agent's HEARTBEAT did not arrive at interval " << i;
    }
    EXPECT_LT(pair.agent->last_received(), pair.time.monotonic_time() - 30s)
        << "the agent read something: the test does not test backpressure";
    EXPECT_TRUE(pair.agent->is_open()) << pair.agent_reason.value_or("");
    EXPECT_TRUE(pair.core->is_open()) << pair.core_reason.value_or("");
    // Memory held for the unread stream stays near the v1 bound (plus one read chunk).
    EXPECT_LE(accepted->buffered(), agent.v1_stream_buffer + FrameReader::kReadChunk * 2);
    auto got = co_await receive_pattern(*accepted, 9);
    EXPECT_EQ(got.bytes, kTotal);
    EXPECT_TRUE(got.eof);
    EXPECT_FALSE(got.first_mismatch.has_value());
    EXPECT_TRUE(co_await wait_until([&] { return written; }, 5s));
    EXPECT_FALSE(wec) << wec.message();
  });
}

// v1: resetting the stream that holds reading back lets the session read again.
TEST(SessionV1Test, ResetOfABlockingStreamResumesReading) {
  Options agent = options_for(protocol::kVersion1);
  agent.v1_stream_buffer = 64 * 1024;
  SessionPair pair(options_for(protocol::kVersion1), agent);
  ASSERT_TRUE(pair.ready());
  pair.run([&]() -> asio::awaitable<void> {
    auto blocked = opened(pair.core->open_stream(0, ""));
    CO_ASSERT_TRUE(blocked != nullptr);
    auto blocked_agent = co_await pair.agent->accept();
    CO_ASSERT_TRUE(blocked_agent != nullptr);
    error_code ec;
    std::vector<std::uint8_t> data(512 * 1024, 0x5a);
    co_await blocked->write(data, ec);
    CO_ASSERT_TRUE(co_await wait_until(
        [&] { return blocked_agent->buffered() > agent.v1_stream_buffer; }, 2s));
    blocked_agent->reset(ErrorCode::kCancel, "not interested");
    auto other = opened(pair.core->open_stream(0, "next"));
    CO_ASSERT_TRUE(other != nullptr);
    auto other_agent = co_await with_timeout(pair.agent->accept(), 3s);
    CO_ASSERT_TRUE(other_agent.has_value() && *other_agent != nullptr);
    EXPECT_EQ((*other_agent)->open_payload(), "next");
  });
}

TEST_P(SessionControlTest, CloseWakesBlockedReadersWritersAndAccept) {
  Options agent = options_for(version());
  agent.v1_stream_buffer = 64 * 1024;
  SessionPair pair(options_for(version()), agent);
  ASSERT_TRUE(pair.ready());
  pair.run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto reading = opened(pair.core->open_stream(1, ""));
    auto writing = opened(pair.core->open_stream(2, ""));
    CO_ASSERT_TRUE(reading && writing);
    auto reading_agent = co_await pair.agent->accept();
    auto writing_agent = co_await pair.agent->accept();
    CO_ASSERT_TRUE(reading_agent && writing_agent);

    std::optional<error_code> read_result, write_result, agent_read_result;
    bool accept_woke = false;
    asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<void> {
          std::uint8_t b[8];
          error_code ec;
          co_await reading->read_some(asio::buffer(b), ec);
          read_result = ec;
        },
        asio::detached);
    asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<void> {
          std::uint8_t b[8];
          error_code ec;
          co_await reading_agent->read_some(asio::buffer(b), ec);
          agent_read_result = ec;
        },
        asio::detached);
    std::size_t progress = 0;
    asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<void> {
          std::vector<std::uint8_t> chunk(64 * 1024);
          error_code ec;
          while (!ec) {
            co_await writing->write(chunk, ec);
            progress += chunk.size();
          }
          write_result = ec;
        },
        asio::detached);
    asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<void> {
          auto s = co_await pair.agent->accept();
          accept_woke = s == nullptr;
        },
        asio::detached);
    // Wait until the writer is stuck (credit in v2; a full write queue in v1).
    std::size_t last = SIZE_MAX;
    while (progress != last) {
      last = progress;
      co_await sleep_for(150ms);
    }
    EXPECT_FALSE(write_result.has_value());
    EXPECT_FALSE(read_result.has_value());

    pair.core->close("closing for the test");
    EXPECT_TRUE(co_await wait_until([&] { return read_result && write_result; }, 1s));
    EXPECT_TRUE(read_result && *read_result == asio::error::connection_aborted);
    EXPECT_TRUE(write_result && *write_result == asio::error::connection_aborted);
    EXPECT_FALSE(pair.core->is_open());
    const auto refused = pair.core->open_stream(3, "");
    EXPECT_FALSE(refused);
    EXPECT_FALSE(common::error_of(refused).empty());

    // The agent learns it from the CLOSE frame (or the connection's end) once it reads again.
    co_await receive_pattern(*writing_agent, 0);
    EXPECT_TRUE(co_await wait_until([&] { return pair.core_reason.has_value(); }, 5s));
    EXPECT_EQ(pair.core_reason.value_or(""), "closing for the test");
    EXPECT_TRUE(co_await wait_until([&] { return pair.agent_reason.has_value(); }, 5s));
    EXPECT_TRUE(co_await wait_until([&] { return agent_read_result && accept_woke; }, 1s));
    EXPECT_TRUE(agent_read_result && *agent_read_result);
  });
}

// Sends 64 KiB chunks into `stream` until a write fails; `progress` counts the bytes, `result`
// gets the error that ended it.
asio::awaitable<void> write_chunks(std::shared_ptr<Stream> stream,
                                   std::shared_ptr<std::size_t> progress,
                                   std::optional<error_code>* result) {
  std::vector<std::uint8_t> chunk(64 * 1024);
  error_code ec;
  while (!ec) {
    co_await stream->write(chunk, ec);
    *progress += chunk.size();
  }
  *result = ec;
}

// Starts write_chunks() and returns once the writes stop making progress: the socket buffers
// are full because the peer reads nothing.
asio::awaitable<void> write_until_stuck(std::shared_ptr<Stream> stream,
                                        std::optional<error_code>* result) {
  auto progress = std::make_shared<std::size_t>(0);
  asio::co_spawn(co_await asio::this_coro::executor,
                 write_chunks(std::move(stream), progress, result), asio::detached);
  std::size_t last = SIZE_MAX;
  while (*progress != last) {
    last = *progress;
    co_await sleep_for(150ms);
  }
}

// close() while a write is stuck on a peer that stopped reading: run() still returns (the final
// flush gets a bounded time, then the connection is aborted).
TEST(SessionCloseTest, CloseReturnsWhileAWriteIsStuck) {
  asio::io_context io;
  RawPeer peer(io, Role::kCore, options_for(protocol::kVersion1));  // v1: no credit to stop us
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto stream = opened(peer.session->open_stream(0, ""));
        CO_ASSERT_TRUE(stream != nullptr);
        std::optional<error_code> result;
        co_await write_until_stuck(stream, &result);
        const auto closed_at = Clock::now();
        peer.session->close("closing a stuck session");
        EXPECT_TRUE(co_await wait_until([&] { return result.has_value(); }, 1s));
        EXPECT_TRUE(co_await wait_until([&] { return peer.reason.has_value(); }, 5s))
            << "run() did not return: the write to a peer that does not read hangs";
        EXPECT_LT(Clock::now() - closed_at, 4s);
        EXPECT_EQ(peer.reason.value_or(""), "closing a stuck session");
        done = true;
      },
      asio::detached);
  EXPECT_TRUE(run_until(
      io, [&] { return done; }, 15s));
}

// A frame that arrives after close() must not bring a stream back into the session's maps: the
// stream holds the session, so the two would keep each other alive (found by http_proxy_fuzz).
// The session under test cannot finish closing at once because its last writes are stuck (the
// raw peer reads nothing), so its read loop is still reading when the next OPEN_STREAM comes.
TEST(SessionCloseTest, OpenStreamAfterCloseDoesNotKeepTheSessionAlive) {
  asio::io_context io;
  std::weak_ptr<Session> weak;
  {
    RawPeer peer(io, Role::kAgent, options_for(protocol::kVersion1));  // v1: no credit limit
    weak = peer.session;
    bool done = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          const auto first = frame(1, 2, 0, 1, "GET / HTTP/1.1\r\n\r\n");
          co_await asio::async_write(peer.raw, asio::buffer(first), asio::use_awaitable);
          auto stream = co_await peer.session->accept();
          CO_ASSERT_TRUE(stream != nullptr);
          std::optional<error_code> result;
          co_await write_until_stuck(std::move(stream), &result);
          peer.session->close("closing");
          const auto second = frame(1, 2, 0, 2, "GET / HTTP/1.1\r\n\r\n");
          co_await asio::async_write(peer.raw, asio::buffer(second), asio::use_awaitable);
          EXPECT_TRUE(co_await wait_until([&] { return result.has_value(); }, 1s));
          EXPECT_TRUE(co_await wait_until([&] { return peer.reason.has_value(); }, 5s))
              << "run() did not return after close()";
          done = true;
        },
        asio::detached);
    EXPECT_TRUE(run_until(
        io, [&] { return done; }, 15s));
    boost::system::error_code ignored;
    peer.raw.close(ignored);
  }
  EXPECT_TRUE(run_until(
                  io, [] { return false; }, 5s) ||
              io.stopped())
      << "a coroutine is still suspended after the session ended";
  EXPECT_TRUE(weak.expired()) << "the session leaked: a stream opened after close() holds it";
}

// Debug builds: a Session or Stream entry point called from a thread that does not run the
// session's io_context (another worker) aborts, naming the function. Release builds check nothing.
TEST(SessionExecutorDeathTest, EntryPointsOffTheExecutorAbortInDebugBuilds) {
#ifdef NDEBUG
  GTEST_SKIP() << "the executor checks are compiled in debug builds only";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  SessionPair pair(protocol::kVersion2);
  ASSERT_TRUE(pair.ready());
  OpenedStream opened;
  pair.run([&]() -> asio::awaitable<void> { opened = co_await open_accepted(pair); });
  ASSERT_TRUE(opened.ok());
  // Another worker: its own io_context, run on this thread.
  const auto on_other_worker = [](const std::function<void()>& fn) {
    asio::io_context other;
    asio::post(other, fn);
    other.run();
  };
  EXPECT_DEATH(on_other_worker([&] { (void)pair.core->open_stream(1, ""); }),
               "mux::Session::open_stream called off its executor");
  EXPECT_DEATH(on_other_worker([&] { pair.core->go_away(ErrorCode::kGoingAway, "bye"); }),
               "mux::Session::go_away called off its executor");
  EXPECT_DEATH(on_other_worker([&] { pair.core->notice(1, "hello"); }),
               "mux::Session::notice called off its executor");
  EXPECT_DEATH(on_other_worker([&] { pair.core->close("bye"); }),
               "mux::Session::close called off its executor");
  EXPECT_DEATH(on_other_worker([&] { opened.core->reset(ErrorCode::kCancel, "bye"); }),
               "mux::Stream::reset called off its executor");
  EXPECT_DEATH(on_other_worker([&] { opened.agent->on_gone([] {}); }),
               "mux::Stream::on_gone called off its executor");
  EXPECT_DEATH(
      {
        asio::io_context other;
        asio::co_spawn(
            other,
            [&]() -> asio::awaitable<void> {
              error_code ec;
              const std::array<std::uint8_t, 1> byte{1};
              co_await opened.core->write(byte, ec);
            },
            asio::detached);
        other.run();
      },
      "mux::Stream::write called off its executor");
  // On the executor the same calls pass.
  pair.run([&]() -> asio::awaitable<void> {
    opened.agent->on_gone([] {});
    opened.core->reset(ErrorCode::kCancel, "done");
    co_return;
  });
#endif
}

INSTANTIATE_TEST_SUITE_P(Versions, SessionControlTest,
                         ::testing::Values(protocol::kVersion1, protocol::kVersion2), version_name);

}  // namespace
}  // namespace tunnel::mux::test
