#include "protocol/proxy_header.hpp"

#include <gtest/gtest.h>

namespace tunnel::protocol {
namespace {

using namespace std::string_literals;

TEST(ProxyHeader, V1Ipv4) {
  EXPECT_EQ(proxy_header(ProxyProtocol::kV1, "192.168.0.1:56324", "192.168.0.11:443"),
            "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
}

TEST(ProxyHeader, V1Ipv6AndMixedFamilies) {
  EXPECT_EQ(proxy_header(ProxyProtocol::kV1, "[2001:db8::1]:1000", "[::1]:80"),
            "PROXY TCP6 2001:db8::1 ::1 1000 80\r\n");
  // A v4-mapped client on a dual-stack listener is written as IPv4.
  EXPECT_EQ(proxy_header(ProxyProtocol::kV1, "[::ffff:10.0.0.5]:1234", "[::ffff:10.0.0.1]:8080"),
            "PROXY TCP4 10.0.0.5 10.0.0.1 1234 8080\r\n");
  EXPECT_EQ(proxy_header(ProxyProtocol::kV1, "10.0.0.5:1234", "[2001:db8::2]:8080"),
            "PROXY TCP6 ::ffff:10.0.0.5 2001:db8::2 1234 8080\r\n");
}

TEST(ProxyHeader, ScopeIdsAreDropped) {
  EXPECT_EQ(proxy_header(ProxyProtocol::kV1, "[fe80::1%1]:1000", "[fe80::2%4294967295]:80"),
            "PROXY TCP6 fe80::1 fe80::2 1000 80\r\n");
}

TEST(ProxyHeader, V1Unknown) {
  EXPECT_EQ(proxy_header(ProxyProtocol::kV1, "unknown", "127.0.0.1:80"), "PROXY UNKNOWN\r\n");
  EXPECT_EQ(proxy_header(ProxyProtocol::kV1, "1.2.3.4:99999", "127.0.0.1:80"), "PROXY UNKNOWN\r\n");
  EXPECT_EQ(proxy_header(ProxyProtocol::kV1, "[::1:80", "127.0.0.1:80"), "PROXY UNKNOWN\r\n");
}

TEST(ProxyHeader, V2Ipv4) {
  const std::string h = proxy_header(ProxyProtocol::kV2, "127.0.0.1:513", "10.1.2.3:8443");
  EXPECT_EQ(h,
            "\r\n\r\n\0\r\nQUIT\n"s
            "\x21\x11\x00\x0c"
            "\x7f\x00\x00\x01"
            "\x0a\x01\x02\x03"
            "\x02\x01"
            "\x20\xfb"s);
  EXPECT_EQ(h.size(), 16u + 12u);
}

TEST(ProxyHeader, V2Ipv6) {
  const std::string h = proxy_header(ProxyProtocol::kV2, "[::1]:1", "[2001:db8::2]:2");
  ASSERT_EQ(h.size(), 16u + 36u);
  EXPECT_EQ(h.substr(0, 12), kProxyV2Signature);
  EXPECT_EQ(h.substr(12, 4), "\x21\x21\x00\x24"s);
  EXPECT_EQ(h.substr(16, 16), "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"s);
  EXPECT_EQ(h.substr(32, 16), "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02"s);
  EXPECT_EQ(h.substr(48), "\x00\x01\x00\x02"s);
}

TEST(ProxyHeader, V2Unspec) {
  EXPECT_EQ(proxy_header(ProxyProtocol::kV2, "", "127.0.0.1:80"),
            "\r\n\r\n\0\r\nQUIT\n\x21\x00\x00\x00"s);
}

TEST(ProxyHeader, NoneIsEmpty) {
  EXPECT_EQ(proxy_header(ProxyProtocol::kNone, "1.2.3.4:5", "1.2.3.4:6"), "");
  EXPECT_EQ(proxy_protocol_name(ProxyProtocol::kV2), "v2");
}

TEST(ConnectionAddresses, ParseAndSplit) {
  const auto both = parse_addresses(format_addresses("[::1]:5", "127.0.0.1:80"));
  EXPECT_EQ(both.client, "[::1]:5");
  EXPECT_EQ(both.server, "127.0.0.1:80");
  const auto old = parse_addresses("1.2.3.4:5");  // an older core
  EXPECT_EQ(old.client, "1.2.3.4:5");
  EXPECT_EQ(old.server, "");
  ConnectionAddresses line;
  EXPECT_EQ(take_address_line("1.2.3.4:5 6.7.8.9:80\nGET / HTTP/1.1\r\n", line),
            "GET / HTTP/1.1\r\n");
  EXPECT_EQ(line.client, "1.2.3.4:5");
  EXPECT_EQ(line.server, "6.7.8.9:80");
  ConnectionAddresses none;
  EXPECT_EQ(take_address_line("GET / HTTP/1.1", none), "GET / HTTP/1.1");
  EXPECT_EQ(none.client, "");
}

}  // namespace
}  // namespace tunnel::protocol
