// Account quotas on live traffic (core/agents/quota.hpp), on the simulated clock: requests per
// second, concurrent connections, bytes per month and its month turn, bandwidth, and the
// limits changed in place while connections are open.
#include "core/agents/quota.hpp"

#include <gtest/gtest.h>

#include "observability/metrics.hpp"

namespace tunnel::core {
namespace {

using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

// Buckets count in doubles: a wait may be off by a rounding, never by more than a nanosecond.
#define EXPECT_WAIT(got, want)                                                   \
  EXPECT_LE(std::chrono::abs(Clock::duration(got) - Clock::duration(want)), 1ns) \
      << std::chrono::nanoseconds(got).count() << " ns"

// 2026-12-07 16:00 UTC, 2026-12-01 and 2027-01-01.
constexpr std::int64_t kDec7 = 1'796'659'200;
constexpr std::int64_t kDec1 = 1'796'083'200;
constexpr std::int64_t kJan1 = 1'798'761'600;

class QuotaTest : public ::testing::Test {
 protected:
  QuotaTest() : book(registry, time) {}

  std::uint64_t refusals(QuotaKind kind) const { return book.metrics().by_kind(kind).value(); }

  SimulatedTimeSource time;
  observability::Registry registry;
  QuotaBook book;
};

TEST_F(QuotaTest, NoLimitsAdmitsEverythingAndCountsConnections) {
  auto quota = book.get("acme");
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(quota->admit());
  EXPECT_EQ(quota->connections(), 100u);
  for (int i = 0; i < 100; ++i) quota->release(10);
  EXPECT_EQ(quota->connections(), 0u);
  EXPECT_EQ(quota->month_bytes(), 1000u);
  EXPECT_EQ(book.get("acme"), quota);  // one per account
  EXPECT_EQ(book.find("other"), nullptr);
}

TEST_F(QuotaTest, RequestsPerSecondBurstIsOneSecondThenTheRate) {
  auto quota = book.get("acme");
  quota->set_limits(QuotaLimits{0, 4, 0, 0});
  for (int i = 0; i < 4; ++i) {
    ASSERT_FALSE(quota->admit()) << i;
    quota->release(0);
  }
  const auto refused = quota->admit();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->quota, QuotaKind::kMaxRequestsPerSecond);
  EXPECT_EQ(refused->limit, 4u);
  EXPECT_EQ(refused->retry_after, 1u);
  EXPECT_EQ(quota->connections(), 0u);  // a refusal holds nothing
  EXPECT_EQ(refusals(QuotaKind::kMaxRequestsPerSecond), 1u);
  time.advance(250ms);  // one token back
  EXPECT_FALSE(quota->admit());
  quota->release(0);
  EXPECT_TRUE(quota->admit());
  time.advance(10s);  // refills up to the burst only
  for (int i = 0; i < 4; ++i) {
    ASSERT_FALSE(quota->admit()) << i;
    quota->release(0);
  }
  EXPECT_TRUE(quota->admit());
  // Raised: the new rate applies at once (what the bucket holds stays).
  quota->set_limits(QuotaLimits{0, 100, 0, 0});
  time.advance(11ms);  // one token at 100/s
  EXPECT_FALSE(quota->admit());
  // Removed: nothing refused.
  quota->set_limits(QuotaLimits{});
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(quota->admit());
}

TEST_F(QuotaTest, MaxConnectionsLoweredBelowTheOpenOnesRefusesNewOnesUntilRaised) {
  auto quota = book.get("acme");
  ASSERT_FALSE(quota->admit());
  ASSERT_FALSE(quota->admit());
  ASSERT_FALSE(quota->admit());
  quota->set_limits(QuotaLimits{2, 0, 0, 0});  // three open: they stay
  const auto refused = quota->admit();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->quota, QuotaKind::kMaxConnections);
  EXPECT_EQ(refused->limit, 2u);
  EXPECT_EQ(refused->retry_after, 0u);
  EXPECT_EQ(refused->describe(), "the account's quota max_connections (2) is reached");
  EXPECT_EQ(quota->connections(), 3u);
  quota->release(0);
  EXPECT_TRUE(quota->admit());  // two open = the limit
  quota->release(0);
  EXPECT_FALSE(quota->admit());  // one open: room for one
  EXPECT_TRUE(quota->admit());
  quota->set_limits(QuotaLimits{3, 0, 0, 0});
  EXPECT_FALSE(quota->admit());
  EXPECT_EQ(refusals(QuotaKind::kMaxConnections), 3u);
}

