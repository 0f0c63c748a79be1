// tunnel-core replay's pure parts: filters, rates, loading files (bad lines named by line),
// the request sent again, the differences and the percentiles.
#include "core/replay.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace tunnel::core {
namespace {

namespace fs = std::filesystem;

RecordedExchange exchange(std::string method, std::string target, int status) {
  RecordedExchange e;
  e.method = std::move(method);
  e.target = std::move(target);
  e.status = status;
  return e;
}

TEST(Replay, FiltersByMethodPathAndStatus) {
  ReplayFilter f;
  ASSERT_TRUE(parse_filter("method=post", f));
  ASSERT_TRUE(parse_filter("path=/api/*/items", f));
  ASSERT_TRUE(parse_filter("status=2xx", f));
  EXPECT_TRUE(f.matches(exchange("POST", "/api/v1/items?x=1", 201)));
  EXPECT_FALSE(f.matches(exchange("GET", "/api/v1/items", 201)));
  EXPECT_FALSE(f.matches(exchange("POST", "/api/v1/other", 201)));
  EXPECT_FALSE(f.matches(exchange("POST", "/api/v1/items", 500)));
  ReplayFilter prefix;
  ASSERT_TRUE(parse_filter("path=/static", prefix));
  ASSERT_TRUE(parse_filter("status=404", prefix));
  EXPECT_TRUE(prefix.matches(exchange("GET", "/static/a.css", 404)));
  EXPECT_FALSE(prefix.matches(exchange("GET", "/static/a.css", 200)));
  EXPECT_FALSE(prefix.matches(exchange("GET", "/", 404)));
  ReplayFilter bad;
  EXPECT_EQ(parse_filter("status=abc", bad).error().message,
            "--filter \"status=abc\": a status is 100 to 599, or 1xx to 5xx");
  EXPECT_FALSE(parse_filter("host=x", bad));
  EXPECT_FALSE(parse_filter("method", bad));
  EXPECT_FALSE(parse_filter("path=api", bad));
}

TEST(Replay, RatesAreBounded) {
  EXPECT_EQ(parse_rate("max").value().kind, ReplayRate::Kind::kMax);
  EXPECT_EQ(parse_rate("original").value().kind, ReplayRate::Kind::kOriginal);
  EXPECT_DOUBLE_EQ(parse_rate("2.5/s").value().per_second, 2.5);
  EXPECT_FALSE(parse_rate("0/s"));
  EXPECT_FALSE(parse_rate("20000/s"));
  EXPECT_FALSE(parse_rate("fast"));
  EXPECT_FALSE(parse_rate("/s"));
}

TEST(Replay, LoadsRotatedFilesInOrderAndNamesBadLines) {
  const fs::path dir = fs::temp_directory_path() / ("replay-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
  };
  write("current.jsonl", to_json_line(exchange("GET", "/3", 200)));
  write("20260101T000000Z-000001.jsonl", to_json_line(exchange("GET", "/1", 200)) +
                                             "{\"method\": 1}\n\n" +
                                             to_json_line(exchange("GET", "/2", 200)));
  write("notes.txt", "ignored");
  const auto loaded = load_recordings({dir.string()});
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_EQ(loaded.value().exchanges.size(), 3u);
  EXPECT_EQ(loaded.value().exchanges[0].target, "/1");
  EXPECT_EQ(loaded.value().exchanges[2].target, "/3");
  ASSERT_EQ(loaded.value().bad.size(), 1u);
  EXPECT_EQ(loaded.value().bad[0],
            (dir / "20260101T000000Z-000001.jsonl").string() + ":2: \"time\" is missing");
  EXPECT_FALSE(load_recordings({(dir / "missing.jsonl").string()}));
  fs::remove_all(dir);
}

TEST(Replay, TheRequestDropsFramingRedactedFieldsAndHost) {
  RecordedExchange e = exchange("POST", "/x", 200);
  e.request_headers = {{"Host", "app.example"},
                       {"Authorization", "[redacted]"},
                       {"Transfer-Encoding", "chunked"},
                       {"X-A", "1"},
                       {"X-A", "2"}};
  e.request_body.data = "hello";
  const ReplayRequest r = replay_request(e, false);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/x");
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.headers, (HeaderList{{"X-A", "1"}, {"X-A", "2"}, {"Content-Length", "5"}}));
  EXPECT_EQ(replay_request(e, true).headers.front(),
            (std::pair<std::string, std::string>{"Host", "app.example"}));
}

TEST(Replay, DifferencesNameStatusFirstDifferingByteAndHeaders) {
  RecordedExchange e = exchange("GET", "/", 200);
  e.response_body.data = "hello world";
  e.response_headers = {{"Content-Type", "text/plain"}};
  ReplayedResponse same{200, {{"content-type", "text/plain"}}, "hello world"};
  EXPECT_TRUE(differences(e, same, {"Content-Type"}).empty());
  ReplayedResponse changed{500, {{"Content-Type", "text/html"}}, "hello World!"};
  EXPECT_EQ(differences(e, changed, {"Content-Type"}),
            (std::vector<std::string>{
                "status 200 -> 500",
                "body differs at byte 6: recorded \"hello world\" (11 bytes), replayed \"hello "
                "World!\" (12 "
                "bytes)",
                "Content-Type \"text/plain\" -> \"text/html\""}));
  e.response_body.cut = true;  // a cut recording compares its prefix only
  ReplayedResponse longer{200, {{"Content-Type", "text/plain"}}, "hello world and more"};
  EXPECT_TRUE(differences(e, longer, {"Content-Type"}).empty());
  e.request_body = RecordedBody{"abc", 10, true};
  EXPECT_EQ(differences(e, changed, {}).back(),
            "(the recorded request body was cut: 3 of its 10 bytes were sent)");
  ReplayedResponse none;
  none.error = "connecting: refused";
  EXPECT_EQ(differences(e, none, {}), std::vector<std::string>{"no response: connecting: refused"});
}

TEST(Replay, PercentilesAreNearestRank) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 50);
  EXPECT_DOUBLE_EQ(percentile(v, 95), 95);
  EXPECT_DOUBLE_EQ(percentile(v, 99), 99);
  EXPECT_DOUBLE_EQ(percentile({}, 50), 0);
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
}

}  // namespace
}  // namespace tunnel::core
