// The Session's heartbeat decisions on a simulated clock: exact to the nanosecond, no sockets.
#include "mux/heartbeat.hpp"

#include <gtest/gtest.h>

namespace tunnel::mux {
namespace {

using namespace std::chrono_literals;

class HeartbeatTest : public ::testing::Test {
 protected:
  SimulatedTimeSource time;
  Heartbeat beat{10s, 30s, true, time.monotonic_time()};
  Heartbeat::Step at(std::chrono::nanoseconds since_start, bool paused = false) {
    time.advance(since_start - (time.monotonic_time() - start));
    return beat.check(time.monotonic_time(), paused);
  }
  const MonotonicTime start = time.monotonic_time();
};

TEST_F(HeartbeatTest, PingsEveryInterval) {
  EXPECT_EQ(beat.next_check(false), start + 10s);
  EXPECT_FALSE(at(10s - 1ns).ping);
  EXPECT_TRUE(at(10s).ping);
  EXPECT_FALSE(at(10s).ping) << "one PING per interval";
  beat.received(time.monotonic_time());
  EXPECT_EQ(beat.next_check(false), start + 20s);
  EXPECT_FALSE(at(20s - 1ns).ping);
  EXPECT_TRUE(at(20s).ping);
}

TEST_F(HeartbeatTest, SilentAfterExactlyTwoIntervalsDroppedAtExactlyTheTimeout) {
  at(10s);  // the PING goes out; no answer comes
  EXPECT_EQ(beat.next_check(false), start + 20s) << "wakes when the silence turns 2 intervals";
  EXPECT_FALSE(at(20s - 1ns).drop);
  EXPECT_FALSE(beat.silent());
  EXPECT_FALSE(at(20s).drop);
  EXPECT_TRUE(beat.silent());
  EXPECT_EQ(beat.next_check(false), start + 30s);
  EXPECT_FALSE(at(30s - 1ns).drop);
  EXPECT_TRUE(at(30s).drop);
}

TEST_F(HeartbeatTest, AFrameEndsTheSilence) {
  at(25s);
  ASSERT_TRUE(beat.silent());
  beat.received(time.monotonic_time());
  EXPECT_FALSE(beat.silent());
  EXPECT_EQ(beat.last_received(), start + 25s);
  EXPECT_FALSE(at(54s).drop) << "the timeout counts from the last frame";
  EXPECT_TRUE(at(55s).drop);
}

TEST_F(HeartbeatTest, PausedReadingIsNeverSilenceNorATimeout) {
  EXPECT_FALSE(at(10min, true).drop);
  EXPECT_FALSE(beat.silent());
  EXPECT_EQ(beat.next_check(true), time.monotonic_time() + 10s) << "only the next PING";
}

TEST(Heartbeat, WithoutPingsThePeerIsNeverSilentOnlyDropped) {
  // A v1 core only answers the agent's heartbeats: quiet proves nothing until the timeout.
  SimulatedTimeSource time;
  const MonotonicTime start = time.monotonic_time();
  Heartbeat beat(10s, 30s, false, start);
  time.advance(29s);
  const auto step = beat.check(time.monotonic_time(), false);
  EXPECT_FALSE(step.ping);
  EXPECT_FALSE(step.drop);
  EXPECT_FALSE(beat.silent());
  EXPECT_EQ(beat.next_check(false), start + 30s);
  time.advance(1s);
  EXPECT_TRUE(beat.check(time.monotonic_time(), false).drop);
}

TEST(Heartbeat, SilentBoundIsAtMostTheTimeout) {
  SimulatedTimeSource time;
  EXPECT_EQ(Heartbeat(10s, 30s, true, time.monotonic_time()).silent_after(), 20s);
  EXPECT_EQ(Heartbeat(10s, 15s, true, time.monotonic_time()).silent_after(), 15s);
}

}  // namespace
}  // namespace tunnel::mux
