// Test support for the mux tests: two real Sessions over loopback TCP (or TLS), one io_context,
// a runner with a deadline, data patterns and an echo server. Test-only; not part of the library.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/time_source.hpp"
#include "mux/session.hpp"
#include "transport/conn.hpp"
#include "transport/test_support.hpp"

namespace tunnel::mux::test {

using transport::test::TlsPair;

using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using transport::error_code;

// A coroutine cannot `return` from an ASSERT: these end the coroutine instead.
#define CO_ASSERT_TRUE(cond)                       \
  do {                                             \
    if (!(cond)) {                                 \
      ADD_FAILURE() << "assertion failed: " #cond; \
      co_return;                                   \
    }                                              \
  } while (0)

// Connected loopback sockets: first = the accepted end (core), second = the dialer (agent).
inline std::pair<tcp::socket, tcp::socket> tcp_pair(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket dialer(io);
  dialer.connect(acceptor.local_endpoint());
  tcp::socket accepted = acceptor.accept();
  accepted.set_option(tcp::no_delay(true));
  dialer.set_option(tcp::no_delay(true));
  return {std::move(accepted), std::move(dialer)};
}

// Polls `pred` every millisecond; false when `timeout` passed first.
inline asio::awaitable<bool> wait_until(std::function<bool()> pred, Clock::duration timeout) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) co_return false;
    timer.expires_after(1ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return true;
}

