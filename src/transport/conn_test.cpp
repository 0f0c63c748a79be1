// Conn read deadlines (plain TCP and TLS) and moving a connection to another event loop.
#include "transport/conn.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "transport/test_support.hpp"

namespace tunnel::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Runs `body` on `io` until it finishes (at most 10 s).
void run(asio::io_context& io, std::function<asio::awaitable<void>()> body) {
  bool done = false;
  asio::co_spawn(io, body(), [&](std::exception_ptr e) {
    done = true;
    if (e) ADD_FAILURE() << "the test body threw";
  });
  io.restart();
  const auto limit = Clock::now() + 10s;
  while (!done && Clock::now() < limit) io.run_one_for(100ms);
  EXPECT_TRUE(done) << "the test body did not finish";
}

asio::awaitable<void> sleep_for(Clock::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

// Both ends of a loopback connection: plain, or TLS after a completed handshake.
struct Pair {
  Pair(asio::io_context& io, bool use_tls) {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket dialer(io);
    dialer.connect(acceptor.local_endpoint());
    tcp::socket accepted = acceptor.accept();
    if (!use_tls) {
      a = make_tcp_conn(std::move(accepted));
      b = make_tcp_conn(std::move(dialer));
      return;
    }
    tls = std::make_unique<test::TlsPair>(io, std::move(accepted), std::move(dialer));
    a = std::move(tls->server);
    b = std::move(tls->client);
  }

  std::unique_ptr<test::TlsPair> tls;  // certificate and contexts of a TLS pair
  std::unique_ptr<Conn> a;
  std::unique_ptr<Conn> b;
};

class ConnDeadlineTest : public ::testing::TestWithParam<bool> {};

TEST_P(ConnDeadlineTest, ReadTimesOutThenReadsWhatComes) {
  asio::io_context io;
  Pair pair(io, GetParam());
  ASSERT_TRUE(pair.a && pair.b);
  run(io, [&]() -> asio::awaitable<void> {
    char buf[64];
    error_code ec;
    auto start = Clock::now();
    pair.a->set_read_deadline(Clock::now() + 50ms);
    EXPECT_EQ(co_await pair.a->read_some(asio::buffer(buf), ec), 0u);
    EXPECT_EQ(ec, asio::error::timed_out) << ec.message();
    EXPECT_GE(Clock::now() - start, 50ms);
    EXPECT_LT(Clock::now() - start, 2s);

    // A read started after the deadline fails at once.
    start = Clock::now();
    EXPECT_EQ(co_await pair.a->read_some(asio::buffer(buf), ec), 0u);
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_LT(Clock::now() - start, 20ms);

    // The connection is still good: bytes that come before the next deadline are read.
    pair.a->set_read_deadline(Clock::now() + 5s);
    co_await pair.b->write(asio::buffer(std::string_view("hello")), ec);
    EXPECT_FALSE(ec);
    EXPECT_EQ(co_await pair.a->read_some(asio::buffer(buf), ec), 5u);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(std::string_view(buf, 5), "hello");

    // Without a deadline a read waits as long as it takes.
    pair.a->set_read_deadline(Clock::time_point::max());
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await sleep_for(150ms);
          error_code wec;
          co_await pair.b->write(asio::buffer(std::string_view("late")), wec);
        },
        asio::detached);
    EXPECT_EQ(co_await pair.a->read_some(asio::buffer(buf), ec), 4u);
    EXPECT_FALSE(ec) << ec.message();
  });
}

TEST_P(ConnDeadlineTest, MovingTheDeadlineCountsFromTheLastOne) {
  asio::io_context io;
  Pair pair(io, GetParam());
  ASSERT_TRUE(pair.a && pair.b);
  run(io, [&]() -> asio::awaitable<void> {
    char buf[16];
    error_code ec;
    // Later: the timer armed for 30 ms catches up with the new deadline instead of firing.
    auto start = Clock::now();
    pair.a->set_read_deadline(start + 30ms);
    pair.a->set_read_deadline(start + 200ms);
    EXPECT_EQ(co_await pair.a->read_some(asio::buffer(buf), ec), 0u);
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_GE(Clock::now() - start, 200ms);
    // Earlier: the timer is re-armed.
    start = Clock::now();
    pair.a->set_read_deadline(start + 5s);
    pair.a->set_read_deadline(start + 40ms);
    EXPECT_EQ(co_await pair.a->read_some(asio::buffer(buf), ec), 0u);
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_LT(Clock::now() - start, 2s);
  });
}

TEST_P(ConnDeadlineTest, DeadlineDoesNotCancelAWrite) {
  asio::io_context io;
  Pair pair(io, GetParam());
  ASSERT_TRUE(pair.a && pair.b);
  run(io, [&]() -> asio::awaitable<void> {
    // Fill the socket buffers so that a big write waits, let a read deadline pass meanwhile,
    // then drain: the write must still complete.
    const std::string big(8 * 1024 * 1024, 'x');
    error_code write_ec;
    bool written = false;
    pair.a->set_read_deadline(Clock::now() + 30ms);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await pair.a->write(asio::buffer(big), write_ec);
          written = true;
        },
        asio::detached);
    co_await sleep_for(100ms);
    std::string got;
    std::string buf(64 * 1024, '\0');
    while (got.size() < big.size()) {
      error_code ec;
      const std::size_t n = co_await pair.b->read_some(asio::buffer(buf), ec);
      if (ec) break;
      got.append(buf.data(), n);
    }
    while (!written) co_await sleep_for(1ms);
    EXPECT_FALSE(write_ec) << write_ec.message();
    EXPECT_EQ(got.size(), big.size());
  });
}

