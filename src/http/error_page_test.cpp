#include "http/error_page.hpp"

#include <gtest/gtest.h>

#include "http/message_parser.hpp"

namespace tunnel::http {
namespace {

TEST(ErrorPageTest, ReasonPhrases) {
  EXPECT_EQ(reason_phrase(200), "OK");
  EXPECT_EQ(reason_phrase(404), "Not Found");
  EXPECT_EQ(reason_phrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(reason_phrase(502), "Bad Gateway");
  EXPECT_EQ(reason_phrase(799), "");
}

// The page must be a well-formed response that our own parser (like any client) reads whole.
TEST(ErrorPageTest, IsACompleteResponse) {
  const std::string out =
      error_response(404, "No tunnel for <b>demo.example.com</b> & co", "req-123", true);
  MessageParser p(MessageParser::Kind::kResponse);
  std::string_view rest = out;
  auto step = p.parse(rest);
  ASSERT_EQ(step.type, MessageParser::Step::kHead) << p.error();
  rest.remove_prefix(step.consumed);
  const ResponseHead& head = p.response();
  EXPECT_EQ(head.status, 404);
  EXPECT_EQ(head.reason, "Not Found");
  EXPECT_EQ(*head.find("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(*head.find("Cache-Control"), "no-store");
  EXPECT_EQ(*head.find("X-Request-Id"), "req-123");
  EXPECT_EQ(*head.find("Connection"), "close");
  EXPECT_EQ(p.content_length(), rest.size());
  step = p.parse(rest);
  EXPECT_EQ(step.type, MessageParser::Step::kMessageEnd);
  EXPECT_EQ(step.consumed, rest.size());

  EXPECT_NE(rest.find("<title>404 Not Found</title>"), std::string::npos);
  EXPECT_NE(rest.find("No tunnel for &lt;b&gt;demo.example.com&lt;/b&gt; &amp; co"),
            std::string::npos);
  EXPECT_EQ(rest.find("<b>"), std::string::npos);
  EXPECT_NE(rest.find("req-123"), std::string::npos);
  EXPECT_NE(rest.find("tunnel"), std::string::npos);
}

TEST(ErrorPageTest, OptionalHeaders) {
  const std::string out = error_response(502, "could not reach 127.0.0.1:3000", "", false);
  EXPECT_TRUE(out.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
  EXPECT_EQ(out.find("X-Request-Id"), std::string::npos);
  EXPECT_EQ(out.find("Connection:"), std::string::npos);
  EXPECT_NE(out.find("could not reach 127.0.0.1:3000"), std::string::npos);
}

TEST(ErrorPageTest, RequestIdCannotInjectHeaders) {
  const std::string out = error_response(400, "bad", "id\r\nSet-Cookie: x=1", false);
  EXPECT_EQ(out.find("\r\nSet-Cookie"), std::string::npos);
  EXPECT_NE(out.find("X-Request-Id: idSet-Cookie:x=1\r\n"), std::string::npos);
}

TEST(ErrorPageTest, NonErrorStatusBecomes500) {
  EXPECT_TRUE(error_response(200, "", "", false).starts_with("HTTP/1.1 500 Internal Server Error"));
  EXPECT_TRUE(error_response(599, "", "", false).starts_with("HTTP/1.1 599 Error\r\n"));
}

}  // namespace
}  // namespace tunnel::http
