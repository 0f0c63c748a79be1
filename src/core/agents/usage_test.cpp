#include "core/agents/usage.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace tunnel::core {
namespace {

TEST(UsageBook, CountersAreSharedAndTakeEmptiesThem) {
  UsageBook book;
  auto a = book.counters(1, 7);
  auto b = book.counters(1, 7);  // a second agent of the same tunnel
  auto other = book.counters(1, 0);
  EXPECT_EQ(a, b);
  a->add(100, 2000, false);
  b->add(10, 0, true);
  other->add(1, 1, false);
  auto taken = book.take();
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].tunnel_id, 0);
  EXPECT_EQ(taken[1].account_id, 1);
  EXPECT_EQ(taken[1].tunnel_id, 7);
  EXPECT_EQ(taken[1].requests, 2u);
  EXPECT_EQ(taken[1].bytes_in, 110u);
  EXPECT_EQ(taken[1].bytes_out, 2000u);
  EXPECT_EQ(taken[1].errors, 1u);
  EXPECT_TRUE(book.take().empty()) << "counted twice";
}

TEST(UsageBook, ForgetsCountersNoRouteHolds) {
  UsageBook book;
  auto held = book.counters(1, 7);
  book.counters(2, 9)->add(5, 5, false);  // its route is already gone
  auto taken = book.take();
  ASSERT_EQ(taken.size(), 1u);  // counted before it was forgotten
  EXPECT_EQ(taken[0].account_id, 2);
  held->add(1, 1, false);
  EXPECT_EQ(book.take().size(), 1u);
  EXPECT_NE(book.counters(1, 7), nullptr);
  EXPECT_EQ(book.counters(1, 7), held) << "a held one must stay the same";
}

TEST(UsageBook, ConcurrentAddsAreNotLost) {
  UsageBook book;
  auto c = book.counters(1, 1);
  std::uint64_t seen = 0;
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([c] {
      for (int i = 0; i < 10000; ++i) c->add(1, 0, false);
    });
  }
  for (int i = 0; i < 50; ++i) {
    for (const auto& s : book.take()) seen += s.requests;
  }
  for (auto& t : threads) t.join();
  for (const auto& s : book.take()) seen += s.requests;
  EXPECT_EQ(seen, 40000u);
}

}  // namespace
}  // namespace tunnel::core
