#include "agent/inspector_har.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace tunnel::agent {
namespace {

using nlohmann::json;

Exchange exchange(std::string request_head, std::string request_body, std::string response_head,
                  std::string response_body, std::size_t body_cap = 1024) {
  Exchange e;
  e.id = "ex_1";
  e.tunnel_name = "http://app.localhost:8080";
  e.local = "127.0.0.1:3000";
  e.start = std::chrono::system_clock::time_point(std::chrono::microseconds(1'800'000'000'123'456));
  ExchangeCapture& c = e.capture;
  c.body_cap = body_cap;
  c.request_raw = request_head;
  c.request_head_size = request_head.size();
  c.add_request_body(request_body.data(), request_body.size());
  const std::string response = response_head + response_body;
  c.add_response(response.data(), response.size(), false, response_head.size());
  c.opened = std::chrono::steady_clock::time_point(std::chrono::seconds(5));
  c.app_head = c.opened + std::chrono::microseconds(2'345);
  c.ended = c.opened + std::chrono::microseconds(3'456);
  return e;
}

std::vector<Exchange> sample() {
  std::vector<Exchange> out;
  out.push_back(exchange(
      "POST /api/users?page=2&q=a HTTP/1.1\r\nHost: app.localhost:8080\r\nContent-Type: "
      "application/json\r\nAuthorization: Bearer s3cret\r\nContent-Length: 11\r\n\r\n",
      "{\"a\": true}",
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nLocation: /api/users/7\r\n"
      "Content-Length: 8\r\n\r\n",
      "{\"id\":7}"));
  // Binary and chunked, cut at the cap.
  std::string blob;
  for (int i = 0; i < 300; ++i) blob += static_cast<char>(i);
  const std::string chunk = "12c\r\n" + blob + "\r\n0\r\n\r\n";
  out.push_back(exchange("GET /blob HTTP/1.1\r\nHost: app.localhost:8080\r\n\r\n", "",
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: "
                         "application/octet-stream\r\n\r\n",
                         chunk, 100));
  out.back().id = "ex_2";
  out.back().replay_of = "ex_1";
  // No response at all.
  out.push_back(exchange("GET /down HTTP/1.1\r\nHost: h\r\n\r\n", "", "", ""));
  out.back().capture.response_raw.clear();
  out.back().capture.response_head_size = 0;
  out.back().capture.app_head = {};
  out.back().error = "cannot reach the local app at 127.0.0.1:3000";
  out.back().id = "ex_3";
  return out;
}

json har_of(const std::vector<Exchange>& exchanges, bool redact = true) {
  std::vector<const Exchange*> list;
  list.reserve(exchanges.size());
  for (const auto& e : exchanges) list.push_back(&e);
  return json::parse(to_har(list, InspectorOptions{}, redact));
}

void expect_fields(const json& object, std::initializer_list<const char*> fields,
                   const std::string& where) {
  for (const char* f : fields) EXPECT_TRUE(object.contains(f)) << where << "." << f;
}

TEST(InspectorHar, HasEveryRequiredHar12Field) {
  const json har = har_of(sample());
  ASSERT_TRUE(har.contains("log"));
  const json& log = har["log"];
  EXPECT_EQ(log["version"], "1.2");
  expect_fields(log, {"version", "creator", "entries"}, "log");
  expect_fields(log["creator"], {"name", "version"}, "log.creator");
  ASSERT_EQ(log["entries"].size(), 3u);
  for (const json& e : log["entries"]) {
    expect_fields(e, {"startedDateTime", "time", "request", "response", "cache", "timings"},
                  "entry");
    expect_fields(e["request"],
                  {"method", "url", "httpVersion", "cookies", "headers", "queryString",
                   "headersSize", "bodySize"},
                  "request");
    expect_fields(e["response"],
                  {"status", "statusText", "httpVersion", "cookies", "headers", "content",
                   "redirectURL", "headersSize", "bodySize"},
                  "response");
    expect_fields(e["response"]["content"], {"size", "mimeType"}, "content");
    expect_fields(e["timings"], {"send", "wait", "receive"}, "timings");
    EXPECT_TRUE(e["time"].is_number());
    for (const json& h : e["request"]["headers"]) expect_fields(h, {"name", "value"}, "header");
  }
  const json& post = log["entries"][0];
  EXPECT_EQ(post["startedDateTime"], "2027-01-15T08:00:00.123456Z");
  EXPECT_DOUBLE_EQ(post["time"].get<double>(), 3.456);
  EXPECT_DOUBLE_EQ(post["timings"]["wait"].get<double>(), 2.345);
  EXPECT_EQ(post["request"]["url"], "http://app.localhost:8080/api/users?page=2&q=a");
  EXPECT_EQ(post["request"]["queryString"],
            json::parse(R"([{"name":"page","value":"2"},{"name":"q","value":"a"}])"));
  EXPECT_EQ(post["request"]["postData"]["text"], "{\"a\": true}");
  EXPECT_EQ(post["request"]["postData"]["mimeType"], "application/json");
  EXPECT_EQ(post["request"]["headers"][2],
            json::parse(R"({"name":"Authorization","value":"[redacted]"})"));
  EXPECT_EQ(post["response"]["status"], 201);
  EXPECT_EQ(post["response"]["statusText"], "Created");
  EXPECT_EQ(post["response"]["redirectURL"], "/api/users/7");
  EXPECT_EQ(post["response"]["content"]["text"], "{\"id\":7}");
  const json& blob = log["entries"][1];
  EXPECT_EQ(blob["response"]["content"]["encoding"], "base64");
  EXPECT_EQ(blob["response"]["bodySize"], 312);  // the chunked wire bytes, all of them
  EXPECT_EQ(blob["_replay_of"], "ex_1");
  EXPECT_EQ(log["entries"][2]["response"]["status"], 0);
  EXPECT_EQ(log["entries"][2]["comment"], "cannot reach the local app at 127.0.0.1:3000");
  // Asked otherwise, credentials are shown.
  EXPECT_EQ(har_of(sample(), false)["log"]["entries"][0]["request"]["headers"][2]["value"],
            "Bearer s3cret");
}

TEST(InspectorHar, RoundTripsIdentically) {
  const json first = har_of(sample(), false);
  auto imported = from_har(first.dump(), "", 1024);
  ASSERT_TRUE(imported) << imported.error().message;
  ASSERT_EQ(imported.value().size(), 3u);
  EXPECT_EQ(imported.value()[0].local, "127.0.0.1:3000");  // replayable where it went
  for (std::size_t i = 0; i < imported.value().size(); ++i) {
    imported.value()[i].id = "ex_" + std::to_string(i + 1);
  }
  const json second = har_of(imported.value(), false);
  EXPECT_EQ(second, first) << first.dump(1) << "\n---\n" << second.dump(1);
}

TEST(InspectorHar, ImportNamesWhatIsWrong) {
  EXPECT_FALSE(from_har("not json", "", 1024));
  EXPECT_FALSE(from_har(R"({"log": {}})", "", 1024));
  auto missing = from_har(R"({"log": {"entries": [{"time": 1}]}})", "", 1024);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("entries[0].startedDateTime"), std::string::npos);
  auto bad_method = from_har(
      R"({"log": {"entries": [{"startedDateTime": "2026-12-07T10:00:00Z", "time": 1,
          "request": {"method": "GE T", "url": "http://h/"}, "response": {"status": 200}}]}})",
      "", 1024);
  ASSERT_FALSE(bad_method);
  EXPECT_NE(bad_method.error().message.find("entries[0].request"), std::string::npos);
  // A minimal entry from another tool: replays to the given local address.
  auto minimal = from_har(
      R"({"log": {"entries": [{"startedDateTime": "2026-12-07T10:00:00.5Z", "time": 1,
          "request": {"method": "GET", "url": "https://h.example/x?y=1", "headers": []},
          "response": {"status": 200, "content": {"text": "aGk=", "encoding": "base64"}}}]}})",
      "127.0.0.1:3000", 1024);
  ASSERT_TRUE(minimal) << minimal.error().message;
  EXPECT_EQ(minimal.value()[0].local, "127.0.0.1:3000");
  EXPECT_EQ(minimal.value()[0].capture.request_raw, "GET /x?y=1 HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(minimal.value()[0].capture.response_raw.ends_with("\r\n\r\nhi"));
}

}  // namespace
}  // namespace tunnel::agent
