#include "core/agents/bandwidth.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

namespace tunnel::core {
namespace {

using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

TEST(TokenBucket, BurstThenExactRate) {
  const auto t0 = Clock::now();
  TokenBucket bucket(1000, 500);  // 1000 B/s, 500 B burst
  EXPECT_EQ(bucket.take(500, t0), Clock::duration::zero());
  // 250 bytes more: in debt by 250 -> wait 250 ms
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(bucket.take(250, t0)), 250ms);
  // after those 250 ms the debt is paid; another 100 bytes wait 100 ms
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(bucket.take(100, t0 + 250ms)),
            100ms);
  // a long idle spell refills only up to the burst
  EXPECT_EQ(bucket.take(500, t0 + 100s), Clock::duration::zero());
  EXPECT_GT(bucket.take(1, t0 + 100s), Clock::duration::zero());
}

TEST(TokenBucket, LongRunRateIsExact) {
  // 1 MiB/s: 64 KiB reads for 10 simulated seconds move 10 MiB + the burst.
  const std::uint64_t rate = 1 << 20;
  TokenBucket bucket(rate, TokenBucket::default_burst(rate));
  auto now = Clock::now();
  std::uint64_t sent = 0;
  const auto end = now + 10s;
  while (now < end) {
    now += bucket.take(64 * 1024, now);
    sent += 64 * 1024;
  }
  const double expected = 10.0 * rate + static_cast<double>(TokenBucket::default_burst(rate));
  EXPECT_NEAR(static_cast<double>(sent), expected, 64 * 1024 + 1);
}

TEST(Throttle, SleepsForTheSlowestBucket) {
  Throttle t;
  t.tunnel[0] = std::make_shared<TokenBucket>(1'000'000, 1);
  t.account[0] = std::make_shared<TokenBucket>(10'000, 1);  // the account is the tighter one
  EXPECT_TRUE(t.limited());
  EXPECT_EQ(t.tunnel_rate(), 1'000'000u);
  boost::asio::io_context io;
  const auto start = Clock::now();
  boost::asio::co_spawn(io, throttle(&t, Direction::kIn, 1000), boost::asio::detached);
  boost::asio::co_spawn(io, throttle(&t, Direction::kOut, 1 << 20), boost::asio::detached);
  io.run();
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 95ms);  // 1000 bytes at 10,000 B/s; kOut has no bucket
  EXPECT_LT(elapsed, 2s);
}

TEST(AccountBuckets, OnePerAccountAndDirection) {
  AccountBuckets buckets;
  EXPECT_EQ(buckets.get("a", Direction::kIn, 0), nullptr);
  auto in = buckets.get("a", Direction::kIn, 100);
  EXPECT_EQ(buckets.get("a", Direction::kIn, 100), in);
  EXPECT_NE(buckets.get("a", Direction::kOut, 100), in);
  EXPECT_NE(buckets.get("b", Direction::kIn, 100), in);
}

}  // namespace
}  // namespace tunnel::core
