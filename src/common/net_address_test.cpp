#include "net_address.hpp"

#include <gtest/gtest.h>

namespace tunnel::common {
namespace {

NetAddress listen_ok(std::string_view text) {
  auto result = parse_listen_address(text);
  EXPECT_TRUE(result) << text << ": " << result.error().message;
  return result ? result.value() : NetAddress{"<error>", 0};
}

NetAddress dial_ok(std::string_view text, std::uint16_t default_port = 0) {
  auto result = parse_dial_address(text, "localhost", default_port);
  EXPECT_TRUE(result) << text << ": " << result.error().message;
  return result ? result.value() : NetAddress{"<error>", 0};
}

TEST(NetAddress, ListenForms) {
  EXPECT_EQ(listen_ok(":8443"), (NetAddress{"", 8443}));
  EXPECT_EQ(listen_ok("127.0.0.1:9000"), (NetAddress{"127.0.0.1", 9000}));
  EXPECT_EQ(listen_ok("[::1]:80"), (NetAddress{"::1", 80}));
  EXPECT_EQ(listen_ok("[::]:80"), (NetAddress{"::", 80}));
  EXPECT_EQ(listen_ok("localhost:3000"), (NetAddress{"localhost", 3000}));
  EXPECT_EQ(listen_ok("3000"), (NetAddress{"", 3000}));
  EXPECT_EQ(listen_ok("127.0.0.1:0"), (NetAddress{"127.0.0.1", 0}));
}

TEST(NetAddress, DialForms) {
  EXPECT_EQ(dial_ok("3000"), (NetAddress{"localhost", 3000}));
  EXPECT_EQ(dial_ok("example.com:443"), (NetAddress{"example.com", 443}));
  EXPECT_EQ(dial_ok("[2001:db8::1]:8443"), (NetAddress{"2001:db8::1", 8443}));
  EXPECT_EQ(dial_ok("example.com", 8443), (NetAddress{"example.com", 8443}));
  EXPECT_EQ(dial_ok(":9000"), (NetAddress{"localhost", 9000}));
}

TEST(NetAddress, RejectsBadPortsAndHosts) {
  struct Case {
    const char* text;
    const char* message_part;
  };
  for (const auto& c :
       {Case{"", "empty"}, Case{":", "missing port"}, Case{"host:", "missing port"},
        Case{":65536", "out of range"}, Case{":99999999999999999999", "out of range"},
        Case{":http", "invalid port"}, Case{":-1", "invalid port"},
        Case{"::1:80", "needs brackets"}, Case{"[::1:80", "missing ']'"},
        Case{"[nope]:80", "invalid IPv6"}, Case{"[::1]x", "unexpected"},
        Case{"bad_host:80", "invalid host"}, Case{"-x.com:80", "invalid host"}}) {
    auto result = parse_listen_address(c.text);
    EXPECT_FALSE(result) << c.text;
    EXPECT_NE(result.error().message.find(c.message_part), std::string::npos)
        << c.text << " -> " << result.error().message;
  }
  EXPECT_FALSE(parse_dial_address(":0", "localhost"));
  EXPECT_FALSE(parse_dial_address("example.com", "localhost"));  // no default port
  EXPECT_NE(parse_dial_address("example.com", "localhost").error().message.find("missing port"),
            std::string::npos);
}

TEST(NetAddress, ToStringBracketsIpv6) {
  EXPECT_EQ((NetAddress{"::1", 80}).to_string(), "[::1]:80");
  EXPECT_EQ((NetAddress{"", 8443}).to_string(), ":8443");
  EXPECT_EQ((NetAddress{"localhost", 3000}).to_string(), "localhost:3000");
}

TEST(NetAddress, HostnameSyntax) {
  EXPECT_TRUE(is_valid_hostname("localhost"));
  EXPECT_TRUE(is_valid_hostname("a.example.com"));
  EXPECT_TRUE(is_valid_hostname("example.com."));
  EXPECT_TRUE(is_valid_hostname("xn--bcher-kva.example"));
  EXPECT_FALSE(is_valid_hostname(""));
  EXPECT_FALSE(is_valid_hostname("a..b"));
  EXPECT_FALSE(is_valid_hostname(".a"));
  EXPECT_FALSE(is_valid_hostname("a_b.com"));
  EXPECT_FALSE(is_valid_hostname("-a.com"));
  EXPECT_FALSE(is_valid_hostname("1.2.3.4"));
  EXPECT_FALSE(is_valid_hostname(std::string(64, 'a') + ".com"));
  EXPECT_FALSE(is_valid_hostname(std::string(250, 'a') + ".com"));
  EXPECT_TRUE(is_valid_dns_label("app-1"));
  EXPECT_FALSE(is_valid_dns_label("app-"));
  EXPECT_FALSE(is_valid_dns_label("a.b"));
  EXPECT_EQ(ascii_lower("App.Example.COM"), "app.example.com");
}

}  // namespace
}  // namespace tunnel::common
