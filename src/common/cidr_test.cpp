#include "common/cidr.hpp"

#include <gtest/gtest.h>

namespace tunnel::common {
namespace {

Cidr parse_ok(std::string_view text) {
  auto cidr = Cidr::parse(text);
  EXPECT_TRUE(cidr) << text << ": " << cidr.error().message;
  return cidr ? cidr.value() : Cidr{};
}

TEST(Cidr, MatchesIpv4Ranges) {
  const Cidr net = parse_ok("10.1.0.0/16");
  EXPECT_TRUE(net.contains("10.1.2.3"));
  EXPECT_TRUE(net.contains("10.1.255.255"));
  EXPECT_FALSE(net.contains("10.2.0.1"));
  EXPECT_TRUE(net.contains("::ffff:10.1.9.9")) << "IPv4-mapped, as a dual-stack socket reports";
  EXPECT_FALSE(net.contains("::1"));
  EXPECT_FALSE(net.contains("not an ip"));
  EXPECT_EQ(parse_ok("10.1.2.3/16").to_string(), "10.1.0.0/16");
}

TEST(Cidr, MatchesIpv6RangesAndSingleAddresses) {
  const Cidr net = parse_ok("2001:db8::/32");
  EXPECT_TRUE(net.contains("2001:db8:1::5"));
  EXPECT_FALSE(net.contains("2001:db9::1"));
  EXPECT_FALSE(net.contains("10.0.0.1"));
  const Cidr one = parse_ok("127.0.0.1");
  EXPECT_TRUE(one.contains("127.0.0.1"));
  EXPECT_FALSE(one.contains("127.0.0.2"));
  EXPECT_EQ(one.to_string(), "127.0.0.1/32");
  EXPECT_TRUE(parse_ok("0.0.0.0/0").contains("8.8.8.8"));
  EXPECT_TRUE(parse_ok("::/0").contains("::1"));
}

TEST(Cidr, RefusesBadTextWithAReason) {
  EXPECT_EQ(Cidr::parse("10.0.0.0/33").error().message, "\"10.0.0.0/33\": prefix length above 32");
  EXPECT_EQ(Cidr::parse("::/129").error().message, "\"::/129\": prefix length above 128");
  for (const char* bad : {"", "/8", "10.0.0/8", "10.0.0.0/", "10.0.0.0/x", "10.0.0.0/-1",
                          "10.0.0.0/8/8", "host.example/8"}) {
    auto cidr = Cidr::parse(bad);
    ASSERT_FALSE(cidr) << bad;
    EXPECT_FALSE(cidr.error().message.empty());
  }
}

}  // namespace
}  // namespace tunnel::common
