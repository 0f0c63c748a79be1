// Recording on the core without sockets: the filter's copy of an exchange (redaction, interim
// heads, chunked bodies cut at the cap), the line format and its errors, rotation and pruning
// on a simulated clock, skips when the queue is full.
#include "core/edge/recording.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/edge/http_filters.hpp"

namespace tunnel::core {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "recording-test-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::set<std::string> files(const std::string& sub) const {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(path + "/" + sub, ec)) {
      out.insert(e.path().filename().string());
    }
    return out;
  }
};

std::vector<std::string> lines_of(const std::string& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

struct Fixture {
  SimulatedTimeSource time;
  observability::Registry registry;
  TempDir dir;
  RecordingRule rule;
  std::shared_ptr<Recorder> recorder;
  std::shared_ptr<TunnelRecording> tunnel;
  std::shared_ptr<const FilterChain> chain;

  explicit Fixture(std::size_t queue = 16) {
    rule.hosts = {"app.example"};
    rule.body_cap = 8;
    Recorder::Options options;
    options.root = dir.path;
    options.queue_entries = queue;
    recorder = std::make_shared<Recorder>(options, time, registry, /*start=*/false);
    tunnel = recorder->tunnel("app.example", rule);
    chain = tunnel_filters(protocol::TunnelRequest{}, nullptr, nullptr,
                           std::make_shared<RecordingFilter>(recorder, tunnel))
                .value();
  }
  std::uint64_t counter(const char* name) {
    return registry.counter(name, "", {{"tunnel", "app.example"}}).value();
  }
};

struct Request {
  http::RequestHead head;
  Decision decision;
  std::string prefix;
  std::string id = "req-1";
  FilterRequest filtered{head, decision, "192.0.2.7:5000", "", false, prefix};
  Request(std::string method, std::string target, std::vector<http::Header> fields) {
    head.method = std::move(method);
    head.target = std::move(target);
    head.headers = std::move(fields);
    decision.host = "app.example";
    filtered.request_id = &id;
  }
};

// One exchange through the chain: head, body pieces, response bytes, complete.
void run_exchange(const FilterChain& chain, Request& r, std::vector<std::string> body,
                  std::vector<std::string> response, int status) {
  ASSERT_TRUE(chain.request_head(r.filtered).proceed());
  for (const auto& piece : body) {
    ASSERT_TRUE(chain.request_body(r.filtered, std::span(piece.data(), piece.size())).proceed());
  }
  for (const auto& piece : response) {
    chain.response_body(r.filtered, std::span(piece.data(), piece.size()));
  }
  chain.complete(r.filtered, ExchangeSummary{status, 0, 0, 0.0125, true, true});
}

TEST(Recording, TheFilterRecordsRedactedHeadsAndBodiesCutAtTheCap) {
  Fixture f;
  ASSERT_TRUE(f.chain->wants(hook::kRequestBody | hook::kResponseBody | hook::kComplete));
  Request r("POST", "/upload?x=1",
            {{"Host", "app.example"},
             {"authorization", "Bearer secret"},
             {"Cookie", "a=b"},
             {"Transfer-Encoding", "chunked"}});
  run_exchange(*f.chain, r, {"5\r\nhello\r\n", "6\r\n world\r\n0\r\n\r\n"},
               {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nSet-Cookie: s=1\r\n"
                "Content-Length: 4\r\n\r\nab",
                "cd"},
               201);
  EXPECT_EQ(f.recorder->write_pending(), 1u);
  const auto lines = lines_of(f.dir.path + "/app.example/current.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find("secret"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].find("a=b"), std::string::npos);
  EXPECT_EQ(lines[0].find("s=1"), std::string::npos);
  const auto parsed = parse_record_line(lines[0]);
  ASSERT_TRUE(parsed) << parsed.error().message;
  const RecordedExchange& e = parsed.value();
  EXPECT_EQ(e.tunnel, "app.example");
  EXPECT_EQ(e.id, "req-1");
  EXPECT_EQ(e.client, "192.0.2.7:5000");
  EXPECT_EQ(e.method, "POST");
  EXPECT_EQ(e.target, "/upload?x=1");
  EXPECT_EQ(e.time, f.time.system_time());
  ASSERT_EQ(e.request_headers.size(), 4u);
  EXPECT_EQ(e.request_headers[1],
            (std::pair<std::string, std::string>{"authorization", "[redacted]"}));
  EXPECT_EQ(e.request_headers[2].second, "[redacted]");
  EXPECT_EQ(e.request_body.data, "hello wo");  // dechunked, cut at 8
  EXPECT_TRUE(e.request_body.cut);
  EXPECT_EQ(e.request_body.size, 26u);  // relayed bytes, framing included
  EXPECT_EQ(e.status, 201);
  EXPECT_EQ(e.reason, "Created");  // the interim 100 is not the response
  ASSERT_EQ(e.response_headers.size(), 2u);
  EXPECT_EQ(e.response_headers[0].second, "[redacted]");
  EXPECT_EQ(e.response_body.data, "abcd");
  EXPECT_FALSE(e.response_body.cut);
  EXPECT_EQ(e.response_body.size, 4u);
  EXPECT_DOUBLE_EQ(e.duration_ms, 12.5);
  EXPECT_TRUE(e.complete);
  EXPECT_EQ(f.counter("tunnel_recording_written_total"), 1u);
  EXPECT_EQ(f.counter("tunnel_recording_bytes_total"), lines[0].size() + 1);
}

TEST(Recording, ARequestRefusedBeforeTheFilterIsNotRecorded) {
  Fixture f;
  Request r("GET", "/", {});
  f.chain->complete(r.filtered, ExchangeSummary{429});
  EXPECT_EQ(f.recorder->write_pending(), 0u);
}

TEST(Recording, AFullQueueSkipsAndCountsWithoutWaiting) {
  Fixture f(/*queue=*/2);
  for (int i = 0; i < 5; ++i) {
    Request r("GET", "/" + std::to_string(i), {});
    run_exchange(*f.chain, r, {}, {"HTTP/1.1 204 No Content\r\n\r\n"}, 204);
  }
  EXPECT_EQ(f.counter("tunnel_recording_skipped_total"), 3u);
  EXPECT_EQ(f.recorder->write_pending(), 2u);
  const auto lines = lines_of(f.dir.path + "/app.example/current.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(parse_record_line(lines[1]).value().target, "/1");
  EXPECT_EQ(f.counter("tunnel_recording_written_total"), 2u);
}

TEST(Recording, FilesRotateAtTheirSizeAndAgeAndOldOnesAreDeleted) {
  SimulatedTimeSource time;
  TempDir dir;
  RecordingRule rule;
  rule.max_file_size = 100;
  rule.max_file_age = std::chrono::minutes(10);
  rule.max_files = 2;
  rule.max_age = std::chrono::hours(1);
  RecordingFiles files(dir.path + "/t", rule, time);
  const std::string line(40, 'x');
  ASSERT_TRUE(files.write(line + "\n", {}));
  ASSERT_TRUE(files.write(line + "\n", {}));
  EXPECT_EQ(dir.files("t"), std::set<std::string>{"current.jsonl"});
  ASSERT_TRUE(files.write(line + "\n", {}));  // 123 bytes would pass 100: rotate first
  EXPECT_EQ(dir.files("t"),
            (std::set<std::string>{"20260101T000000Z-000001.jsonl", "current.jsonl"}));
  EXPECT_EQ(lines_of(dir.path + "/t/20260101T000000Z-000001.jsonl").size(), 2u);
  EXPECT_EQ(lines_of(dir.path + "/t/current.jsonl").size(), 1u);

  time.advance(std::chrono::minutes(9));
  files.tick();
  EXPECT_EQ(dir.files("t").size(), 2u);
  time.advance(std::chrono::minutes(1));  // the current file is 10 minutes old
  files.tick();
  EXPECT_EQ(dir.files("t"), (std::set<std::string>{"20260101T000000Z-000001.jsonl",
                                                   "20260101T001000Z-000002.jsonl"}));
  ASSERT_TRUE(files.write(line + "\n", {}));
  time.advance(std::chrono::minutes(10));
  ASSERT_TRUE(files.write(line + "\n", {}));  // by age: a third rotated file, the first goes
  EXPECT_EQ(dir.files("t"),
            (std::set<std::string>{"20260101T001000Z-000002.jsonl", "20260101T002000Z-000003.jsonl",
                                   "current.jsonl"}));
  time.advance(std::chrono::minutes(50));  // the second is now 1h10m old, the third 1h
  files.tick();
  EXPECT_EQ(dir.files("t"), (std::set<std::string>{"20260101T002000Z-000003.jsonl",
                                                   "20260101T011000Z-000004.jsonl"}));
}

TEST(Recording, AFileThatTakesNoBytesFailsAfterTheStallInsteadOfBlocking) {
  SimulatedTimeSource time;
  TempDir dir;
  fs::create_directories(dir.path + "/t");
  const std::string fifo = dir.path + "/t/current.jsonl";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // never reads
  ASSERT_GE(reader, 0);
  RecordingFiles files(dir.path + "/t", RecordingRule{}, time);
  const std::string line(64 * 1024, 'x');
  bool failed = false;
  for (int i = 0; i < 4 && !failed; ++i) failed = !files.write(line, {});
  EXPECT_TRUE(failed);
  ::close(reader);
}

TEST(Recording, BadLinesSayWhatIsWrong) {
  RecordedExchange e;
  e.method = "GET";
  e.target = "/";
  std::string good = to_json_line(e);
  good.pop_back();
  EXPECT_TRUE(parse_record_line(good));
  EXPECT_EQ(parse_record_line("{").error().message, "not a JSON object");
  EXPECT_EQ(parse_record_line("[1]").error().message, "not a JSON object");
  auto without = [&](const std::string& key) {
    auto j = nlohmann::json::parse(good);
    j.erase(key);
    return parse_record_line(j.dump()).error().message;
  };
  EXPECT_EQ(without("method"), "\"method\" is missing");
  EXPECT_EQ(without("request"), "\"request\" is missing or not an object");
  auto j = nlohmann::json::parse(good);
  j["response"]["body"]["data"] = "!!";
  EXPECT_EQ(parse_record_line(j.dump()).error().message, "\"response.body.data\" is not base64");
  j = nlohmann::json::parse(good);
  j["status"] = "200";
  EXPECT_EQ(parse_record_line(j.dump()).error().message, "\"status\" has the wrong type");
  j = nlohmann::json::parse(good);
  j["time"] = "yesterday";
  EXPECT_EQ(parse_record_line(j.dump()).error().message, "\"time\" is not a UTC time");
}

TEST(Recording, RulesMatchHostnamePatterns) {
  RecordingConfig config;
  config.tunnels.push_back(RecordingRule{.hosts = {"app.example.com"}});
  config.tunnels.push_back(RecordingRule{.hosts = {"*.staging.example.com"}});
  EXPECT_EQ(config.rule_for("app.example.com"), &config.tunnels[0]);
  EXPECT_EQ(config.rule_for("a.staging.example.com"), &config.tunnels[1]);
  EXPECT_EQ(config.rule_for("staging.example.com"), nullptr);
  EXPECT_EQ(config.rule_for("xstaging.example.com"), nullptr);
  EXPECT_EQ(config.rule_for("other.example.com"), nullptr);
  config.tunnels.push_back(RecordingRule{.hosts = {"*"}});
  EXPECT_EQ(config.rule_for("other.example.com"), &config.tunnels[2]);
}

}  // namespace
}  // namespace tunnel::core