inline asio::awaitable<void> sleep_for(Clock::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

// Deterministic bytes: byte `i` of the stream with `seed`.
inline std::uint8_t pattern_byte(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t x = (i >> 3) + seed * 0x9E3779B97F4A7C15ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  return static_cast<std::uint8_t>(x >> ((i & 7) * 8));
}
inline void fill_pattern(std::uint64_t seed, std::uint64_t offset, std::span<std::uint8_t> out) {
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = pattern_byte(seed, offset + i);
}

struct Fnv {
  std::uint64_t h = 1469598103934665603ull;
  void add(std::span<const std::uint8_t> b) {
    for (auto c : b) h = (h ^ c) * 1099511628211ull;
  }
};

// Writes `total` pattern bytes in `chunk`-sized writes; with `end`, END_STREAM on the last.
inline asio::awaitable<std::uint64_t> send_pattern(Stream& s, std::uint64_t seed, std::size_t total,
                                                   std::size_t chunk, bool end, error_code& ec) {
  std::vector<std::uint8_t> buf(chunk);
  Fnv fnv;
  std::size_t sent = 0;
  while (sent < total) {
    const std::size_t n = std::min(chunk, total - sent);
    fill_pattern(seed, sent, {buf.data(), n});
    fnv.add({buf.data(), n});
    co_await s.write({buf.data(), n}, ec, end && sent + n == total);
    if (ec) co_return fnv.h;
    sent += n;
  }
  if (total == 0 && end) co_await s.close_write(ec);
  co_return fnv.h;
}

struct Received {
  std::size_t bytes = 0;
  std::uint64_t hash = 0;
  std::optional<std::size_t> first_mismatch;
  bool eof = false;
  error_code ec;
};

// Reads until EOF (or `limit` bytes, or an error), checking every byte against the pattern.
inline asio::awaitable<Received> receive_pattern(Stream& s, std::uint64_t seed,
                                                 std::size_t limit = SIZE_MAX,
                                                 std::size_t buf_size = 64 * 1024) {
  std::vector<std::uint8_t> buf(buf_size);
  Received r;
  Fnv fnv;
  while (r.bytes < limit) {
    const std::size_t want = std::min(buf.size(), limit - r.bytes);
    const std::size_t n = co_await s.read_some(asio::buffer(buf.data(), want), r.ec);
    if (r.ec) break;
    if (n == 0) {
      r.eof = true;
      break;
    }
    if (!r.first_mismatch) {
      for (std::size_t i = 0; i < n; ++i) {
        if (buf[i] != pattern_byte(seed, r.bytes + i)) {
          r.first_mismatch = r.bytes + i;
          break;
        }
      }
    }
    fnv.add({buf.data(), n});
    r.bytes += n;
  }
  r.hash = fnv.h;
  co_return r;
}

inline asio::awaitable<void> echo_stream(std::shared_ptr<Stream> s) {
  std::vector<std::uint8_t> buf(64 * 1024);
  for (;;) {
    error_code ec;
    const std::size_t n = co_await s->read_some(asio::buffer(buf), ec);
    if (ec) co_return;
    if (n == 0) {
      co_await s->close_write(ec);
      co_return;
    }
    co_await s->write({buf.data(), n}, ec);
    if (ec) co_return;
  }
}

// Agent side: echoes every stream it accepts until the session ends.
inline asio::awaitable<void> echo_server(std::shared_ptr<Session> agent) {
  for (;;) {
    auto s = co_await agent->accept();
    if (!s) co_return;
    asio::co_spawn(agent->get_executor(), echo_stream(std::move(s)), asio::detached);
  }
}

inline Options options_for(std::uint8_t version) {
  Options o;
  o.version = version;
  return o;
}

// Starts run() of a session; its result lands in `reason`.
inline void start_session(asio::io_context& io, const std::shared_ptr<Session>& s,
                          std::optional<std::string>& reason) {
  asio::co_spawn(io, s->run(), [&reason](std::exception_ptr e, std::string r) {
    reason = e ? std::string("run() threw") : std::move(r);
  });
}

// Runs the io_context until `done()` or `limit`; false on timeout.
inline bool run_until(asio::io_context& io, const std::function<bool()>& done,
                      Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  io.restart();
  while (!done()) {
    const auto now = Clock::now();
    if (now >= deadline) return false;
    io.run_one_for(deadline - now);
    if (io.stopped()) {
      if (!done()) return false;
      break;
    }
  }
  return true;
}

// Two Sessions over one loopback connection: `core` opens streams, `agent` accepts them.
class SessionPair {
  // Declared first so that it outlives the sessions' connections.
  std::unique_ptr<TlsPair> tls_;
  bool finished_ = false;

 public:
  // Both sessions' clock: it stands still unless a test advances it (advance() below), so no
  // heartbeat decision depends on how fast the machine runs.
  SimulatedTimeSource time;

  explicit SessionPair(Options core_options, Options agent_options, bool tls = false) {
    auto [accepted, dialer] = tcp_pair(io);
    std::unique_ptr<transport::Conn> core_conn;
    std::unique_ptr<transport::Conn> agent_conn;
    if (!tls) {
      core_conn = transport::make_tcp_conn(std::move(accepted));
      agent_conn = transport::make_tcp_conn(std::move(dialer));
    } else {
      tls_ = std::make_unique<TlsPair>(io, std::move(accepted), std::move(dialer));
      if (!tls_->server) return;
      core_conn = std::move(tls_->server);
      agent_conn = std::move(tls_->client);
    }
    core = std::make_shared<Session>(std::move(core_conn), FrameReader(core_options.version),
                                     Role::kCore, core_options, "core", time);
    agent = std::make_shared<Session>(std::move(agent_conn), FrameReader(agent_options.version),
                                      Role::kAgent, agent_options, "agent", time);
    start_session(io, core, core_reason);
    start_session(io, agent, agent_reason);
  }

  explicit SessionPair(std::uint8_t version)
      : SessionPair(options_for(version), options_for(version)) {}

  SessionPair(const SessionPair&) = delete;
  SessionPair& operator=(const SessionPair&) = delete;

  ~SessionPair() { finish(); }

  bool ready() const { return core && agent; }

  // Moves the sessions' clock by `d` and lets their heartbeat loops decide at the new time. Call
  // it on the io_context (from a test body).
  void advance(Clock::duration d) {
    time.advance(d);
    core->time_moved();
    agent->time_moved();
  }

  // Runs `body` (a callable returning awaitable<void>) on the io_context until it finishes;
  // a body still running after `limit` is a failure.
  template <typename Body>
  void run(Body body, Clock::duration limit = 30s) {
    bool done = false;
    asio::co_spawn(io, std::move(body), [&done](std::exception_ptr e) {
      done = true;
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          ADD_FAILURE() << "test body threw: " << x.what();
        }
      }
    });
    EXPECT_TRUE(run_until(
        io, [&] { return done; }, limit))
        << "test body did not finish in time";
  }

  // Closes both sessions, waits for run() to return and for every coroutine to end, then checks
  // that nothing keeps the sessions alive.
  void finish() {
    if (finished_ || !ready()) return;
    finished_ = true;
    asio::post(io, [c = core, a = agent] {  // on the sessions' executor, as every caller must
      c->close("test over");
      a->close("test over");
    });
    EXPECT_TRUE(run_until(
        io, [&] { return core_reason && agent_reason; }, 5s))
        << "run() did not return after close()";
    std::weak_ptr<Session> weak_core = core;
    std::weak_ptr<Session> weak_agent = agent;
    core.reset();
    agent.reset();
    // With everything finished, the io_context runs out of work: a coroutine suspended forever
    // would keep it busy.
    EXPECT_TRUE(run_until(
                    io, [] { return false; }, 5s) ||
                io.stopped())
        << "a coroutine is still suspended after both sessions ended";
    EXPECT_TRUE(weak_core.expired()) << "the core session leaked";
    EXPECT_TRUE(weak_agent.expired()) << "the agent session leaked";
  }

  asio::io_context io;
  std::shared_ptr<Session> core;
  std::shared_ptr<Session> agent;
  std::optional<std::string> core_reason;
  std::optional<std::string> agent_reason;
};

