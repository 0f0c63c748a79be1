#include "core/control/auth_limiter.hpp"

#include <gtest/gtest.h>

namespace tunnel::core {
namespace {

using namespace std::chrono_literals;
using Clock = AuthLimiter::Clock;

AuthLimiter::Options small() {
  AuthLimiter::Options o;
  o.burst = 3;
  o.refill = 10s;
  o.max_addresses = 2;
  o.log_interval = 60s;
  return o;
}

TEST(AuthLimiter, RefusesAfterBurstThenRefills) {
  AuthLimiter limiter(small());
  const auto t0 = Clock::time_point{} + 1h;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(limiter.retry_after("192.0.2.7", t0), 0ms) << i;
    limiter.record_failure("192.0.2.7", t0);
  }
  EXPECT_EQ(limiter.retry_after("192.0.2.7", t0), 10s);
  EXPECT_EQ(limiter.retry_after("192.0.2.7", t0 + 4s), 6s);
  EXPECT_EQ(limiter.retry_after("192.0.2.8", t0), 0ms) << "other addresses are not affected";
  EXPECT_EQ(limiter.retry_after("192.0.2.7", t0 + 10s), 0ms);
  limiter.record_failure("192.0.2.7", t0 + 10s);
  EXPECT_EQ(limiter.retry_after("192.0.2.7", t0 + 10s), 10s) << "one failure per refill";
}

TEST(AuthLimiter, Ipv6CountsPerSlash64AndV4MappedAsV4) {
  EXPECT_EQ(AuthLimiter::key_of("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(AuthLimiter::key_of("::ffff:192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(AuthLimiter::key_of("not-an-ip"), "not-an-ip");
  EXPECT_EQ(AuthLimiter::key_of("192.0.2.7:51234"), "192.0.2.7");
  EXPECT_EQ(AuthLimiter::key_of("[2001:db8::1]:443"), "2001:db8::/64");
  AuthLimiter limiter(small());
  const auto t0 = Clock::time_point{} + 1h;
  limiter.record_failure("2001:db8:1:2::1", t0);
  limiter.record_failure("2001:db8:1:2::2", t0);
  limiter.record_failure("2001:db8:1:2::3", t0);
  EXPECT_GT(limiter.retry_after("2001:db8:1:2:ffff::9", t0), 0ms);
  EXPECT_EQ(limiter.retry_after("2001:db8:1:3::1", t0), 0ms);
}

TEST(AuthLimiter, BoundedByForgettingTheOldest) {
  AuthLimiter limiter(small());
  const auto t0 = Clock::time_point{} + 1h;
  for (int i = 0; i < 3; ++i) limiter.record_failure("192.0.2.1", t0);
  limiter.record_failure("192.0.2.2", t0 + 1s);
  limiter.record_failure("192.0.2.3", t0 + 2s);  // forgets .1, the oldest failure
  EXPECT_EQ(limiter.tracked(), 2u);
  EXPECT_EQ(limiter.retry_after("192.0.2.1", t0 + 2s), 0ms);
}

TEST(AuthLimiter, LogsFirstFailurePerIntervalAndSummarisesTheRest) {
  AuthLimiter limiter(small());
  const auto t0 = Clock::time_point{} + 1h;
  EXPECT_TRUE(limiter.record_failure("192.0.2.7", t0));
  EXPECT_FALSE(limiter.record_failure("192.0.2.7", t0 + 1s));
  EXPECT_FALSE(limiter.record_failure("192.0.2.7", t0 + 2s));
  limiter.record_throttled("192.0.2.7");
  EXPECT_TRUE(limiter.take_summaries(t0 + 30s).empty()) << "interval not over";
  const auto summaries = limiter.take_summaries(t0 + 60s);
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_EQ(summaries[0].address, "192.0.2.7");
  EXPECT_EQ(summaries[0].failures, 3u);
  EXPECT_TRUE(limiter.take_summaries(t0 + 200s).empty());
  EXPECT_TRUE(limiter.record_failure("192.0.2.7", t0 + 200s)) << "a new interval";
}

}  // namespace
}  // namespace tunnel::core
