#include "agent/local_pool.hpp"

#include <gtest/gtest.h>
#include <poll.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>

#include "common/time_source.hpp"

namespace tunnel::agent {
namespace {

using namespace std::chrono_literals;

class LocalPoolTest : public ::testing::Test {
 protected:
  LocalPoolTest() : acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    target = common::NetAddress{"127.0.0.1", acceptor.local_endpoint().port()};
  }

  // Runs `op` to completion on the io_context.
  template <typename T>
  T run(asio::awaitable<T> op) {
    std::optional<T> result;
    // Through a lambda: co_spawn's handler would need a default-constructible T, and
    // common::Result is not.
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { result.emplace(co_await std::move(op)); },
        [](std::exception_ptr e) {
          if (e) std::rethrow_exception(e);
        });
    io.restart();
    while (!result && io.run_one_for(10s) > 0) {
    }
    EXPECT_TRUE(result.has_value()) << "operation did not finish";
    return std::move(*result);
  }

  common::Result<tcp::socket> acquire(LocalPool& pool, bool& reused) {
    return run(pool.acquire(target, reused));
  }

  // The server end of the last connection the pool dialed.
  tcp::socket accept_one() { return acceptor.accept(); }

  // Waits (at most 5 s) until what the app did reached `socket`: bytes or a FIN to read.
  static void wait_readable(tcp::socket& socket) { wait_readable(socket.native_handle()); }
  static void wait_readable(int native) {
    pollfd fd{native, POLLIN, 0};
    ASSERT_EQ(::poll(&fd, 1, 5000), 1) << "nothing arrived";
  }

  SimulatedTimeSource time;  // idle expiry and ages: advanced by hand
  asio::io_context io;
  tcp::acceptor acceptor;
  common::NetAddress target;
};

TEST_F(LocalPoolTest, DialsThenReusesAReleasedConnection) {
  LocalPool pool(io.get_executor(), time);
  bool reused = true;
  auto first = acquire(pool, reused);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_FALSE(reused);
  auto server = accept_one();
  tcp::no_delay nodelay;
  first.value().get_option(nodelay);
  EXPECT_TRUE(nodelay.value());
  const auto port = first.value().local_endpoint().port();

  pool.release(target, std::move(first.value()));
  EXPECT_EQ(pool.idle_count(target), 1u);
  auto second = acquire(pool, reused);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_TRUE(reused);
  EXPECT_EQ(second.value().local_endpoint().port(), port) << "not the same connection";
  EXPECT_EQ(pool.idle_count(), 0u);
}

TEST_F(LocalPoolTest, ClientConnectionsAreOnlyReusedForTheirClient) {
  LocalPool pool(io.get_executor(), time);
  bool reused = true;
  auto conn = run(pool.acquire(target, reused, "203.0.113.7:5000"));
  ASSERT_TRUE(conn) << conn.error().message;
  auto server = accept_one();
  const auto port = conn.value().local_endpoint().port();
  pool.release(target, std::move(conn.value()), "203.0.113.7:5000");
  EXPECT_EQ(pool.idle_count(target), 0u);
  EXPECT_EQ(pool.idle_count(target, "203.0.113.7:5000"), 1u);

  auto other = run(pool.acquire(target, reused, "203.0.113.8:5000"));
  ASSERT_TRUE(other) << other.error().message;
  EXPECT_FALSE(reused) << "another client's connection was handed out";
  auto other_server = accept_one();
  auto plain = run(pool.acquire(target, reused));
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_FALSE(reused);
  auto plain_server = accept_one();
  auto same = run(pool.acquire(target, reused, "203.0.113.7:5000"));
  ASSERT_TRUE(same) << same.error().message;
  EXPECT_TRUE(reused);
  EXPECT_EQ(same.value().local_endpoint().port(), port);
}

TEST_F(LocalPoolTest, TotalIdleIsCappedOldestFirst) {
  LocalPool::Options options;
  options.max_idle_total = 2;
  LocalPool pool(io.get_executor(), time, options);
  bool reused = false;
  std::vector<tcp::socket> servers;
  for (const char* client : {"a:1", "b:1", "c:1"}) {
    auto conn = run(pool.acquire(target, reused, client));
    ASSERT_TRUE(conn) << conn.error().message;
    servers.push_back(accept_one());
    pool.release(target, std::move(conn.value()), client);
    time.advance(1ms);
  }
  EXPECT_EQ(pool.idle_count(), 2u);
  EXPECT_EQ(pool.idle_count(target, "a:1"), 0u) << "the oldest should have been closed";
  EXPECT_EQ(pool.idle_count(target, "c:1"), 1u);
}

TEST_F(LocalPoolTest, ConnectionClosedByTheAppIsNotReused) {
  LocalPool pool(io.get_executor(), time);
  bool reused = false;
  auto conn = acquire(pool, reused);
  ASSERT_TRUE(conn) << conn.error().message;
  auto server = accept_one();
  const auto port = conn.value().local_endpoint().port();
  const int pooled = conn.value().native_handle();  // stays open while the pool holds it
  pool.release(target, std::move(conn.value()));
  server.close();  // the app drops the idle keep-alive connection
  wait_readable(pooled);

  auto next = acquire(pool, reused);
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_FALSE(reused);
  EXPECT_NE(next.value().local_endpoint().port(), port);
}

