#include "http/host.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace tunnel::http {
namespace {

TEST(HostTest, Normalizes) {
  EXPECT_EQ(normalize_host("Example.COM"), "example.com");
  EXPECT_EQ(normalize_host("example.com:8080"), "example.com");
  EXPECT_EQ(normalize_host("example.com."), "example.com");
  EXPECT_EQ(normalize_host("App.Example.com.:443"), "app.example.com");
  EXPECT_EQ(normalize_host("my_app-1.tunnel.dev"), "my_app-1.tunnel.dev");
  EXPECT_EQ(normalize_host("localhost"), "localhost");
  EXPECT_EQ(normalize_host("127.0.0.1:80"), "127.0.0.1");
  EXPECT_EQ(normalize_host("xn--bcher-kva.example"), "xn--bcher-kva.example");
}

TEST(HostTest, Ipv6Literals) {
  EXPECT_EQ(normalize_host("[::1]:8080"), "[::1]");
  EXPECT_EQ(normalize_host("[::1]"), "[::1]");
  EXPECT_EQ(normalize_host("[2001:DB8::A]"), "[2001:db8::a]");
  EXPECT_EQ(normalize_host("[1:2:3:4:5:6:7:8]:1"), "[1:2:3:4:5:6:7:8]");
  EXPECT_EQ(normalize_host("[::ffff:192.0.2.1]"), "[::ffff:192.0.2.1]");
  for (std::string_view bad :
       {"[::1", "[]", "[::1]x", "[::1]:", "[::1]:99999", "[1:2:3]", "[fe80::1%25eth0]", "[12345::]",
        "[1::2::3]", "[:1:2:3:4:5:6:7]", "[g::1]", "::1"}) {
    EXPECT_EQ(normalize_host(bad), std::nullopt) << bad;
  }
}

TEST(HostTest, RejectsInvalid) {
  const std::string long_label(64, 'a');
  std::string long_name;  // labels of 60 characters, 5 of them: 304 > 253 characters
  for (int i = 0; i < 5; ++i) long_name += std::string(60, 'a') + (i < 4 ? "." : "");
  EXPECT_EQ(normalize_host(long_name.substr(0, 60 * 4 + 3)), long_name.substr(0, 60 * 4 + 3));
  for (std::string_view bad : std::vector<std::string_view>{"",
                                                            ".",
                                                            "..",
                                                            ":80",
                                                            "a..b",
                                                            ".a",
                                                            "a b",
                                                            " a",
                                                            "a\tb",
                                                            "a/b",
                                                            "a@b",
                                                            "a:b:c",
                                                            "exa%6dple.com",
                                                            "example.com:",
                                                            "example.com:0",
                                                            "example.com:65536",
                                                            "example.com:-1",
                                                            "example.com:8o",
                                                            "example.com:123456",
                                                            "ex\xc3\xa9.com",
                                                            "a.b..",
                                                            std::string_view(long_label),
                                                            std::string_view(long_name)}) {
    EXPECT_EQ(normalize_host(bad), std::nullopt) << testing::PrintToString(bad);
  }
  EXPECT_EQ(normalize_host("example.com:65535"), "example.com");
  EXPECT_EQ(normalize_host(std::string(63, 'a')), std::string(63, 'a'));
}

}  // namespace
}  // namespace tunnel::http
