#include "observability/log.hpp"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/result_testing.hpp"

namespace tunnel::observability {
namespace {

std::string json_string(std::string_view text) {
  std::string out;
  append_json_string(out, text);
  return out;
}

TEST(Log, EscapesJsonSpecialCharacters) {
  EXPECT_EQ(json_string(""), R"("")");
  EXPECT_EQ(json_string("plain text"), R"("plain text")");
  EXPECT_EQ(json_string("say \"hi\" \\ bye"), R"("say \"hi\" \\ bye")");
  EXPECT_EQ(json_string("a\nb\rc\td"), R"("a\nb\rc\td")");
  EXPECT_EQ(json_string(std::string_view("\x00\x01\x1f\x7f", 4)), R"("\u0000\u0001\u001f\u007f")");
  EXPECT_EQ(json_string("</script>"), R"("</script>")");
}

TEST(Log, JsonEscapesC1Controls) {
  EXPECT_EQ(json_string("a\xC2\x9B"
                        "31mb\xC2\x80\xC2\x9F\xC2\xA0"),
            R"("a\u009b31mb\u0080\u009f)"
            "\xC2\xA0\"");
}

TEST(Log, TextEscapeWritesControlCharactersAsEscapes) {
  EXPECT_EQ(escape_for_text_log(""), "");
  EXPECT_EQ(escape_for_text_log("plain \\ text \"quoted\""), "plain \\ text \"quoted\"");
  EXPECT_EQ(escape_for_text_log("a\nb\rc\td"), R"(a\nb\rc\td)");
  EXPECT_EQ(escape_for_text_log("\x1b[31mred\x1b[0m"), R"(\x1b[31mred\x1b[0m)");
  EXPECT_EQ(escape_for_text_log(std::string_view("\x00\x01\x1f\x7f", 4)), R"(\x00\x01\x1f\x7f)");
  // C1 controls as UTF-8; other UTF-8, and bytes that are not UTF-8, stay as they are.
  EXPECT_EQ(escape_for_text_log("\xC2\x9B"
                                "2J \xC2\x80"),
            R"(\xc2\x9b2J \xc2\x80)");
  EXPECT_EQ(escape_for_text_log("caf\xC3\xA9 \xC2\xA0 \xC2\xB0 \xFF \xC2"),
            "caf\xC3\xA9 \xC2\xA0 \xC2\xB0 \xFF \xC2");
}

// Long messages are scanned 16 bytes at a time: a control character is found at any offset,
// in any block, and the bytes around it are kept.
TEST(Log, TextEscapeFindsControlCharactersAtEveryOffset) {
  for (size_t at = 0; at < 40; ++at) {
    for (const std::string_view bad : {"\n", "\x7f", "\xC2\x9B"}) {
      std::string text(40, 'a');
      text.replace(at, 1, bad);
      std::string expected(40, 'a');
      expected.replace(at, 1, bad == "\n" ? "\\n" : bad == "\x7f" ? "\\x7f" : "\\xc2\\x9b");
      EXPECT_EQ(escape_for_text_log(text), expected) << at;
    }
    std::string latin(40, 'a');
    latin.replace(at, 1, "\xC2\xB0");  // U+00B0: kept
    EXPECT_EQ(escape_for_text_log(latin), latin) << at;
  }
}

// What issue 25 found: a JWT header with a newline in "alg" (or an agent id with one) wrote a
// line of its own into the text log.
TEST(Log, TextLoggerCannotBeMadeToWriteAForgedLine) {
  ASSERT_TRUE(common::is_ok(init_logging("text", "info")));
  testing::internal::CaptureStderr();
  spdlog::warn("agent {}: unsupported JWT alg \"{}\"", "laptop\r\n",
               "HS256\n2026-01-01T00:00:00.000 info  agent admin authenticated\x1b[2K");
  spdlog::info("second");
  const std::string out = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(common::is_ok(init_logging("text", "info")));
  std::vector<std::string> lines;
  for (size_t from = 0, nl; (nl = out.find('\n', from)) != std::string::npos; from = nl + 1) {
    lines.push_back(out.substr(from, nl - from));
  }
  ASSERT_EQ(lines.size(), 2u) << out;
  EXPECT_TRUE(lines[0].ends_with(
      R"(agent laptop\r\n: unsupported JWT alg "HS256\n2026-01-01T00:00:00.000 info  agent admin authenticated\x1b[2K")"))
      << lines[0];
  EXPECT_EQ(lines[0].find('\x1b'), std::string::npos) << lines[0];
  EXPECT_TRUE(lines[1].ends_with(" second")) << lines[1];
  EXPECT_NE(lines[1].find("info"), std::string::npos) << lines[1];
}

TEST(Log, KeepsValidUtf8AndReplacesInvalidBytes) {
  EXPECT_EQ(json_string("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\x80"),
            "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\x80\"");
  EXPECT_EQ(json_string("\xFF"), R"("\ufffd")");
  EXPECT_EQ(json_string("a\xC3"), R"("a\ufffd")");                    // truncated sequence
  EXPECT_EQ(json_string("\xC0\xAF"), R"("\ufffd\ufffd")");            // overlong '/'
  EXPECT_EQ(json_string("\xED\xA0\x80"), R"("\ufffd\ufffd\ufffd")");  // surrogate
  EXPECT_EQ(json_string("\xF4\x90\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")");  // > U+10FFFF
  EXPECT_EQ(json_string("\xE2\x82"
                        "x"),
            R"("\ufffd\ufffdx")");
}

TEST(Log, JsonRecordIsOneLineWithTimeLevelAndMessage) {
  const auto time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1767323045678));
  EXPECT_EQ(format_json_record(time, "info", "agent \"laptop\" connected\nfrom 10.0.0.1"),
            "{\"time\":\"2026-01-02T03:04:05.678Z\",\"level\":\"info\","
            "\"msg\":\"agent \\\"laptop\\\" connected\\nfrom 10.0.0.1\"}\n");
}

TEST(Log, RejectsUnknownFormatAndLevel) {
  EXPECT_EQ(common::error_of(init_logging("xml", "info")),
            "unknown --log-format \"xml\" (expected text or json)");
  EXPECT_EQ(common::error_of(init_logging("json", "verbose")),
            "unknown --log-level \"verbose\" (expected trace, debug, info, warn, error, critical "
            "or off)");
  EXPECT_TRUE(common::is_ok(init_logging("text", "INFO")));
  EXPECT_TRUE(common::is_ok(init_logging("text", "warning")));
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::warn);
}

