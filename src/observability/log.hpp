// Process logging on spdlog: human-readable text or one JSON object per line, to stderr.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace tunnel::observability {

// Replaces the default spdlog logger. `format` is "text" or "json"; `level` is one of trace,
// debug, info, warn (or warning), error, critical, off (any case). Returns an empty string on
// success, otherwise a message for the user naming the bad flag value, e.g.
// `unknown --log-format "xml" (expected text or json)`; the logger is then left unchanged.
[[nodiscard]] std::string init_logging(std::string_view format, std::string_view level);

// One JSON log line (with the trailing '\n'):
// {"time":"2026-01-02T03:04:05.678Z","level":"info","msg":"..."}
std::string format_json_record(std::chrono::system_clock::time_point time, std::string_view level,
                               std::string_view message);

// Appends `text` as a quoted JSON string. Control characters are escaped and invalid UTF-8
// sequences become U+FFFD, so the output is valid JSON whatever bytes a peer sent.
void append_json_string(std::string& out, std::string_view text);

}  // namespace tunnel::observability
