#include "http/head.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace tunnel::http {
namespace {

RequestHead Sample() {
  RequestHead h;
  h.method = "GET";
  h.target = "/index.html?q=1";
  h.headers = {{"Host", "example.com"}, {"Accept", "*/*"}, {"X-Multi", "a"}, {"x-multi", "b"}};
  return h;
}

TEST(HeadTest, FindIsCaseInsensitiveAndReturnsTheFirst) {
  RequestHead h = Sample();
  ASSERT_NE(h.find("HOST"), nullptr);
  EXPECT_EQ(*h.find("host"), "example.com");
  EXPECT_EQ(*h.find("X-MULTI"), "a");
  EXPECT_EQ(h.find("Missing"), nullptr);
}

TEST(HeadTest, SetReplacesAllInPlaceOrAppends) {
  RequestHead h = Sample();
  h.set("X-Multi", "c");
  EXPECT_EQ(
      h.serialize(),
      "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-Multi: c\r\n\r\n");
  h.set("X-New", "1");
  EXPECT_EQ(h.headers.back().name, "X-New");
  EXPECT_EQ(h.headers.size(), 4u);
}

TEST(HeadTest, AppendAndRemove) {
  RequestHead h = Sample();
  h.append("X-Multi", "z");
  h.remove("x-MULTI");
  EXPECT_EQ(h.find("X-Multi"), nullptr);
  EXPECT_EQ(h.headers.size(), 2u);
}

TEST(HeadTest, HasTokenSplitsCommaLists) {
  RequestHead h;
  h.headers = {{"Connection", "keep-alive, Upgrade"}, {"connection", " foo ,bar"}};
  EXPECT_TRUE(h.has_token("Connection", "upgrade"));
  EXPECT_TRUE(h.has_token("CONNECTION", "Keep-Alive"));
  EXPECT_TRUE(h.has_token("Connection", "bar"));
  EXPECT_FALSE(h.has_token("Connection", "keep"));
  EXPECT_FALSE(h.has_token("Upgrade", "websocket"));
}

TEST(HeadTest, RemoveHopByHop) {
  RequestHead h;
  h.method = "GET";
  h.target = "/";
  h.headers = {{"Host", "a"},
               {"Connection", "keep-alive, X-Secret, Content-Length, Host, Transfer-Encoding"},
               {"Keep-Alive", "timeout=5"},
               {"Proxy-Connection", "keep-alive"},
               {"Proxy-Authorization", "Basic x"},
               {"Proxy-Authenticate", "Basic"},
               {"TE", "trailers"},
               {"Trailer", "X-Checksum"},
               {"Upgrade", "websocket"},
               {"X-Secret", "1"},
               {"Content-Length", "3"},
               {"Transfer-Encoding", "chunked"},
               {"Accept", "*/*"}};
  RequestHead kept = h;
  h.remove_hop_by_hop();
  EXPECT_EQ(h.serialize(),
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
            "Accept: */*\r\n\r\n");

  kept.remove_hop_by_hop(/*keep_upgrade=*/true);
  ASSERT_NE(kept.find("Upgrade"), nullptr);
  EXPECT_EQ(*kept.find("Upgrade"), "websocket");
  EXPECT_EQ(*kept.find("Connection"), "upgrade");
  EXPECT_EQ(kept.find("X-Secret"), nullptr);
  EXPECT_EQ(kept.find("Keep-Alive"), nullptr);
}

TEST(HeadTest, KeepUpgradeWithoutUpgradeFieldAddsNothing) {
  RequestHead h = Sample();
  h.append("Connection", "close");
  h.remove_hop_by_hop(true);
  EXPECT_EQ(h.find("Connection"), nullptr);
  EXPECT_EQ(h.find("Upgrade"), nullptr);
}

TEST(HeadTest, SerializeRequestWithVersion) {
  RequestHead h;
  h.method = "POST";
  h.target = "/x";
  h.version_minor = 0;
  EXPECT_EQ(h.serialize(), "POST /x HTTP/1.0\r\n\r\n");
}

TEST(HeadTest, SerializeResponse) {
  ResponseHead r;
  r.status = 404;
  r.headers = {{"Content-Length", "0"}};
  EXPECT_EQ(r.serialize(), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  r.reason = "Nope";
  EXPECT_EQ(r.serialize(), "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n");
  r.status = 299;
  r.reason.clear();
  EXPECT_EQ(r.serialize(), "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n");
}

TEST(HeadTest, SerializeNeverEmitsLineBreaksFromValues) {
  RequestHead h = Sample();
  h.set("X-Request-Id", "abc\r\nInjected: yes");
  const std::string out = h.serialize();
  EXPECT_EQ(out.find("\r\nInjected"), std::string::npos);
  EXPECT_NE(out.find("X-Request-Id: abc  Injected: yes\r\n"), std::string::npos);
  h.set(std::string_view("X-A\nB", 5), std::string_view("a\0b\r", 4));
  EXPECT_NE(h.serialize().find("\r\nX-A B: a b \r\n"), std::string::npos);
}

TEST(HeadTest, AbsoluteFormGivesTheAuthorityToRouteBy) {
  struct Case {
    std::string_view target, authority, path;
  };
  for (const Case& c : std::vector<Case>{
           {"http://a.example/x", "a.example", "/x"},
           {"http://a.example:8080/x?y=1", "a.example:8080", "/x?y=1"},
           {"HTTPS://A.Example", "A.Example", ""},
           {"http://a.example?q", "a.example", "?q"},
           {"http://[::1]:8080/", "[::1]:8080", "/"},
       }) {
    const AbsoluteForm f = absolute_form_of(c.target);
    EXPECT_TRUE(f.absolute) << c.target;
    EXPECT_EQ(f.error, "") << c.target;
    EXPECT_EQ(f.authority, c.authority) << c.target;
    EXPECT_EQ(f.path, c.path) << c.target;
  }
  for (std::string_view not_absolute : {"/x", "/http://a.example/", "*", "", "/", "1http://a/"}) {
    const AbsoluteForm f = absolute_form_of(not_absolute);
    EXPECT_FALSE(f.absolute) << not_absolute;
    EXPECT_EQ(f.error, "") << not_absolute;
    EXPECT_EQ(f.authority, "") << not_absolute;
  }
}

TEST(HeadTest, AbsoluteFormWithoutAUsableAuthoritySaysWhy) {
  struct Case {
    std::string_view target, error;
  };
  for (const Case& c : std::vector<Case>{
           {"ftp://a.example/", "scheme other than http or https"},
           {"urn:isbn:1", "scheme other than http or https"},
           {"http:/x", "no host in the absolute-form target"},
           {"http:///x", "no host in the absolute-form target"},
           {"http://?x", "no host in the absolute-form target"},
           {"http://u:p@a.example/", "userinfo in the absolute-form target (RFC 9110 4.2.4)"},
           {"http://@a.example/", "userinfo in the absolute-form target (RFC 9110 4.2.4)"},
           {"http://a..example/", "invalid host in the absolute-form target"},
           {"http://a.example:0/", "invalid host in the absolute-form target"},
           {"http://a example/", "invalid host in the absolute-form target"},
       }) {
    const AbsoluteForm f = absolute_form_of(c.target);
    EXPECT_TRUE(f.absolute) << c.target;
    EXPECT_EQ(f.error, c.error) << c.target;
    EXPECT_EQ(f.authority, "") << c.target;
  }
}

TEST(HeadTest, ConnectTargetIsNeverAbsoluteForm) {
  RequestHead h;
  h.method = "CONNECT";
  h.target = "a.example:443";
  EXPECT_FALSE(h.absolute_form().absolute);
  h.method = "GET";
  EXPECT_TRUE(h.absolute_form().absolute);
  EXPECT_EQ(h.absolute_form().error, "scheme other than http or https");
  h.target = "http://b.example/p";
  EXPECT_EQ(h.absolute_form().authority, "b.example");
}

TEST(HeadTest, Iequals) {
  EXPECT_TRUE(iequals("Content-Length", "content-LENGTH"));
  EXPECT_FALSE(iequals("Content-Length", "Content-Lengt"));
  EXPECT_TRUE(iequals("", ""));
}

}  // namespace
}  // namespace tunnel::http
