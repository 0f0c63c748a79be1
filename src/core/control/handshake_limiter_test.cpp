#include "core/control/handshake_limiter.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace tunnel::core {
namespace {

using namespace std::chrono_literals;
using Clock = HandshakeLimiter::Clock;
using Refusal = HandshakeLimiter::Refusal;

HandshakeLimiter::Options small() {
  HandshakeLimiter::Options o;
  o.global = 5;
  o.per_address = 2;
  o.log_interval = 60s;
  return o;
}

TEST(HandshakeLimiter, CapsPerAddressAndFreesOnRelease) {
  HandshakeLimiter limiter(small());
  Refusal why = Refusal::kNone;
  auto a = limiter.try_acquire("192.0.2.7:1000", why);
  auto b = limiter.try_acquire("192.0.2.7:1001", why);
  EXPECT_TRUE(a && b);
  auto c = limiter.try_acquire("192.0.2.7:1002", why);
  EXPECT_FALSE(c);
  EXPECT_EQ(why, Refusal::kAddress);
  auto other = limiter.try_acquire("192.0.2.8:1000", why);
  EXPECT_TRUE(other) << "another address has its own slots";
  EXPECT_EQ(why, Refusal::kNone);
  EXPECT_EQ(limiter.in_use(), 3u);
  EXPECT_EQ(limiter.in_use("192.0.2.7"), 2u);
  a.release();
  a.release();  // idempotent
  EXPECT_EQ(limiter.in_use("192.0.2.7"), 1u);
  EXPECT_TRUE(limiter.try_acquire("192.0.2.7", why)) << "a released slot is free again";
  EXPECT_EQ(limiter.in_use("192.0.2.7"), 1u) << "the temporary slot was given back";
}

TEST(HandshakeLimiter, CapsGloballyAndForgetsIdleAddresses) {
  HandshakeLimiter limiter(small());
  Refusal why = Refusal::kNone;
  std::vector<HandshakeLimiter::Slot> slots;
  for (int i = 0; i < 5; ++i) {
    slots.push_back(limiter.try_acquire("192.0.2." + std::to_string(i), why));
    EXPECT_TRUE(slots.back()) << i;
  }
  EXPECT_FALSE(limiter.try_acquire("192.0.2.100", why));
  EXPECT_EQ(why, Refusal::kGlobal);
  EXPECT_EQ(limiter.addresses(), 5u) << "a refused address is not tracked";
  slots.clear();
  EXPECT_EQ(limiter.in_use(), 0u);
  EXPECT_EQ(limiter.addresses(), 0u) << "addresses without a slot are forgotten";
}

TEST(HandshakeLimiter, Ipv6CountsPerSlash64) {
  HandshakeLimiter limiter(small());
  Refusal why = Refusal::kNone;
  auto a = limiter.try_acquire("[2001:db8:1:2::1]:443", why);
  auto b = limiter.try_acquire("2001:db8:1:2:ffff::9", why);
  EXPECT_TRUE(a && b);
  EXPECT_FALSE(limiter.try_acquire("2001:db8:1:2::77", why));
  EXPECT_EQ(why, Refusal::kAddress);
  EXPECT_TRUE(limiter.try_acquire("2001:db8:1:3::1", why));
}

TEST(HandshakeLimiter, SlotsMoveAndReleaseOnce) {
  HandshakeLimiter limiter(small());
  Refusal why = Refusal::kNone;
  {
    auto a = limiter.try_acquire("192.0.2.7", why);
    HandshakeLimiter::Slot moved = std::move(a);
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    EXPECT_TRUE(moved);
    HandshakeLimiter::Slot assigned;
    assigned = std::move(moved);
    EXPECT_EQ(limiter.in_use(), 1u);
  }
  EXPECT_EQ(limiter.in_use(), 0u);
}

TEST(HandshakeLimiter, LogsFirstRefusalPerIntervalAndSummarisesTheRest) {
  HandshakeLimiter limiter(small());
  const auto t0 = Clock::time_point{} + 1h;
  EXPECT_TRUE(limiter.record_refusal("192.0.2.7", Refusal::kAddress, t0));
  EXPECT_FALSE(limiter.record_refusal("192.0.2.7", Refusal::kAddress, t0 + 1s));
  EXPECT_FALSE(limiter.record_refusal("192.0.2.9", Refusal::kGlobal, t0 + 2s));
  EXPECT_EQ(limiter.take_summary(t0 + 30s).address, 0u) << "not before the interval ends";
  const auto summary = limiter.take_summary(t0 + 60s);
  EXPECT_EQ(summary.address, 1u);
  EXPECT_EQ(summary.global, 1u);
  EXPECT_EQ(summary.last_address, "192.0.2.9");
  EXPECT_EQ(limiter.take_summary(t0 + 200s).address, 0u);
  EXPECT_TRUE(limiter.record_refusal("192.0.2.7", Refusal::kAddress, t0 + 200s))
      << "a quiet interval later the first is logged in full again";
}

}  // namespace
}  // namespace tunnel::core