TEST_F(QuotaTest, BytesPerMonthCountsTheStoreAndWhatRanSinceUntilTheMonthTurns) {
  time.advance(std::chrono::seconds(kDec7 - unix_seconds(time)));
  auto quota = book.get("acme");
  quota->set_limits(QuotaLimits{0, 0, 0, 1000});
  quota->set_month(900, kJan1, 0);  // the store holds 900 bytes of December
  ASSERT_FALSE(quota->admit());
  quota->release(150);  // a request of 150 bytes: 1050
  EXPECT_EQ(quota->month_bytes(), 1050u);
  const auto refused = quota->admit();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->quota, QuotaKind::kBytesPerMonth);
  EXPECT_EQ(refused->limit, 1000u);
  EXPECT_EQ(refused->retry_after, static_cast<std::uint64_t>(kJan1 - kDec7));
  // A usage flush wrote the 150 bytes: the store now holds 1050, nothing pending.
  quota->set_month(1050, kJan1, 150);
  EXPECT_EQ(quota->month_bytes(), 1050u);
  EXPECT_TRUE(quota->admit());
  // Raised: served again.
  quota->set_limits(QuotaLimits{0, 0, 0, 2000});
  ASSERT_FALSE(quota->admit());
  quota->release(1000);
  EXPECT_TRUE(quota->admit());  // 2050
  // The month turns: December's bytes no longer count; what ran since the last flush does.
  time.advance(std::chrono::seconds(kJan1 - kDec7));
  EXPECT_EQ(quota->month_bytes(), 1000u);
  ASSERT_FALSE(quota->admit());
  quota->release(0);
  quota->set_month(1000, next_month_start(kJan1), 1000);  // the flush in January
  EXPECT_EQ(quota->month_bytes(), 1000u);
  EXPECT_EQ(refusals(QuotaKind::kBytesPerMonth), 3u);
}

TEST(QuotaMonth, CalendarMonthsInUtc) {
  EXPECT_EQ(month_start(kDec7), kDec1);
  EXPECT_EQ(next_month_start(kDec7), kJan1);
  EXPECT_EQ(next_month_start(kJan1 - 1), kJan1);
  EXPECT_EQ(month_start(kJan1), kJan1);
  EXPECT_EQ(next_month_start(kJan1) - kJan1, 31 * 86400);  // January
}

TEST_F(QuotaTest, BandwidthIsSharedAndChangesInPlace) {
  auto quota = book.get("acme");
  Throttle throttle;
  throttle.quota = quota;
  EXPECT_TRUE(throttle.limited());
  EXPECT_FALSE(throttle.engaged());  // no bandwidth quota: relays skip throttling
  EXPECT_EQ(throttle.take(Direction::kIn, 1 << 20), TokenBucket::Clock::duration::zero());
  quota->set_limits(QuotaLimits{0, 0, 100'000, 0});
  EXPECT_TRUE(throttle.engaged());
  // Burst: 16 KiB; then 100 kB/s for both directions apart.
  EXPECT_EQ(throttle.take(Direction::kIn, 16 * 1024), TokenBucket::Clock::duration::zero());
  EXPECT_WAIT(throttle.take(Direction::kIn, 50'000), 500ms);
  EXPECT_EQ(throttle.take(Direction::kOut, 1000), TokenBucket::Clock::duration::zero());
  time.advance(500ms);
  EXPECT_WAIT(throttle.take(Direction::kIn, 10'000), 100ms);
  quota->set_limits(QuotaLimits{});
  EXPECT_FALSE(throttle.engaged());
  EXPECT_EQ(throttle.take(Direction::kIn, 1 << 20), TokenBucket::Clock::duration::zero());
}

}  // namespace
}  // namespace tunnel::core
