#include "core/agents/bandwidth.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "core/agents/context.hpp"

namespace tunnel::core {
namespace {

using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

// Buckets count in doubles: a wait may be off by a rounding, never by more than a nanosecond.
#define EXPECT_WAIT(got, want)                                                   \
  EXPECT_LE(std::chrono::abs(Clock::duration(got) - Clock::duration(want)), 1ns) \
      << std::chrono::nanoseconds(got).count() << " ns"

TEST(TokenBucket, BurstThenExactRate) {
  SimulatedTimeSource time;
  TokenBucket bucket(1000, 500, time);  // 1000 B/s, 500 B burst
  EXPECT_EQ(bucket.take(500), Clock::duration::zero());
  // 250 bytes more: in debt by 250 -> wait 250 ms
  EXPECT_WAIT(bucket.take(250), 250ms);
  // after those 250 ms the debt is paid; another 100 bytes wait 100 ms
  time.advance(250ms);
  EXPECT_WAIT(bucket.take(100), 100ms);
  // a long idle spell refills only up to the burst
  time.advance(100s);
  EXPECT_EQ(bucket.take(500), Clock::duration::zero());
  EXPECT_WAIT(bucket.take(1), 1ms);
}

TEST(TokenBucket, RefillsAtTheRateUpToTheBurst) {
  SimulatedTimeSource time;
  TokenBucket bucket(1000, 500, time);
  EXPECT_EQ(bucket.take(500), Clock::duration::zero());  // empty now
  time.advance(100ms);                                   // 100 bytes back
  EXPECT_WAIT(bucket.take(100), 0ns);
  EXPECT_WAIT(bucket.take(1), 1ms) << "exactly empty again";
  time.advance(1ms + 499ms);  // the debt paid, then 499 bytes
  EXPECT_WAIT(bucket.take(499), 0ns);
  time.advance(1h);
  EXPECT_EQ(bucket.take(500), Clock::duration::zero());
  EXPECT_WAIT(bucket.take(1), 1ms) << "an hour refills the burst, not more";
}

TEST(TokenBucket, LongRunRateIsExact) {
  // 1 MiB/s: 64 KiB reads for 10 simulated seconds move 10 MiB + the burst.
  SimulatedTimeSource time;
  const std::uint64_t rate = 1 << 20;
  TokenBucket bucket(rate, TokenBucket::default_burst(rate), time);
  const auto end = time.monotonic_time() + 10s;
  std::uint64_t sent = 0;
  while (time.monotonic_time() < end) {
    time.advance(bucket.take(64 * 1024));  // the reader sleeps off its debt
    sent += 64 * 1024;
  }
  const double expected = 10.0 * rate + static_cast<double>(TokenBucket::default_burst(rate));
  EXPECT_NEAR(static_cast<double>(sent), expected, 64 * 1024 + 1);
}

TEST(Throttle, WaitsForTheSlowestBucket) {
  SimulatedTimeSource time;
  Throttle t;
  t.tunnel[0] = std::make_shared<TokenBucket>(1'000'000, 1, time);
  t.account[0] = std::make_shared<TokenBucket>(10'000, 1, time);  // the account is the tighter one
  EXPECT_TRUE(t.limited());
  EXPECT_EQ(t.tunnel_rate(), 1'000'000u);
  // 1000 bytes with 1 in each bucket: 999 of debt at 10,000 B/s.
  EXPECT_WAIT(t.take(Direction::kIn, 1000), 99'900us);
  EXPECT_EQ(t.take(Direction::kOut, 1 << 20), Clock::duration::zero()) << "kOut has no bucket";
  time.advance(99'900us);
  EXPECT_WAIT(t.take(Direction::kIn, 1), 100us) << "both buckets took the first 1000 bytes";
}

TEST(Throttle, ReturnsAtOnceWithoutABucket) {
  SimulatedTimeSource time;
  Throttle t;
  t.tunnel[0] = std::make_shared<TokenBucket>(1000, 1000, time);
  boost::asio::io_context io;
  bool done = false;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        co_await throttle(nullptr, Direction::kIn, 1000);
        co_await throttle(&t, Direction::kOut, 1 << 20);  // no kOut bucket
        co_await throttle(&t, Direction::kIn, 1000);      // within the burst
        done = true;
      },
      boost::asio::detached);
  io.poll();  // ready at once: no timer ran
  EXPECT_TRUE(done);
}

TEST(AccountBuckets, OnePerAccountAndDirection) {
  SimulatedTimeSource time;
  AccountBuckets buckets(time);
  EXPECT_EQ(buckets.get("a", Direction::kIn, 0), nullptr);
  auto in = buckets.get("a", Direction::kIn, 100);
  EXPECT_EQ(buckets.get("a", Direction::kIn, 100), in);
  EXPECT_NE(buckets.get("a", Direction::kOut, 100), in);
  EXPECT_NE(buckets.get("b", Direction::kIn, 100), in);
  EXPECT_EQ(&in->time(), &time);
}

// The per-account request rate (limits.requests_per_second): bursts of 2x the rate, then one
// request per 1/rate seconds.
TEST(RateLimiter, BurstThenRefillAtTheRate) {
  SimulatedTimeSource time;
  RateLimiter limiter(2, time);  // 2 requests/s, burst 4
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(limiter.allow("alice")) << i;
  EXPECT_FALSE(limiter.allow("alice"));
  EXPECT_TRUE(limiter.allow("bob")) << "per account";
  time.advance(500ms);  // exactly one token (1/rate) back
  EXPECT_TRUE(limiter.allow("alice"));
  EXPECT_FALSE(limiter.allow("alice"));
  time.advance(1h);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(limiter.allow("alice")) << i;
  EXPECT_FALSE(limiter.allow("alice")) << "an idle hour refills the burst, not more";
}

TEST(RateLimiter, NotOneNanosecondEarly) {
  SimulatedTimeSource time;
  RateLimiter limiter(2, time);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(limiter.allow("alice")) << i;
  time.advance(500ms - 1ns);
  EXPECT_FALSE(limiter.allow("alice"));
}

TEST(RateLimiter, ZeroIsUnlimited) {
  SimulatedTimeSource time;
  RateLimiter limiter(0, time);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.allow("alice"));
}

}  // namespace
}  // namespace tunnel::core
