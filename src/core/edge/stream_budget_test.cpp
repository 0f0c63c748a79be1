#include "core/edge/stream_budget.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include "common/time_source.hpp"

namespace tunnel::core {
namespace {

using namespace std::chrono_literals;

// The gate of the tcp/udp refusal lines (one per 10 s per port, the rest counted) decides by the
// core's clock: on a simulated one, exactly at 10 s.
TEST(LogGate, LetsOneLineThroughPerIntervalAndCountsTheRest) {
  SimulatedTimeSource time;
  LogGate gate;
  std::uint64_t suppressed = 99;
  ASSERT_TRUE(gate.allow(suppressed, time.monotonic_time()));
  EXPECT_EQ(suppressed, 0u);
  for (int i = 0; i < 3; ++i) {
    time.advance(3s);
    EXPECT_FALSE(gate.allow(suppressed, time.monotonic_time())) << "at " << (i + 1) * 3 << " s";
  }
  time.advance(1s - 1ns);
  EXPECT_FALSE(gate.allow(suppressed, time.monotonic_time())) << "a nanosecond before 10 s";
  time.advance(1ns);
  ASSERT_TRUE(gate.allow(suppressed, time.monotonic_time())) << "at exactly 10 s";
  EXPECT_EQ(suppressed, 4u) << "the lines held back since the last one";
  EXPECT_FALSE(gate.allow(suppressed, time.monotonic_time()));
  time.advance(10s);
  ASSERT_TRUE(gate.allow(suppressed, time.monotonic_time()));
  EXPECT_EQ(suppressed, 1u);
}

}  // namespace
}  // namespace tunnel::core