TEST_F(LocalPoolTest, StillOpenDetectsEofAndUnexpectedBytes) {
  bool reused = false;
  LocalPool pool(io.get_executor(), time);
  auto a = acquire(pool, reused);
  ASSERT_TRUE(a) << a.error().message;
  auto server_a = accept_one();
  auto b = acquire(pool, reused);
  ASSERT_TRUE(b) << b.error().message;
  auto server_b = accept_one();
  EXPECT_TRUE(LocalPool::still_open(a.value()));
  EXPECT_TRUE(LocalPool::still_open(b.value()));

  asio::write(server_a, asio::buffer(std::string("HTTP/1.1 200 OK\r\n")));  // out of step
  server_b.shutdown(tcp::socket::shutdown_send);                            // FIN
  wait_readable(a.value());
  wait_readable(b.value());
  EXPECT_FALSE(LocalPool::still_open(a.value()));
  EXPECT_FALSE(LocalPool::still_open(b.value()));
  EXPECT_EQ(LocalPool::idle_state(a.value()), LocalPool::IdleState::kUnsolicited);
  EXPECT_EQ(LocalPool::idle_state(b.value()), LocalPool::IdleState::kClosed);
  tcp::socket closed(io);
  EXPECT_FALSE(LocalPool::still_open(closed));
}

// Issue 25: bytes the app sent on an idle connection (a second response to the last request)
// would be read as the answer to the next one; such a connection is closed, never reused.
TEST_F(LocalPoolTest, ConnectionWithUnsolicitedBytesIsNotReused) {
  LocalPool pool(io.get_executor(), time);
  bool reused = false;
  auto conn = acquire(pool, reused);
  ASSERT_TRUE(conn) << conn.error().message;
  auto server = accept_one();
  const auto port = conn.value().local_endpoint().port();
  const int pooled = conn.value().native_handle();
  pool.release(target, std::move(conn.value()));
  asio::write(server, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")));
  wait_readable(pooled);

  auto next = acquire(pool, reused);
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_FALSE(reused);
  EXPECT_NE(next.value().local_endpoint().port(), port);
  EXPECT_EQ(pool.idle_count(), 0u);
  // The app sees the connection closed (reset, since its bytes were never read).
  char byte = 0;
  boost::system::error_code ec;
  server.read_some(asio::buffer(&byte, 1), ec);
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
}

// An idle connection lives exactly idle_timeout (60 s by default) after its release.
TEST_F(LocalPoolTest, IdleConnectionsExpire) {
  LocalPool pool(io.get_executor(), time);
  bool reused = false;
  auto conn = acquire(pool, reused);
  ASSERT_TRUE(conn) << conn.error().message;
  auto server = accept_one();
  pool.release(target, std::move(conn.value()));
  EXPECT_EQ(pool.idle_count(), 1u);
  time.advance(60s - 1ns);
  pool.prune();
  EXPECT_EQ(pool.idle_count(), 1u) << "expired before idle_timeout";
  time.advance(1ns);
  pool.prune();
  EXPECT_EQ(pool.idle_count(), 0u);
  // The expired connection was closed: the app sees EOF.
  char byte = 0;
  boost::system::error_code ec;
  server.read_some(asio::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, asio::error::eof);
}

TEST_F(LocalPoolTest, IdleListIsBounded) {
  LocalPool::Options options;
  options.max_idle_per_target = 3;
  LocalPool pool(io.get_executor(), time, options);
  std::vector<tcp::socket> servers;
  std::vector<tcp::socket> conns;
  for (int i = 0; i < 5; ++i) {
    bool reused = false;
    auto conn = acquire(pool, reused);
    ASSERT_TRUE(conn) << conn.error().message;
    ASSERT_FALSE(reused);
    servers.push_back(accept_one());
    conns.push_back(std::move(conn.value()));
  }
  for (auto& c : conns) pool.release(target, std::move(c));
  EXPECT_EQ(pool.idle_count(target), 3u);
  pool.clear();
  EXPECT_EQ(pool.idle_count(), 0u);
}

TEST_F(LocalPoolTest, RefusedConnectionNamesTheAddress) {
  const auto port = acceptor.local_endpoint().port();
  acceptor.close();  // nothing listens there any more
  LocalPool pool(io.get_executor(), time);
  bool reused = false;
  auto conn = acquire(pool, reused);
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error().message,
            "dial tcp 127.0.0.1:" + std::to_string(port) + ": Connection refused");
}

TEST_F(LocalPoolTest, ResolvesHostNames) {
  LocalPool pool(io.get_executor(), time);
  bool reused = false;
  common::NetAddress by_name{"localhost", target.port};
  auto conn = run(pool.acquire(by_name, reused));
  // localhost may resolve to ::1 first; the v4 listener still gets the connection.
  ASSERT_TRUE(conn) << conn.error().message;
  auto server = accept_one();
  EXPECT_TRUE(LocalPool::still_open(conn.value()));
}

}  // namespace
}  // namespace tunnel::agent