TEST(Log, JsonLoggerWritesParseableLines) {
  ASSERT_TRUE(common::is_ok(init_logging("json", "debug")));
  testing::internal::CaptureStderr();
  spdlog::debug("route {} -> \"{}\"", "app.localhost", "tab\there\xFF");
  spdlog::trace("not shown at debug level");
  spdlog::warn("second");
  const std::string out = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(common::is_ok(init_logging("text", "info")));

  const auto newline = out.find('\n');
  ASSERT_NE(newline, std::string::npos) << out;
  const auto first = nlohmann::json::parse(out.substr(0, newline));
  EXPECT_EQ(first["level"], "debug");
  EXPECT_EQ(first["msg"], "route app.localhost -> \"tab\there\xEF\xBF\xBD\"");
  EXPECT_EQ(first["time"].get<std::string>().size(), 24u);
  const auto second = nlohmann::json::parse(out.substr(newline + 1));
  EXPECT_EQ(second["level"], "warn");
  EXPECT_EQ(second["msg"], "second");
  EXPECT_EQ(out.find("not shown"), std::string::npos);
}

}  // namespace
}  // namespace tunnel::observability

namespace tunnel::observability {
namespace {

// The process's level is global: each test starts at info and leaves it there.
class LogLevelControlTest : public ::testing::Test {
 protected:
  LogLevelControlTest() { spdlog::set_level(spdlog::level::info); }
  ~LogLevelControlTest() override { spdlog::set_level(spdlog::level::info); }
  SimulatedTimeSource time;
};

TEST_F(LogLevelControlTest, ATemporaryLevelLastsItsTimeThenTheConfiguredOneReturns) {
  LogLevelControl control(time);
  EXPECT_EQ(control.state_json(), R"({"level":"info","configured":"info","temporary":false})"
                                  "\n");
  ASSERT_TRUE(common::is_ok(control.set("debug", std::chrono::minutes(5), "test")));
  EXPECT_EQ(spdlog::get_level(), spdlog::level::debug);
  EXPECT_EQ(control.state_json(),
            R"({"level":"debug","configured":"info","temporary":true,"remaining_seconds":300})"
            "\n");
  time.advance(std::chrono::seconds(299));
  control.expire();
  EXPECT_EQ(spdlog::get_level(), spdlog::level::debug);
  time.advance(std::chrono::seconds(1));
  control.expire();
  EXPECT_EQ(spdlog::get_level(), spdlog::level::info);
  EXPECT_EQ(control.state_json(), R"({"level":"info","configured":"info","temporary":false})"
                                  "\n");
}

TEST_F(LogLevelControlTest, ResetAndToggleGoBackAtOnce) {
  LogLevelControl control(time);
  control.reset("nothing to reset");
  EXPECT_EQ(spdlog::get_level(), spdlog::level::info);
  ASSERT_TRUE(common::is_ok(control.set("WARNING", std::chrono::seconds(10), "test")));
  EXPECT_EQ(spdlog::get_level(), spdlog::level::warn);
  control.reset("test");
  EXPECT_EQ(spdlog::get_level(), spdlog::level::info);

  control.toggle("SIGUSR1");
  EXPECT_EQ(spdlog::get_level(), spdlog::level::debug);
  time.advance(LogLevelControl::kToggleDuration - std::chrono::seconds(1));
  control.expire();
  EXPECT_EQ(spdlog::get_level(), spdlog::level::debug);
  control.toggle("SIGUSR1");
  EXPECT_EQ(spdlog::get_level(), spdlog::level::info);
}

TEST_F(LogLevelControlTest, RefusesAnUnknownLevelAndADurationOutOfBounds) {
  LogLevelControl control(time);
  auto bad = control.set("verbose", std::chrono::seconds(10), "test");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message,
            "unknown log level \"verbose\" (expected trace, debug, info, warn, error, critical or "
            "off)");
  bad = control.set("debug", std::chrono::seconds(0), "test");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "the duration must be between 1s and 3600s, got 0s");
  EXPECT_FALSE(control.set("debug", std::chrono::hours(2), "test"));
  EXPECT_EQ(spdlog::get_level(), spdlog::level::info);
}

