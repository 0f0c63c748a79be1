#include "agent/backoff.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace tunnel::agent {
namespace {

using std::chrono::milliseconds;

TEST(BackoffTest, CeilingDoublesFromBaseToCap) {
  Backoff backoff(milliseconds(100), milliseconds(10'000), 1);
  const std::vector<long> expected = {100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000};
  for (long ceiling : expected) {
    EXPECT_EQ(backoff.ceiling().count(), ceiling);
    const milliseconds delay = backoff.next();
    EXPECT_GE(delay.count(), 0);
    EXPECT_LE(delay.count(), ceiling);
  }
  EXPECT_EQ(backoff.attempts(), 10);
}

TEST(BackoffTest, DelaysStayWithinBoundsForManySeeds) {
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    Backoff backoff(seed);
    long ceiling = 100;
    for (int i = 0; i < 20; ++i) {
      const long delay = backoff.next().count();
      ASSERT_GE(delay, 0) << "seed " << seed << " attempt " << i;
      ASSERT_LE(delay, ceiling) << "seed " << seed << " attempt " << i;
      ceiling = std::min(ceiling * 2, 10'000L);
    }
  }
}

TEST(BackoffTest, FullJitterSpreadsOverTheWholeRange) {
  // Once at the cap, delays are uniform in [0, 10 s]: 400 draws cover both ends and vary.
  Backoff backoff(42);
  for (int i = 0; i < 10; ++i) backoff.next();
  std::set<long> seen;
  long lowest = 10'000;
  long highest = 0;
  for (int i = 0; i < 400; ++i) {
    const long delay = backoff.next().count();
    seen.insert(delay);
    lowest = std::min(lowest, delay);
    highest = std::max(highest, delay);
  }
  EXPECT_LT(lowest, 1'000);
  EXPECT_GT(highest, 9'000);
  EXPECT_GT(seen.size(), 300u);
}

TEST(BackoffTest, AgentsWithDifferentSeedsDoNotRetryInLockstep) {
  Backoff a(1);
  Backoff b(2);
  int same = 0;
  for (int i = 0; i < 20; ++i) same += a.next() == b.next() ? 1 : 0;
  EXPECT_LT(same, 5);
}

TEST(BackoffTest, ResetStartsOverFromBase) {
  Backoff backoff(7);
  for (int i = 0; i < 12; ++i) backoff.next();
  EXPECT_EQ(backoff.ceiling(), milliseconds(10'000));
  backoff.reset();
  EXPECT_EQ(backoff.ceiling(), milliseconds(100));
  EXPECT_EQ(backoff.attempts(), 0);
  EXPECT_LE(backoff.next(), milliseconds(100));
  EXPECT_EQ(backoff.ceiling(), milliseconds(200));
}

TEST(BackoffTest, SameSeedSameSchedule) {
  Backoff a(99);
  Backoff b(99);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(a.next(), b.next());
}

}  // namespace
}  // namespace tunnel::agent
