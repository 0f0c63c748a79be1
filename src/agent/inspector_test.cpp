#include "agent/inspector.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tunnel::agent {
namespace {

using nlohmann::json;

// An exchange as forward_http() would have captured it.
Exchange make_exchange(std::string request_head, std::string request_body,
                       std::string response_head, std::string response_body,
                       std::size_t body_cap = 1024, std::string tunnel = "app.localhost") {
  Exchange e;
  e.tunnel_name = std::move(tunnel);
  e.local = "127.0.0.1:3000";
  e.start = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  ExchangeCapture& c = e.capture;
  c.body_cap = body_cap;
  c.request_raw = request_head;
  c.request_head_size = request_head.size();
  c.add_request_body(request_body.data(), request_body.size());
  const std::string response = response_head + response_body;
  c.add_response(response.data(), response.size(), false, response_head.size());
  c.opened = std::chrono::steady_clock::time_point(std::chrono::seconds(5));
  c.app_head = c.opened + std::chrono::milliseconds(2);
  c.ended = c.opened + std::chrono::milliseconds(3);
  return e;
}

json get(Inspector& inspector, const std::string& target, int want_status = 200) {
  const ApiResponse r = inspector.handle_mutating("GET", target);
  EXPECT_EQ(r.status, want_status) << r.body;
  return json::parse(r.body);
}

TEST(Inspector, ListsNewestFirstInNgroksShape) {
  Inspector inspector({});
  inspector.add(make_exchange("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "",
                              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "hi"));
  inspector.add(make_exchange("GET /b HTTP/1.1\r\nHost: x\r\n\r\n", "",
                              "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", ""));
  const json list = get(inspector, "/api/requests/http");
  EXPECT_EQ(list["uri"], "/api/requests/http");
  ASSERT_EQ(list["requests"].size(), 2u);
  const json& newest = list["requests"][0];
  EXPECT_EQ(newest["id"], "ex_2");
  EXPECT_EQ(newest["uri"], "/api/requests/http/ex_2");
  EXPECT_EQ(newest["tunnel_name"], "app.localhost");
  EXPECT_EQ(newest["duration"], 3'000'000);
  EXPECT_EQ(newest["timing"]["to_app_head"], 2'000'000);
  EXPECT_EQ(newest["request"]["method"], "GET");
  EXPECT_EQ(newest["request"]["uri"], "/b");
  EXPECT_EQ(newest["request"]["proto"], "HTTP/1.1");
  EXPECT_EQ(newest["request"]["headers"]["Host"], json::array({"x"}));
  EXPECT_EQ(newest["response"]["status"], "404 Not Found");
  EXPECT_EQ(newest["response"]["status_code"], 404);
  EXPECT_EQ(list["requests"][1]["response"]["body"]["text"], "hi");
  EXPECT_EQ(list["requests"][1]["response"]["raw"],
            base64_encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"));
  EXPECT_EQ(newest["start"], "2027-01-15T08:00:00.000000Z");

  EXPECT_EQ(get(inspector, "/api/requests/http?limit=1")["requests"].size(), 1u);
  EXPECT_EQ(get(inspector, "/api/requests/http?tunnel_name=other")["requests"].size(), 0u);
  EXPECT_EQ(get(inspector, "/api/requests/http?tunnel_name=app.localhost")["requests"].size(), 2u);
  EXPECT_EQ(get(inspector, "/api/requests/http/ex_1")["request"]["uri"], "/a");
  EXPECT_NE(get(inspector, "/api/requests/http/ex_9", 404)["msg"].get<std::string>().find("ex_9"),
            std::string::npos);
  EXPECT_NE(
      get(inspector, "/api/requests/http?limit=x", 400)["msg"].get<std::string>().find("limit"),
      std::string::npos);
}

std::vector<std::string> ids(const json& list) {
  std::vector<std::string> out;
  for (const auto& e : list["requests"]) out.push_back(e["id"].get<std::string>());
  return out;
}

TEST(Inspector, ListFiltersByPathMethodStatusDurationSizeAndHeader) {
  Inspector inspector({});
  // ex_1: GET /api/users 200, 3 ms, 2 body bytes, X-Trace: abc-123, Authorization
  inspector.add(make_exchange(
      "GET /api/users?page=2 HTTP/1.1\r\nHost: x\r\nX-Trace: abc-123\r\nAuthorization: s3cret\r\n"
      "\r\n",
      "", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "hi"));
  // ex_2: POST /upload 404, 40 ms, 1000 + 0 body bytes
  Exchange slow =
      make_exchange("POST /upload HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", std::string(1000, 'a'),
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "");
  slow.capture.ended = slow.capture.opened + std::chrono::milliseconds(40);
  inspector.add(std::move(slow));
  // ex_3: GET /api/orders 503 after an interim 100, response field X-Cache: MISS
  inspector.add(make_exchange("GET /api/orders HTTP/1.1\r\n\r\n", "",
                              "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n"
                              "X-Cache: MISS\r\nContent-Length: 0\r\n\r\n",
                              ""));
  using V = std::vector<std::string>;
  const auto list = [&](const std::string& q) {
    return ids(get(inspector, "/api/requests/http?" + q));
  };
  EXPECT_EQ(list(""), (V{"ex_3", "ex_2", "ex_1"}));
  EXPECT_EQ(list("path=/api/"), (V{"ex_3", "ex_1"}));
  EXPECT_EQ(list("path=page%3D2"), (V{"ex_1"}));
  EXPECT_EQ(list("method=post"), (V{"ex_2"}));
  EXPECT_EQ(list("status=404"), (V{"ex_2"}));
  EXPECT_EQ(list("status=5xx"), (V{"ex_3"}));
  EXPECT_EQ(list("status=2"), (V{"ex_1"}));
  EXPECT_EQ(list("min_duration_ms=10"), (V{"ex_2"}));
  EXPECT_EQ(list("max_duration_ms=3"), (V{"ex_3", "ex_1"}));
  EXPECT_EQ(list("max_duration_ms=2"), V{});
  EXPECT_EQ(list("min_size=2&max_size=999"), (V{"ex_1"}));
  EXPECT_EQ(list("min_size=1000"), (V{"ex_2"}));
  EXPECT_EQ(list("header=x-trace"), (V{"ex_1"}));
  EXPECT_EQ(list("header=X-Trace:abc"), (V{"ex_1"}));
  EXPECT_EQ(list("header=X-Trace:zzz"), V{});
  EXPECT_EQ(list("header=x-cache:MISS"), (V{"ex_3"}));  // a response field
  // A redacted field matches its mask only: a filter cannot probe the credential.
  EXPECT_EQ(list("header=Authorization:s3c"), V{});
  EXPECT_EQ(list("header=Authorization:redacted"), (V{"ex_1"}));
  EXPECT_EQ(list("path=/api/&status=2xx&tunnel_name=app.localhost&limit=5"), (V{"ex_1"}));
  // summary=true: the stream's shape, without headers and bodies.
  const json summary = get(inspector, "/api/requests/http?summary=true&limit=1");
  ASSERT_EQ(summary["requests"].size(), 1u);
  EXPECT_FALSE(summary["requests"][0]["request"].contains("headers"));
  EXPECT_EQ(summary["requests"][0]["response"]["status_code"], 503);
  EXPECT_EQ(summary["requests"][0]["response"]["body"], json({{"size", 0}}));
  for (const std::string bad : {"status=abc", "status=6xx", "min_size=-1", "max_duration_ms=1s",
                                "header=:x", "min_size=99999999999999999999"}) {
    const json problem = get(inspector, "/api/requests/http?" + bad, 400);
    EXPECT_NE(problem["msg"].get<std::string>().find(bad.substr(0, bad.find('='))),
              std::string::npos)
        << bad << ": " << problem["msg"];
  }
}

TEST(Inspector, ServesItsPage) {
  Inspector inspector({});
  const ApiResponse index = inspector.handle("GET", "/");
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
  EXPECT_NE(index.body.find("<script src=\"/inspector.js\""), std::string::npos);
  EXPECT_EQ(index.body.find("<script>"), std::string::npos);  // no inline script (the CSP)
  EXPECT_EQ(inspector.handle("GET", "/index.html").body, index.body);
  const ApiResponse js = inspector.handle("GET", "/inspector.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_EQ(js.content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(js.body.find("EventSource"), std::string::npos);
  EXPECT_EQ(js.body.find("innerHTML"), std::string::npos);  // traffic is shown as text only
  EXPECT_EQ(inspector.handle("GET", "/inspector.css").content_type, "text/css; charset=utf-8");
  EXPECT_EQ(inspector.handle("POST", "/").status, 405);
  EXPECT_EQ(inspector.handle("GET", "/other.js").status, 404);
}

TEST(Inspector, AnUpgradedExchangeShowsItsWebSocketFramesBothWays) {
  Inspector inspector({});
  // To the app: a masked text frame "hi" (mask 01 02 03 04), then a masked close 1000 "bye".
  std::string to_app = "\x81\x82\x01\x02\x03\x04";
  to_app += static_cast<char>('h' ^ 1);
  to_app += static_cast<char>('i' ^ 2);
  to_app += "\x88\x85";
  to_app += std::string("\x00\x00\x00\x00", 4);
  to_app += std::string("\x03\xe8", 2) + "bye";
  // From the app: "hi" back as two fragments, then a binary frame with a 16-bit length.
  std::string from_app = "\x01\x01h\x80\x01i\x82\x7e";
  from_app += std::string("\x01\x00", 2) + std::string(256, '\xff');
  Exchange e = make_exchange(
      "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "",
      1 << 20);
  ExchangeCapture& c = e.capture;
  using std::chrono::milliseconds;
  c.mark_request(c.opened + milliseconds(10));  // the text frame
  c.add_request_body(to_app.data(), 8);
  c.mark_response(c.opened + milliseconds(11));  // both fragments
  c.add_response(from_app.data(), 6, true, 0);
  c.mark_response(c.opened + milliseconds(12));  // the binary frame
  c.add_response(from_app.data() + 6, from_app.size() - 6, true, 0);
  c.mark_request(c.opened + milliseconds(13));  // the close
  c.add_request_body(to_app.data() + 8, to_app.size() - 8);
  inspector.add(std::move(e));

  const json got = get(inspector, "/api/requests/http/ex_1");
  EXPECT_EQ(got["response"]["status_code"], 101);
  EXPECT_EQ(got["websocket"]["to_app"]["frames"], 2);
  EXPECT_EQ(got["websocket"]["from_app"]["frames"], 3);
  EXPECT_EQ(got["websocket"]["shown"], 5);
  const json& f = got["websocket_frames"];
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[0]["direction"], "to_app");
  EXPECT_EQ(f[0]["opcode_name"], "text");
  EXPECT_EQ(f[0]["text"], "hi");  // unmasked
  EXPECT_EQ(f[0]["masked"], true);
  EXPECT_EQ(f[0]["time"], 10'000'000);
  EXPECT_EQ(f[1]["direction"], "from_app");
  EXPECT_EQ(f[1]["fin"], false);
  EXPECT_EQ(f[1]["text"], "h");
  EXPECT_EQ(f[2]["opcode_name"], "continuation");
  EXPECT_EQ(f[2]["text"], "i");  // continues a text message
  EXPECT_EQ(f[3]["opcode_name"], "binary");
  EXPECT_EQ(f[3]["size"], 256);
  EXPECT_EQ(f[3]["base64"], base64_encode(std::string(256, '\xff')));
  EXPECT_EQ(f[3]["time"], 12'000'000);
  EXPECT_EQ(f[4]["opcode_name"], "close");
  EXPECT_EQ(f[4]["close_code"], 1000);
  EXPECT_EQ(f[4]["close_reason"], "bye");
  // Only the full entry has them; an exchange that is not an upgrade has none.
  EXPECT_FALSE(get(inspector, "/api/requests/http?summary=true")["requests"][0].contains(
      "websocket_frames"));
  inspector.add(make_exchange("GET / HTTP/1.1\r\n\r\n", "", "HTTP/1.1 204 No Content\r\n\r\n", ""));
  EXPECT_FALSE(get(inspector, "/api/requests/http/ex_2").contains("websocket_frames"));
}

TEST(Inspector, DeleteClearsTheRing) {
  Inspector inspector({});
  inspector.add(make_exchange("GET / HTTP/1.1\r\n\r\n", "", "HTTP/1.1 204 No Content\r\n\r\n", ""));
  EXPECT_EQ(inspector.handle_mutating("DELETE", "/api/requests/http").status, 204);
  EXPECT_EQ(inspector.size(), 0u);
  EXPECT_EQ(inspector.bytes(), 0u);
  EXPECT_EQ(get(inspector, "/api/requests/http")["requests"].size(), 0u);
}

TEST(Inspector, TheRingStaysWithinItsSizeEvictingTheOldest) {
  InspectorOptions options;
  options.db_size = 64 * 1024;
  options.body_cap = 4096;
  Inspector inspector(options);
  const std::string big(10'000, 'x');
  for (int i = 0; i < 10'000; ++i) {
    inspector.add(make_exchange("POST /" + std::to_string(i) + " HTTP/1.1\r\n\r\n", big,
                                "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n", big,
                                options.body_cap));
    ASSERT_LE(inspector.bytes(), options.db_size);
  }
  EXPECT_GT(inspector.size(), 0u);
  EXPECT_EQ(inspector.evicted() + inspector.size(), 10'000u);
  // The newest stayed, the oldest went.
  EXPECT_NE(inspector.find("ex_10000"), nullptr);
  EXPECT_EQ(inspector.find("ex_1"), nullptr);
  // Each body was cut at the cap, and the API says so.
  const json e = get(inspector, "/api/requests/http/ex_10000");
  EXPECT_EQ(e["request"]["body"]["size"], 10'000);
  EXPECT_EQ(e["request"]["body"]["captured"], 4096);
  EXPECT_EQ(e["request"]["body"]["truncated"], true);
  EXPECT_EQ(e["response"]["body"]["captured"], 4096);
  EXPECT_EQ(e["response"]["body"]["text"], std::string(4096, 'x'));
}

TEST(Inspector, EncodedBodiesAreDecodedAndKindsFlagged) {
  Inspector inspector({});
  const std::string plain = R"({"hello": "inspector", "n": [1, 2, 3]})";
  std::string gz(256, '\0');
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 16 + 15, 9, Z_DEFAULT_STRATEGY), Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
  z.avail_in = static_cast<uInt>(plain.size());
  z.next_out = reinterpret_cast<Bytef*>(gz.data());
  z.avail_out = static_cast<uInt>(gz.size());
  ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  gz.resize(z.total_out);
  deflateEnd(&z);
  inspector.add(make_exchange(
      "POST /f HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      "Content-Length: 7\r\n\r\n",
      "a=1&b=2",
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
      "Content-Length: " +
          std::to_string(gz.size()) + "\r\n\r\n",
      gz));
  inspector.add(make_exchange("GET /x HTTP/1.1\r\n\r\n", "",
                              "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Encoding: "
                              "gzip\r\nContent-Length: 5\r\n\r\n",
                              "nope!"));
  const json e = get(inspector, "/api/requests/http/ex_1");
  EXPECT_EQ(e["request"]["body"]["kind"], "form");
  EXPECT_EQ(e["request"]["body"]["pretty"], true);
  const json& body = e["response"]["body"];
  EXPECT_EQ(body["content_encoding"], "gzip");
  EXPECT_EQ(body["base64"], base64_encode(gz));  // as it came
  EXPECT_EQ(body["decoded"]["size"], plain.size());
  EXPECT_EQ(body["decoded"]["truncated"], false);
  EXPECT_EQ(body["kind"], "json");
  EXPECT_EQ(body["pretty"], true);
  EXPECT_EQ(body["text"], plain);
  // Not gzip after all: shown as it came, with the reason.
  const json bad = get(inspector, "/api/requests/http/ex_2")["response"]["body"];
  EXPECT_EQ(bad["kind"], "binary");
  EXPECT_NE(bad["decode_error"].get<std::string>().find("gzip"), std::string::npos);
  EXPECT_FALSE(bad.contains("text"));
}

TEST(Inspector, AReplayDiffsAgainstItsOriginal) {
  Inspector inspector({});
  inspector.add(make_exchange("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "",
                              "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Old: 1\r\n"
                              "X-Same: s\r\nSet-Cookie: a=1\r\nContent-Length: 12\r\n\r\n",
                              "one\ntwo\nthree"));
  Exchange replay = make_exchange("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "",
                                  "HTTP/1.1 500 Internal Server Error\r\nContent-Type: "
                                  "text/plain\r\nX-Same: s\r\nX-New: 2\r\nSet-Cookie: a=2\r\n"
                                  "Content-Length: 12\r\n\r\n",
                                  "one\n2\nthree");
  replay.replay_of = "ex_1";
  inspector.add(std::move(replay));
  const json d = get(inspector, "/api/requests/http/ex_2/diff");
  EXPECT_EQ(d["replay_of"], "ex_1");
  EXPECT_EQ(d["same"], false);
  EXPECT_EQ(d["status"], json::parse(R"({"original": 200, "replay": 500, "same": false})"));
  EXPECT_EQ(d["headers"]["added"], json::parse(R"([{"name": "x-new", "value": "2"}])"));
  EXPECT_EQ(d["headers"]["removed"], json::parse(R"([{"name": "x-old", "value": "1"}])"));
  // Changed, and redacted as everywhere.
  EXPECT_EQ(d["headers"]["changed"],
            json::parse(R"([{"name": "set-cookie", "original": "[redacted]",
                             "replay": "[redacted]"}])"));
  EXPECT_EQ(d["body"]["same"], false);
  EXPECT_EQ(d["body"]["first_difference"], 4);
  EXPECT_EQ(d["body"]["lines"], json::parse(R"([{"op": " ", "line": "one"},
      {"op": "-", "line": "two"}, {"op": "+", "line": "2"}, {"op": " ", "line": "three"}])"));
  // Not a replay; unknown.
  EXPECT_NE(get(inspector, "/api/requests/http/ex_1/diff", 409)["msg"].get<std::string>().find(
                "not a replay"),
            std::string::npos);
  get(inspector, "/api/requests/http/ex_9/diff", 404);
}

TEST(Inspector, AnExchangeLargerThanTheRingIsNotKept) {
  InspectorOptions options;
  options.db_size = 1000;
  Inspector inspector(options);
  inspector.add(make_exchange("GET / HTTP/1.1\r\n\r\n", "", "HTTP/1.1 200 OK\r\n\r\n",
                              std::string(5000, 'y')));
  EXPECT_EQ(inspector.size(), 0u);
  EXPECT_EQ(inspector.evicted(), 1u);
}

TEST(Inspector, RedactsCredentialsInHeadersAndRaw) {
  Inspector inspector({});
  inspector.add(make_exchange(
      "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\ncookie: a=b\r\n\r\n", "",
      "HTTP/1.1 200 OK\r\nSet-Cookie: s=1\r\nContent-Length: 0\r\n\r\n", ""));
  const json e = get(inspector, "/api/requests/http/ex_1");
  EXPECT_EQ(e["request"]["headers"]["Authorization"], json::array({"[redacted]"}));
  EXPECT_EQ(e["request"]["headers"]["cookie"], json::array({"[redacted]"}));
  EXPECT_EQ(e["request"]["headers"]["Host"], json::array({"x"}));
  EXPECT_EQ(e["response"]["headers"]["Set-Cookie"], json::array({"[redacted]"}));
  EXPECT_EQ(e.dump().find("secret"), std::string::npos);
  EXPECT_EQ(e.dump().find(base64_encode("secret")), std::string::npos);
  EXPECT_EQ(e["request"]["raw"],
            base64_encode("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: [redacted]\r\ncookie: "
                          "[redacted]\r\n\r\n"));

  InspectorOptions open;
  open.redact = {};
  Inspector shown(open);
  shown.add(make_exchange("GET / HTTP/1.1\r\nAuthorization: Bearer secret\r\n\r\n", "",
                          "HTTP/1.1 200 OK\r\n\r\n", ""));
  EXPECT_EQ(get(shown, "/api/requests/http/ex_1")["request"]["headers"]["Authorization"],
            json::array({"Bearer secret"}));
}

TEST(Inspector, BodiesAreDechunkedAndClassified) {
  Inspector inspector({});
  inspector.add(make_exchange(
      "POST /j HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n",
      "{\"a\":1}", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", ""));
  const json e = get(inspector, "/api/requests/http/ex_1");
  EXPECT_EQ(e["request"]["body"]["kind"], "json");
  EXPECT_EQ(e["request"]["body"]["text"], "{\"a\":1}");
  // A chunked binary body: NULs and all.
  Inspector binary({});
  const std::string chunked = "3\r\n" + std::string{'\0', '\x01', '\x02'} + "\r\n0\r\n\r\n";
  binary.add(make_exchange("GET / HTTP/1.1\r\n\r\n", "",
                           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunked));
  const json b = get(binary, "/api/requests/http/ex_1");
  EXPECT_EQ(b["response"]["body"]["kind"], "binary");
  EXPECT_EQ(b["response"]["body"]["base64"], base64_encode(std::string("\x00\x01\x02", 3)));
  EXPECT_EQ(b["response"]["body"]["size"], 13);
  EXPECT_FALSE(b["response"]["body"].contains("text"));
}

TEST(Inspector, InterimResponsesStayInRawAndTheFinalHeadIsShown) {
  Inspector inspector({});
  inspector.add(make_exchange("POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", "",
                              "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n\r\n", ""));
  const json e = get(inspector, "/api/requests/http/ex_1");
  EXPECT_EQ(e["response"]["status_code"], 201);
  EXPECT_EQ(e["response"]["raw"],
            base64_encode("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n\r\n"));
}

TEST(Inspector, TunnelsAndStatus) {
  Inspector inspector({});
  inspector.set_tunnels({{"app.localhost", "http://app.localhost:8080", "http", "localhost:3000"}});
  inspector.set_address("127.0.0.1:4040");
  const json t = get(inspector, "/api/tunnels");
  ASSERT_EQ(t["tunnels"].size(), 1u);
  EXPECT_EQ(t["tunnels"][0]["public_url"], "http://app.localhost:8080");
  EXPECT_EQ(t["tunnels"][0]["proto"], "http");
  EXPECT_EQ(t["tunnels"][0]["config"]["addr"], "localhost:3000");
  const json s = get(inspector, "/api/status");
  EXPECT_EQ(s["inspector"]["address"], "127.0.0.1:4040");
  EXPECT_EQ(s["inspector"]["db_size"], 50 * 1024 * 1024);
  EXPECT_EQ(get(inspector, "/nope", 404)["status_code"], 404);
  EXPECT_EQ(inspector.handle_mutating("POST", "/api/tunnels").status, 405);
}

TEST(Inspector, Base64AndDechunk) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(dechunk("5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"), "hello world");
  EXPECT_EQ(dechunk("5\r\nhel"), "hel");  // cut at the cap
  EXPECT_EQ(dechunk("zz\r\n"), "");
}

}  // namespace
}  // namespace tunnel::agent

namespace tunnel::agent {
namespace {

TEST(InspectorReplay, AsItWasOrEdited) {
  Inspector inspector({});
  inspector.add(
      make_exchange("POST /a?x=1 HTTP/1.1\r\nHost: app\r\nX-Keep: k\r\nContent-Length: 5\r\n\r\n",
                    "hello", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", ""));
  auto plan = inspector.plan_replay(R"({"id": "ex_1"})");
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan.value().bytes,
            "POST /a?x=1 HTTP/1.1\r\nHost: app\r\nX-Keep: k\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(plan.value().local, "127.0.0.1:3000");
  EXPECT_EQ(plan.value().replay_of, "ex_1");
  EXPECT_EQ(plan.value().method, "POST");

  auto edited = inspector.plan_replay(
      R"({"id": "ex_1", "method": "PUT", "uri": "/b", "headers": {"X-New": "n", "X-Keep": null},
          "body": "changed!"})");
  ASSERT_TRUE(edited) << edited.error().message;
  EXPECT_EQ(edited.value().bytes,
            "PUT /b HTTP/1.1\r\nHost: app\r\nX-New: n\r\nContent-Length: 8\r\n\r\nchanged!");
  EXPECT_EQ(edited.value().method, "PUT");
  auto b64 = inspector.plan_replay(R"({"id": "ex_1", "body_base64": "AAEC"})");
  ASSERT_TRUE(b64) << b64.error().message;
  EXPECT_TRUE(b64.value().bytes.ends_with("Content-Length: 3\r\n\r\n" +
                                          std::string(3, '\0').replace(1, 2, "\x01\x02")));
}

// The API status of a refused replay: the error's kind, through problem_response().
int refused_status(const Inspector& inspector, std::string_view body) {
  auto plan = inspector.plan_replay(body);
  return plan ? 0 : problem_response(plan.error()).status;
}

TEST(InspectorReplay, RefusesWhatItCannotReplay) {
  InspectorOptions options;
  options.body_cap = 3;
  Inspector inspector(options);
  inspector.add(make_exchange("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", "hello",
                              "HTTP/1.1 200 OK\r\n\r\n", "", 3));
  auto cut = inspector.plan_replay(R"({"id": "ex_1"})");
  ASSERT_FALSE(cut);
  EXPECT_EQ(problem_response(cut.error()).status, 409);
  EXPECT_NE(cut.error().message.find("cut"), std::string::npos);
  EXPECT_TRUE(inspector.plan_replay(R"({"id": "ex_1", "body": "new"})"));
  EXPECT_EQ(refused_status(inspector, R"({"id": "ex_9"})"), 404);
  EXPECT_EQ(refused_status(inspector, "not json"), 400);
  EXPECT_EQ(refused_status(inspector, R"({"id": "ex_1", "body": "x", "uri": "/a b"})"), 400);
  EXPECT_EQ(refused_status(inspector, R"({"id": "ex_1", "body": "x", "headers": [1]})"), 400);
}

}  // namespace
}  // namespace tunnel::agent
