#include "common/time_source.hpp"

#include <gtest/gtest.h>

namespace tunnel {
namespace {

using namespace std::chrono_literals;

TEST(TimeSource, SimulatedStandsStillUntilAdvanced) {
  SimulatedTimeSource time;
  const MonotonicTime t0 = time.monotonic_time();
  const SystemTime s0 = time.system_time();
  EXPECT_NE(t0, MonotonicTime{}) << "far from the \"never\" value";
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(s0.time_since_epoch()).count(),
            1'767'225'600);
  EXPECT_EQ(time.monotonic_time(), t0);
  time.advance(10min);
  EXPECT_EQ(time.monotonic_time() - t0, 10min);
  EXPECT_EQ(time.system_time() - s0, 10min);
  time.advance(1ns);
  EXPECT_EQ(time.monotonic_time() - t0, 10min + 1ns);
}

TEST(TimeSource, RealFollowsTheStandardClocks) {
  RealTimeSource time;
  const TimeSource& source = time;
  const auto before = std::chrono::steady_clock::now();
  const auto t = source.monotonic_time();
  EXPECT_LE(before, t);
  EXPECT_LE(t, std::chrono::steady_clock::now());
  const auto sys_before = std::chrono::system_clock::now();
  const auto s = source.system_time();
  EXPECT_LE(sys_before, s);
  EXPECT_LE(s, std::chrono::system_clock::now());
}

}  // namespace
}  // namespace tunnel
