#include "tracing/trace_context.hpp"

#include <gtest/gtest.h>

#include <set>

namespace tunnel::tracing {
namespace {

constexpr std::string_view kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceContext, ParsesTheSpecExample) {
  const auto context = parse_traceparent(kValid);
  ASSERT_TRUE(context.has_value());
  EXPECT_EQ(to_hex(context->trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(to_hex(context->span_id), "00f067aa0ba902b7");
  EXPECT_EQ(context->flags, 0x01);
  EXPECT_TRUE(context->sampled());
  const auto unsampled =
      parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(unsampled.has_value());
  EXPECT_FALSE(unsampled->sampled());
}

TEST(TraceContext, FormatsWhatItParses) {
  const auto context = parse_traceparent(kValid);
  ASSERT_TRUE(context.has_value());
  EXPECT_EQ(format_traceparent(context->trace_id, context->span_id, context->flags), kValid);
}

TEST(TraceContext, RefusesEachInvalidForm) {
  const std::string_view invalid[] = {
      "",
      "00",
      // version ff is forbidden; versions are lower-case hex
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      // all-zero ids
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      // upper case, other characters
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
      // wrong lengths and separators
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
      // version 00 is exactly 55 characters
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what",
      " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      // a later version goes on with '-'
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
  };
  for (const std::string_view value : invalid) {
    EXPECT_FALSE(parse_traceparent(value).has_value()) << value;
  }
}

TEST(TraceContext, ReadsALaterVersionAsVersion00) {
  const auto exact = parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(exact.has_value());
  EXPECT_TRUE(exact->sampled());
  const auto longer =
      parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-future-stuff");
  ASSERT_TRUE(longer.has_value());
  EXPECT_EQ(to_hex(longer->span_id), "00f067aa0ba902b7");
  EXPECT_TRUE(longer->sampled());
}

TEST(TraceContext, NewIdsAreRandomAndNeverZero) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const TraceId trace = new_trace_id();
    const SpanId span = new_span_id();
    EXPECT_NE(trace, TraceId{});
    EXPECT_NE(span, SpanId{});
    seen.insert(to_hex(trace));
  }
  EXPECT_EQ(seen.size(), 100u);
}

TraceId trace_with_low(std::uint64_t low) {
  TraceId id{};
  id[0] = 0xab;
  for (int i = 0; i < 8; ++i) id[15 - i] = static_cast<std::uint8_t>(low >> (8 * i));
  return id;
}

TEST(Sampling, RatioComparesTheLast8BytesOfTheTraceId) {
  EXPECT_FALSE(ratio_samples(trace_with_low(0), 0.0));
  EXPECT_TRUE(ratio_samples(trace_with_low(UINT64_MAX), 1.0));
  // 0.25 * 2^64 = 0x4000000000000000
  EXPECT_TRUE(ratio_samples(trace_with_low(0x3fffffffffffffffULL), 0.25));
  EXPECT_FALSE(ratio_samples(trace_with_low(0x4000000000000000ULL), 0.25));
}

TEST(Sampling, RatioKeepsAboutThatShareOfNewTraces) {
  int kept = 0;
  for (int i = 0; i < 10000; ++i) kept += ratio_samples(new_trace_id(), 0.1) ? 1 : 0;
  EXPECT_GT(kept, 800);
  EXPECT_LT(kept, 1200);
}

TEST(Sampling, AParentDecidesWhateverTheRatio) {
  auto sampled = parse_traceparent(kValid);
  auto unsampled = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  const TraceId id = trace_with_low(0);
  EXPECT_TRUE(should_sample(sampled, id, 0.0));
  EXPECT_FALSE(should_sample(unsampled, id, 1.0));
  EXPECT_TRUE(should_sample(std::nullopt, id, 1.0));
  EXPECT_FALSE(should_sample(std::nullopt, id, 0.0));
}

TEST(Sampling, RatiosAsConfigured) {
  EXPECT_EQ(parse_sample_ratio("0.01"), 0.01);
  EXPECT_EQ(parse_sample_ratio("1"), 1.0);
  EXPECT_EQ(parse_sample_ratio("0"), 0.0);
  EXPECT_EQ(parse_sample_ratio("5%"), 0.05);
  EXPECT_EQ(parse_sample_ratio("100%"), 1.0);
  for (const std::string_view bad : {"", "%", "1.5", "-0.1", "101%", "abc", "0.1x", "1e-2"}) {
    EXPECT_FALSE(parse_sample_ratio(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace tunnel::tracing
