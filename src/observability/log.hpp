// Process logging on spdlog: human-readable text or one JSON object per line, to stderr.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/time_source.hpp"

namespace tunnel::observability {

namespace detail {
// Tunnels and agents whose detailed lines are on now (LogLevelControl::select); 0 = none.
extern std::atomic<int> g_selectors;
bool selected(std::string_view tunnel, std::string_view agent);
}  // namespace detail

// A detailed line about a request or session of `tunnel` served by `agent` (either may be ""):
// on when the process logs at debug, or a selector of LogLevelControl names the tunnel or the
// agent. Costs a level check and one relaxed load when neither.
inline bool log_detail(std::string_view tunnel, std::string_view agent) {
  return spdlog::default_logger_raw()->should_log(spdlog::level::debug) ||
         (detail::g_selectors.load(std::memory_order_relaxed) != 0 &&
          detail::selected(tunnel, agent));
}

// Writes `message` as a debug line whatever the logger's level (a line log_detail() allowed).
void write_detail(std::string_view message);

// Replaces the default spdlog logger. `format` is "text" or "json"; `level` is one of trace,
// debug, info, warn (or warning), error, critical, off (any case). Returns an empty string on
// success, otherwise a message for the user naming the bad flag value, e.g.
// `unknown --log-format "xml" (expected text or json)`; the logger is then left unchanged.
//
// Either format escapes control characters in the message, whatever a call site passes in
// (a peer's agent id, a JWT header, a request target), so a logged value can neither start a
// forged line nor send a terminal escape sequence: the text format as escape_for_text_log()
// does, the JSON format as JSON strings require (see append_json_string()).
[[nodiscard]] common::Status init_logging(std::string_view format, std::string_view level);

// `text` with every control character written as an escape, for a text log line: \n, \r, \t,
// and \xHH for the other C0 bytes, DEL and the two bytes of a UTF-8 encoded C1 control
// (U+0080 to U+009F: a terminal may read U+009B as ESC [). Other bytes, valid UTF-8 or not,
// are kept; so is a backslash, so an escape cannot be told from the same text sent literally.
std::string escape_for_text_log(std::string_view text);

// One JSON log line (with the trailing '\n'):
// {"time":"2026-01-02T03:04:05.678Z","level":"info","msg":"..."}
std::string format_json_record(std::chrono::system_clock::time_point time, std::string_view level,
                               std::string_view message);

// Appends `text` as a quoted JSON string. Control characters (C0, DEL and the C1 controls
// U+0080 to U+009F) are escaped and invalid UTF-8 sequences become U+FFFD, so the output is
// valid JSON whatever bytes a peer sent, and shown raw it cannot drive a terminal.
void append_json_string(std::string& out, std::string_view text);

// The log level changed at run time, without a restart (issue 18, debug mode): a level set for
// a while, after which the configured one (what init_logging() set before construction) comes
// back; and selectors that turn on the detailed lines of one tunnel or one agent for a while.
// Thread-safe (a signal handler, the admin listener and the expiry timer may run on different
// threads).
class LogLevelControl {
 public:
  // The longest a temporary level lasts, and what SIGUSR1 gives.
  static constexpr std::chrono::seconds kMaxDuration{3600};
  static constexpr std::chrono::seconds kToggleDuration{600};
  // Tunnel and agent selectors on at once.
  static constexpr std::size_t kMaxSelectors = 16;
  enum class SelectorKind { kTunnel, kAgent };

  explicit LogLevelControl(const TimeSource& time);
  ~LogLevelControl();
  LogLevelControl(const LogLevelControl&) = delete;
  LogLevelControl& operator=(const LogLevelControl&) = delete;

  // The detailed lines of tunnel `value` (its hostname) or agent `value` (its id) for
  // `duration`; at most kMaxSelectors at once (setting one again renews it).
  common::Status select(SelectorKind kind, std::string_view value, std::chrono::seconds duration,
                        std::string_view source);

  // Sets `level` (as init_logging() reads it) for `duration` (1 s .. kMaxDuration); `source`
  // names who asked, in the log line that says so.
  common::Status set(std::string_view level, std::chrono::seconds duration,
                     std::string_view source);
  // Back to the configured levels now, and every selector off (nothing when none is on).
  void reset(std::string_view source);
  // SIGUSR1: debug for kToggleDuration when no temporary level is on, else back.
  void toggle(std::string_view source);
  // Back to the configured level once the time is up: call every second or so.
  void expire();
  // {"level":"debug","configured":"info","temporary":true,"remaining_seconds":299}, then
  // "selectors" when one is on.
  std::string state_json() const;

 private:
  struct Selector {
    SelectorKind kind;
    std::string value;
    MonotonicTime until;
  };
  void apply_locked(int level);
  // Sets the logger's level (debug at least while a selector is on) and publishes the selectors.
  void publish_locked();
  std::string remaining(MonotonicTime until) const;
  const TimeSource& time_;
  mutable std::mutex mutex_;
  int configured_;         // spdlog::level::level_enum
  int level_;              // the level now
  MonotonicTime until_{};  // while temporary_: when the configured level returns
  bool temporary_ = false;
  std::vector<Selector> selectors_;
};

}  // namespace tunnel::observability
