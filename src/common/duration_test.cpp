#include "duration.hpp"

#include <gtest/gtest.h>

namespace tunnel::common {
namespace {

using std::chrono::milliseconds;

milliseconds parse_ok(std::string_view text) {
  auto result = parse_duration(text);
  EXPECT_TRUE(result) << text << ": " << result.error().message;
  return result ? result.value() : milliseconds(-1);
}

TEST(Duration, ParsesEachUnit) {
  EXPECT_EQ(parse_ok("250ms"), milliseconds(250));
  EXPECT_EQ(parse_ok("10s"), milliseconds(10'000));
  EXPECT_EQ(parse_ok("2m"), milliseconds(120'000));
  EXPECT_EQ(parse_ok("1h"), milliseconds(3'600'000));
  EXPECT_EQ(parse_ok("0"), milliseconds(0));
  EXPECT_EQ(parse_ok("0s"), milliseconds(0));
}

TEST(Duration, ParsesCompoundValues) {
  EXPECT_EQ(parse_ok("1h30m"), milliseconds(5'400'000));
  EXPECT_EQ(parse_ok("1m500ms"), milliseconds(60'500));
  EXPECT_EQ(parse_ok("1h1m1s1ms"), milliseconds(3'661'001));
}

TEST(Duration, RejectsBadText) {
  for (const char* bad : {"", "10", "s", "-5s", "1.5s", "10 s", "10sec", "5d", "ms10", "1h30"}) {
    auto result = parse_duration(bad);
    EXPECT_FALSE(result) << bad;
    EXPECT_FALSE(result.error().message.empty()) << bad;
  }
}

TEST(Duration, ErrorsExplainTheProblem) {
  EXPECT_NE(parse_duration("10").error().message.find("missing a unit"), std::string::npos);
  EXPECT_NE(parse_duration("5d").error().message.find("unknown unit \"d\""), std::string::npos);
  EXPECT_NE(parse_duration("99999999999999999999s").error().message.find("too large"),
            std::string::npos);
  EXPECT_NE(parse_duration("9223372036854775807h").error().message.find("too large"),
            std::string::npos);
}

TEST(Duration, FormatRoundTrips) {
  EXPECT_EQ(format_duration(milliseconds(0)), "0s");
  EXPECT_EQ(format_duration(milliseconds(250)), "250ms");
  EXPECT_EQ(format_duration(milliseconds(5'400'000)), "1h30m");
  EXPECT_EQ(format_duration(milliseconds(60'500)), "1m500ms");
  for (long long ms : {1LL, 999LL, 1000LL, 61'001LL, 3'600'000LL, 90'061'001LL}) {
    EXPECT_EQ(parse_ok(format_duration(milliseconds(ms))), milliseconds(ms));
  }
}

}  // namespace
}  // namespace tunnel::common