// The stream Session::open_stream opened, or nullptr (a test that needs only the stream; one
// that checks a refusal reads the result itself).
inline std::shared_ptr<Stream> opened(common::Result<std::shared_ptr<Stream>> result) {
  return result ? std::move(result).value() : nullptr;
}

// One stream opened by the core (tunnel 1, empty payload) and accepted by the agent; a null
// side is a failure the caller asserts on.
struct OpenedStream {
  std::shared_ptr<Stream> core;
  std::shared_ptr<Stream> agent;
  bool ok() const { return core != nullptr && agent != nullptr; }
};
inline asio::awaitable<OpenedStream> open_accepted(SessionPair& pair) {
  OpenedStream s;
  auto result = pair.core->open_stream(1, "");
  EXPECT_TRUE(result) << result.error().message;
  s.core = opened(std::move(result));
  if (s.core != nullptr) s.agent = co_await pair.agent->accept();
  co_return s;
}

// A plain socket connected to a Session: it sends what the test says and nothing else.
struct RawPeer {
  RawPeer(asio::io_context& io, Role role, Options options)
      : RawPeer(io, tcp_pair(io), role, options) {}
  RawPeer(asio::io_context& io, std::pair<tcp::socket, tcp::socket> sockets, Role role,
          Options options)
      : raw(std::move(role == Role::kAgent ? sockets.first : sockets.second)) {
    auto conn =
        transport::make_tcp_conn(std::move(role == Role::kAgent ? sockets.second : sockets.first));
    session = std::make_shared<Session>(std::move(conn), FrameReader(options.version), role,
                                        options, "under-test", time);
    start_session(io, session, reason);
  }
  SimulatedTimeSource time;  // the session's clock, advanced by the test; outlives the session
  tcp::socket raw;
  std::shared_ptr<Session> session;
  std::optional<std::string> reason;
};

inline std::vector<std::uint8_t> frame(std::uint8_t version, std::uint8_t type,
                                       std::uint8_t frame_flags, std::uint32_t stream,
                                       std::string_view payload = {}) {
  std::vector<std::uint8_t> out;
  append_frame(out, version, static_cast<protocol::FrameType>(type), frame_flags, stream,
               as_bytes(payload));
  return out;
}

}  // namespace tunnel::mux::test
