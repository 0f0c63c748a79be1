#include "common/executor_check.hpp"

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>

namespace tunnel {
namespace {

TEST(ExecutorCheck, TrueOnlyInsideTheContextsRun) {
  asio::io_context io;
  asio::io_context other;
  const asio::any_io_executor ex = io.get_executor();
  EXPECT_FALSE(running_in_this_thread(ex)) << "no run() on the stack";
  int checked = 0;
  asio::post(io, [&] {
    EXPECT_TRUE(running_in_this_thread(ex));
    ++checked;
  });
  asio::post(other, [&] {
    EXPECT_FALSE(running_in_this_thread(ex)) << "another worker's io_context";
    ++checked;
  });
  io.run();
  other.run();
  EXPECT_EQ(checked, 2);
}

TEST(ExecutorCheck, KnowsTrackedExecutorsAndStrands) {
  asio::io_context io;
  const asio::any_io_executor tracked =
      asio::prefer(io.get_executor(), asio::execution::outstanding_work.tracked);
  const auto strand = asio::make_strand(io);
  const asio::any_io_executor in_strand = strand;
  EXPECT_FALSE(running_in_this_thread(tracked));
  EXPECT_FALSE(running_in_this_thread(in_strand));
  int checked = 0;
  asio::post(strand, [&] {
    EXPECT_TRUE(running_in_this_thread(tracked));
    EXPECT_TRUE(running_in_this_thread(in_strand));
    ++checked;
  });
  asio::post(io, [&] {
    EXPECT_FALSE(running_in_this_thread(in_strand)) << "on the io_context, not in the strand";
    ++checked;
  });
  io.poll();  // not run(): `tracked` keeps the io_context from running out of work
  EXPECT_EQ(checked, 2);
}

TEST(ExecutorCheckDeathTest, AbortsNamingTheFunction) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  asio::io_context io;
  EXPECT_DEATH(assert_on_executor(io.get_executor(), "Widget::poke"),
               "Widget::poke called off its executor");
}

TEST(ExecutorCheckDeathTest, TheMacroChecksInDebugBuildsOnly) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  asio::io_context io;
#ifdef NDEBUG
  int evaluated = 0;
  TUNNEL_ASSERT_ON_EXECUTOR((++evaluated, io.get_executor()), "Widget::poke");
  EXPECT_EQ(evaluated, 0) << "release builds must not even evaluate the executor";
#else
  EXPECT_DEATH(TUNNEL_ASSERT_ON_EXECUTOR(io.get_executor(), "Widget::poke"),
               "Widget::poke called off its executor");
  asio::post(io, [&] { TUNNEL_ASSERT_ON_EXECUTOR(io.get_executor(), "Widget::poke"); });
  io.run();
#endif
}

}  // namespace
}  // namespace tunnel
