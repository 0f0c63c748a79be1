#include "observability/log.hpp"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

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
  EXPECT_EQ(init_logging("xml", "info"), "unknown --log-format \"xml\" (expected text or json)");
  EXPECT_EQ(init_logging("json", "verbose"),
            "unknown --log-level \"verbose\" (expected trace, debug, info, warn, error, critical "
            "or off)");
  EXPECT_EQ(init_logging("text", "INFO"), "");
  EXPECT_EQ(init_logging("text", "warning"), "");
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::warn);
}

TEST(Log, JsonLoggerWritesParseableLines) {
  ASSERT_EQ(init_logging("json", "debug"), "");
  testing::internal::CaptureStderr();
  spdlog::debug("route {} -> \"{}\"", "app.localhost", "tab\there\xFF");
  spdlog::trace("not shown at debug level");
  spdlog::warn("second");
  const std::string out = testing::internal::GetCapturedStderr();
  ASSERT_EQ(init_logging("text", "info"), "");

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