TEST_F(LogLevelControlTest, SelectorsTurnOnOneTunnelOrAgentForAWhile) {
  LogLevelControl control(time);
  EXPECT_FALSE(log_detail("app.example.com", "a1"));
  ASSERT_TRUE(common::is_ok(control.select(LogLevelControl::SelectorKind::kTunnel,
                                           "app.example.com", std::chrono::seconds(60), "test")));
  ASSERT_TRUE(common::is_ok(control.select(LogLevelControl::SelectorKind::kAgent, "laptop",
                                           std::chrono::seconds(10), "test")));
  EXPECT_TRUE(log_detail("app.example.com", "a1"));
  EXPECT_TRUE(log_detail("other.example.com", "laptop"));
  EXPECT_FALSE(log_detail("other.example.com", "a1"));
  EXPECT_FALSE(log_detail("", ""));
  EXPECT_EQ(spdlog::get_level(), spdlog::level::info);  // the other lines stay at info
  EXPECT_EQ(control.state_json(),
            R"({"level":"info","configured":"info","temporary":false,"selectors":[)"
            R"({"tunnel":"app.example.com","remaining_seconds":60},)"
            R"({"agent":"laptop","remaining_seconds":10}]})"
            "\n");
  time.advance(std::chrono::seconds(10));
  control.expire();
  EXPECT_FALSE(log_detail("other.example.com", "laptop"));
  EXPECT_TRUE(log_detail("app.example.com", "a1"));
  control.reset("test");
  EXPECT_FALSE(log_detail("app.example.com", "a1"));
  // At debug, every detailed line is on.
  ASSERT_TRUE(common::is_ok(control.set("debug", std::chrono::seconds(5), "test")));
  EXPECT_TRUE(log_detail("other.example.com", ""));
  control.reset("test");
  // Bounded: at most kMaxSelectors at once; renewing one does not count twice.
  for (std::size_t i = 0; i < LogLevelControl::kMaxSelectors; ++i) {
    ASSERT_TRUE(
        common::is_ok(control.select(LogLevelControl::SelectorKind::kTunnel,
                                     "t" + std::to_string(i), std::chrono::seconds(5), "test")));
  }
  EXPECT_TRUE(common::is_ok(control.select(LogLevelControl::SelectorKind::kTunnel, "t0",
                                           std::chrono::seconds(5), "test")));
  const auto full = control.select(LogLevelControl::SelectorKind::kAgent, "one-more",
                                   std::chrono::seconds(5), "test");
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().message,
            "16 selectors are on already (the most at once); DELETE /debug/log ends them");
  EXPECT_FALSE(
      control.select(LogLevelControl::SelectorKind::kAgent, "", std::chrono::seconds(5), "test"));
  control.reset("test");
}

}  // namespace
}  // namespace tunnel::observability
