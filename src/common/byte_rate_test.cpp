#include "common/byte_rate.hpp"

#include <gtest/gtest.h>

namespace tunnel::common {
namespace {

TEST(ByteRate, ParsesUnits) {
  EXPECT_EQ(parse_byte_rate("1MiB/s").value(), 1024u * 1024);
  EXPECT_EQ(parse_byte_rate("1MiB").value(), 1024u * 1024);
  EXPECT_EQ(parse_byte_rate("500KB/s").value(), 500'000u);
  EXPECT_EQ(parse_byte_rate("500kB/s").value(), 500'000u);
  EXPECT_EQ(parse_byte_rate("100Mbit/s").value(), 12'500'000u);
  EXPECT_EQ(parse_byte_rate("1 Gbit/s").value(), 125'000'000u);
  EXPECT_EQ(parse_byte_rate("1.5MiB/s").value(), 1572864u);
  EXPECT_EQ(parse_byte_rate("2048B/s").value(), 2048u);
  EXPECT_EQ(parse_byte_rate("0").value(), 0u);
}

TEST(ByteRate, RejectsWithReason) {
  EXPECT_NE(parse_byte_rate("").error().message.find("expected a number"), std::string::npos);
  EXPECT_NE(parse_byte_rate("fast").error().message.find("expected a number"), std::string::npos);
  EXPECT_NE(parse_byte_rate("10").error().message.find("missing unit"), std::string::npos);
  EXPECT_NE(parse_byte_rate("10MBps").error().message.find("unknown unit \"MBps\""),
            std::string::npos);
  EXPECT_NE(parse_byte_rate("-1MB/s").error().message.find("\"-1MB/s\""), std::string::npos);
  EXPECT_NE(parse_byte_rate("0.1B/s").error().message.find("less than 1 byte"), std::string::npos);
  EXPECT_FALSE(parse_byte_rate("1mb/s"));  // millibits are not a thing we accept
}

TEST(ByteRate, Formats) {
  EXPECT_EQ(format_byte_rate(0), "unlimited");
  EXPECT_EQ(format_byte_rate(1024 * 1024), "1 MiB/s");
  EXPECT_EQ(format_byte_rate(1536 * 1024), "1.50 MiB/s");
  EXPECT_EQ(format_byte_rate(100), "100 B/s");
}

}  // namespace
}  // namespace tunnel::common