TEST_P(ConnDeadlineTest, MovesToAnotherEventLoop) {
  asio::io_context io;
  asio::io_context other;
  Pair pair(io, GetParam());
  ASSERT_TRUE(pair.a && pair.b);
  error_code ec;
  pair.a->move_to(other.get_executor(), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(pair.a->get_executor() == asio::any_io_executor(other.get_executor()));
  run(io, [&]() -> asio::awaitable<void> {
    error_code wec;
    co_await pair.b->write(asio::buffer(std::string_view("moved")), wec);
    EXPECT_FALSE(wec);
  });
  run(other, [&]() -> asio::awaitable<void> {
    char buf[16];
    error_code rec;
    pair.a->set_read_deadline(Clock::now() + 5s);
    const std::size_t n = co_await pair.a->read_some(asio::buffer(buf), rec);
    EXPECT_FALSE(rec) << rec.message();
    EXPECT_EQ(std::string_view(buf, n), "moved");
    co_await pair.a->write(asio::buffer(std::string_view("back")), rec);
    EXPECT_FALSE(rec);
  });
  run(io, [&]() -> asio::awaitable<void> {
    char buf[16];
    error_code rec;
    const std::size_t n = co_await pair.b->read_some(asio::buffer(buf), rec);
    EXPECT_EQ(std::string_view(buf, n), "back");
  });
}

std::string pattern(std::size_t size, int seed) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>(i * 7 + i / 4096 + seed);
  return s;
}

// Reads from `conn` until `size` bytes came (or an error).
asio::awaitable<std::string> read_exactly(Conn& conn, std::size_t size) {
  std::string got;
  std::string buf(64 * 1024, '\0');
  while (got.size() < size) {
    error_code ec;
    const std::size_t n = co_await conn.read_some(asio::buffer(buf), ec);
    if (ec) {
      ADD_FAILURE() << "read after " << got.size() << " bytes: " << ec.message();
      break;
    }
    got.append(buf.data(), n);
  }
  co_return got;
}

// A TLS write queues all of its records and sends them together. A write far larger than the
// socket buffers, to a peer that starts reading late, must wait for room and still deliver every
// byte in order, the short write after it too.
TEST(TlsConnWrite, ManyRecordsToASlowReaderArriveWholeAndInOrder) {
  asio::io_context io;
  Pair pair(io, true);
  ASSERT_TRUE(pair.a && pair.b);
  run(io, [&]() -> asio::awaitable<void> {
    const std::string big = pattern(16 * 1024 * 1024 + 123, 1);
    const std::string tail = "tail";
    bool written = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          error_code ec;
          co_await pair.a->write(asio::buffer(big), ec);
          EXPECT_FALSE(ec) << ec.message();
          co_await pair.a->write(asio::buffer(tail), ec);
          EXPECT_FALSE(ec) << ec.message();
          written = true;
        },
        asio::detached);
    co_await sleep_for(200ms);
    EXPECT_FALSE(written) << "16 MiB fit in the socket buffers: the test proves nothing";
    const std::string got = co_await read_exactly(*pair.b, big.size() + tail.size());
    while (!written) co_await sleep_for(1ms);
    EXPECT_EQ(got.size(), big.size() + tail.size());
    EXPECT_TRUE(got.substr(0, big.size()) == big) << "payload differs";
    EXPECT_EQ(got.substr(std::min(got.size(), big.size())), tail);
  });
}

// Reading can make records to send too: the answer to a TLS 1.3 KeyUpdate that asks for one.
// Here it is made while a long write of the same connection waits for room, so the answer joins
// the send queue behind that write's records, and the read must not wait for them to leave
// (nobody reads them until it returns). The peer must read everything: its keys change exactly
// where the answer sits in the stream.
TEST(TlsConnWrite, AnswersAKeyUpdateInTheMiddleOfALongWrite) {
  asio::io_context io;
  Pair pair(io, true);
  ASSERT_TRUE(pair.a && pair.b);
  auto& a = static_cast<TlsConn&>(*pair.a);
  auto& b = static_cast<TlsConn&>(*pair.b);
  run(io, [&]() -> asio::awaitable<void> {
    const std::string big = pattern(8 * 1024 * 1024, 2);
    const std::string after = pattern(100 * 1024, 3);
    bool written = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          error_code ec;
          co_await a.write(asio::buffer(big), ec);
          EXPECT_FALSE(ec) << ec.message();
          co_await a.write(asio::buffer(after), ec);
          EXPECT_FALSE(ec) << ec.message();
          written = true;
        },
        asio::detached);
    co_await sleep_for(50ms);  // a's write now waits for b to read
    EXPECT_EQ(SSL_key_update(b.native_handle(), SSL_KEY_UPDATE_REQUESTED), 1);
    error_code ec;
    co_await b.write(asio::buffer(std::string_view("ping")), ec);  // carries the KeyUpdate
    EXPECT_FALSE(ec) << ec.message();
    const std::string ping = co_await read_exactly(a, 4);
    EXPECT_EQ(ping, "ping");
    const std::string got = co_await read_exactly(b, big.size() + after.size());
    while (!written) co_await sleep_for(1ms);
    EXPECT_TRUE(got.substr(0, big.size()) == big) << "payload differs";
    EXPECT_TRUE(got.substr(std::min(got.size(), big.size())) == after) << "tail differs";
    // Both sides moved to new keys and still talk.
    co_await a.write(asio::buffer(std::string_view("pong")), ec);
    EXPECT_EQ(co_await read_exactly(b, 4), "pong");
  });
}

std::string transport_name(const ::testing::TestParamInfo<bool>& param) {
  return param.param ? "tls" : "tcp";
}

INSTANTIATE_TEST_SUITE_P(Transports, ConnDeadlineTest, ::testing::Values(false, true),
                         transport_name);

}  // namespace
}  // namespace tunnel::transport
