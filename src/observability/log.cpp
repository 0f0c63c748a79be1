#include "observability/log.hpp"

#include <fmt/format.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>
#include <memory>
#include <optional>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tunnel::observability {
namespace {

std::string_view level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

std::optional<spdlog::level::level_enum> parse_level(std::string_view text) {
  std::string lower;
  for (const char c : text) {
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  using L = spdlog::level::level_enum;
  constexpr std::pair<std::string_view, L> kLevels[] = {
      {"trace", L::trace},  {"debug", L::debug}, {"info", L::info},         {"warn", L::warn},
      {"warning", L::warn}, {"error", L::err},   {"critical", L::critical}, {"off", L::off},
  };
  for (const auto& [name, level] : kLevels) {
    if (lower == name) {
      return level;
    }
  }
  return std::nullopt;
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string line = format_json_record(
        msg.time, level_name(msg.level), std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// Length of the valid UTF-8 sequence at the start of `s`, or 0 when it is invalid.
std::size_t utf8_sequence_length(std::string_view s) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;  // allowed range of the second byte
  if (b0 < 0x80) {
    return 1;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    lo = b0 == 0xE0 ? 0xA0 : 0x80;  // no overlong forms
    hi = b0 == 0xED ? 0x9F : 0xBF;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    lo = b0 == 0xF0 ? 0x90 : 0x80;
    hi = b0 == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < len) {
    return 0;
  }
  const auto b1 = static_cast<unsigned char>(s[1]);
  if (b1 < lo || b1 > hi) {
    return 0;
  }
  for (std::size_t i = 2; i < len; ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      return 0;
    }
  }
  return len;
}

// Bytes that may need an escape in a text log line: C0, DEL, and 0xC2 (the lead byte of the
// C1 controls in UTF-8). A table: every byte of every message is looked up once.
constexpr std::array<bool, 256> kSuspect = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = true;
  t[0x7F] = true;
  t[0xC2] = true;
  return t;
}();

// Blocks of kBlock bytes without a byte below 0x20, 0x7F or 0xC2 are skipped whole (SSE2, so
// every x86-64): most messages hold none, and this runs for every byte of every text log
// line; a few vector instructions per block instead of a table lookup per byte.
#if defined(__SSE2__)
constexpr std::size_t kBlock = 16;
inline bool block_has_suspect(const char* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i below_space = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1F)),
                                             _mm_set1_epi8(0x1F));  // v <= 0x1F, unsigned
  const __m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7F));
  const __m128i c2 = _mm_cmpeq_epi8(v, _mm_set1_epi8(static_cast<char>(0xC2)));
  return _mm_movemask_epi8(_mm_or_si128(below_space, _mm_or_si128(del, c2))) != 0;
}
#else
constexpr std::size_t kBlock = 16;
inline bool block_has_suspect(const char* /*p*/) {
  return true;  // no vector scan: every byte goes through the table
}
#endif

// Appends `text` to `out` (a std::string or spdlog's memory buffer) as escape_for_text_log()
// describes; runs of harmless bytes are appended in one piece.
template <typename Out>
void append_escaped(Out& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  const char* const data = text.data();
  const std::size_t size = text.size();
  std::size_t run = 0;  // start of the bytes not yet appended
  std::size_t i = 0;
  while (i < size) {
    if (size - i >= kBlock && !block_has_suspect(data + i)) {
      i += kBlock;
      continue;
    }
    const auto c = static_cast<unsigned char>(data[i]);
    if (!kSuspect[c]) {
      ++i;
      continue;
    }
    std::size_t len = 1;  // bytes escaped
    if (c == 0xC2) {
      if (i + 1 == size || static_cast<unsigned char>(data[i + 1]) < 0x80 ||
          static_cast<unsigned char>(data[i + 1]) > 0x9F) {
        ++i;
        continue;  // U+00A0 and up: printable
      }
      len = 2;
    }
    out.append(data + run, data + i);
    for (std::size_t k = 0; k < len; ++k) {
      const auto b = static_cast<unsigned char>(data[i + k]);
      char esc[4] = {'\\', 'x', kHex[b >> 4], kHex[b & 0xF]};
      std::size_t esc_len = 4;
      if (b == '\n' || b == '\r' || b == '\t') {
        esc[1] = b == '\n' ? 'n' : b == '\r' ? 'r' : 't';
        esc_len = 2;
      }
      out.append(esc, esc + esc_len);
    }
    i += len;
    run = i;
  }
  out.append(data + run, data + size);
}

// The text format's message flag (%*): the payload with control characters escaped.
class EscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm& /*time*/,
              spdlog::memory_buf_t& dest) override {
    append_escaped(dest, std::string_view(msg.payload.data(), msg.payload.size()));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedMessage>();
  }
};

}  // namespace

std::string escape_for_text_log(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_escaped(out, text);
  return out;
}

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  while (!text.empty()) {
    const char c = text[0];
    const std::size_t len = utf8_sequence_length(text);
    if (len == 0) {
      out += "\\ufffd";
      text.remove_prefix(1);
      continue;
    }
    if (len == 2 && static_cast<unsigned char>(c) == 0xC2 &&
        static_cast<unsigned char>(text[1]) <= 0x9F) {
      // A C1 control (U+0080 to U+009F): valid JSON raw, but U+009B is ESC [ to a terminal.
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(text[1])));
    } else if (len > 1) {
      out.append(text.data(), len);
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
    } else {
      out += c;
    }
    text.remove_prefix(len);
  }
  out += '"';
}

std::string format_json_record(std::chrono::system_clock::time_point time, std::string_view level,
                               std::string_view message) {
  using namespace std::chrono;
  const auto since_epoch = time.time_since_epoch();
  const auto secs = floor<seconds>(since_epoch);
  const auto millis = duration_cast<milliseconds>(since_epoch - secs).count();
  const std::time_t t = secs.count();
  std::tm utc{};
  gmtime_r(&t, &utc);
  std::string out = fmt::format(
      "{{\"time\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"level\":", utc.tm_year + 1900,
      utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
  append_json_string(out, level);
  out += ",\"msg\":";
  append_json_string(out, message);
  out += "}\n";
  return out;
}

common::Status init_logging(std::string_view format, std::string_view level) {
  if (format != "text" && format != "json") {
    return common::fail(fmt::format("unknown --log-format \"{}\" (expected text or json)", format));
  }
  const auto parsed_level = parse_level(level);
  if (!parsed_level) {
    return common::fail(fmt::format(
        "unknown --log-level \"{}\" (expected trace, debug, info, warn, error, critical or off)",
        level));
  }
  std::shared_ptr<spdlog::logger> logger;
  if (format == "json") {
    logger =
        std::make_shared<spdlog::logger>("", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger = std::make_shared<spdlog::logger>(
        "", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<EscapedMessage>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %*");
    logger->set_formatter(std::move(formatter));
  }
  logger->set_level(*parsed_level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return common::success();
}

namespace detail {
std::atomic<int> g_selectors{0};

namespace {
std::mutex g_selector_mutex;
// (is an agent, value) of the selectors on now; written by LogLevelControl::publish_locked().
std::vector<std::pair<bool, std::string>> g_selected;
}  // namespace

bool selected(std::string_view tunnel, std::string_view agent) {
  const std::scoped_lock lock(g_selector_mutex);
  for (const auto& [is_agent, value] : g_selected) {
    if (is_agent ? (!agent.empty() && agent == value) : (!tunnel.empty() && tunnel == value)) {
      return true;
    }
  }
  return false;
}
}  // namespace detail

void write_detail(std::string_view message) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  const spdlog::details::log_msg msg(logger->name(), spdlog::level::debug,
                                     spdlog::string_view_t(message.data(), message.size()));
  for (const auto& sink : logger->sinks()) {
    if (sink->should_log(msg.level)) sink->log(msg);
  }
}

namespace {
std::string_view kind_name(LogLevelControl::SelectorKind kind) {
  return kind == LogLevelControl::SelectorKind::kAgent ? "agent" : "tunnel";
}

common::Status check_duration(std::chrono::seconds duration) {
  if (duration < std::chrono::seconds(1) || duration > LogLevelControl::kMaxDuration) {
    return common::fail(fmt::format("the duration must be between 1s and {}s, got {}s",
                                    LogLevelControl::kMaxDuration.count(), duration.count()));
  }
  return common::success();
}
}  // namespace

LogLevelControl::LogLevelControl(const TimeSource& time)
    : time_(time), configured_(static_cast<int>(spdlog::get_level())), level_(configured_) {}

LogLevelControl::~LogLevelControl() {
  const std::scoped_lock lock(mutex_);
  selectors_.clear();
  publish_locked();
}

void LogLevelControl::publish_locked() {
  {
    const std::scoped_lock lock(detail::g_selector_mutex);
    detail::g_selected.clear();
    for (const auto& sel : selectors_) {
      detail::g_selected.emplace_back(sel.kind == SelectorKind::kAgent, sel.value);
    }
  }
  detail::g_selectors.store(static_cast<int>(selectors_.size()), std::memory_order_relaxed);
}

void LogLevelControl::apply_locked(int level) {
  level_ = level;
  spdlog::set_level(static_cast<spdlog::level::level_enum>(level));
}

common::Status LogLevelControl::set(std::string_view level, std::chrono::seconds duration,
                                    std::string_view source) {
  const auto parsed = parse_level(level);
  if (!parsed) {
    return common::fail(fmt::format(
        "unknown log level \"{}\" (expected trace, debug, info, warn, error, critical or off)",
        escape_for_text_log(level)));
  }
  if (auto ok = check_duration(duration); !ok) return ok;
  const std::scoped_lock lock(mutex_);
  apply_locked(static_cast<int>(*parsed));
  until_ = time_.monotonic_time() + duration;
  temporary_ = true;
  // At warn, so the line shows whatever the level (only "off" hides it).
  spdlog::warn("log level {} for {}s ({}); then back to {}", level_name(*parsed), duration.count(),
               escape_for_text_log(source),
               level_name(static_cast<spdlog::level::level_enum>(configured_)));
  return common::success();
}

common::Status LogLevelControl::select(SelectorKind kind, std::string_view value,
                                       std::chrono::seconds duration, std::string_view source) {
  if (value.empty() || value.size() > 253) {
    return common::fail(fmt::format("{}: expected 1 to 253 characters", kind_name(kind)));
  }
  if (auto ok = check_duration(duration); !ok) return ok;
  const std::scoped_lock lock(mutex_);
  const auto until = time_.monotonic_time() + duration;
  auto it = std::find_if(selectors_.begin(), selectors_.end(),
                         [&](const Selector& s) { return s.kind == kind && s.value == value; });
  if (it != selectors_.end()) {
    it->until = until;
  } else if (selectors_.size() == kMaxSelectors) {
    return common::fail(
        fmt::format("{} selectors are on already (the most at once); DELETE /debug/log ends them",
                    kMaxSelectors));
  } else {
    selectors_.push_back(Selector{kind, std::string(value), until});
  }
  publish_locked();
  spdlog::warn("detailed logs of {} {} for {}s ({})", kind_name(kind), escape_for_text_log(value),
               duration.count(), escape_for_text_log(source));
  return common::success();
}

void LogLevelControl::reset(std::string_view source) {
  const std::scoped_lock lock(mutex_);
  if (!temporary_ && selectors_.empty()) return;
  temporary_ = false;
  selectors_.clear();
  publish_locked();
  apply_locked(configured_);
  spdlog::warn("log level back to {} ({})",
               level_name(static_cast<spdlog::level::level_enum>(configured_)),
               escape_for_text_log(source));
}

void LogLevelControl::toggle(std::string_view source) {
  {
    const std::scoped_lock lock(mutex_);
    if (!temporary_) {
      apply_locked(static_cast<int>(spdlog::level::debug));
      until_ = time_.monotonic_time() + kToggleDuration;
      temporary_ = true;
      spdlog::warn("log level debug for {}s ({}; again to go back to {} now)",
                   kToggleDuration.count(), escape_for_text_log(source),
                   level_name(static_cast<spdlog::level::level_enum>(configured_)));
      return;
    }
  }
  reset(source);
}

void LogLevelControl::expire() {
  const std::scoped_lock lock(mutex_);
  const auto now = time_.monotonic_time();
  if (temporary_ && now >= until_) {
    temporary_ = false;
    apply_locked(configured_);
    spdlog::warn("log level back to {} (its time is up)",
                 level_name(static_cast<spdlog::level::level_enum>(configured_)));
  }
  bool changed = false;
  for (auto it = selectors_.begin(); it != selectors_.end();) {
    if (now >= it->until) {
      spdlog::warn("detailed logs of {} {} off (its time is up)", kind_name(it->kind),
                   escape_for_text_log(it->value));
      it = selectors_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  if (changed) publish_locked();
}

std::string LogLevelControl::remaining(MonotonicTime until) const {
  const auto left = std::chrono::ceil<std::chrono::seconds>(
      std::max(until - time_.monotonic_time(), MonotonicTime::duration::zero()));
  return std::to_string(left.count());
}

std::string LogLevelControl::state_json() const {
  const std::scoped_lock lock(mutex_);
  std::string out =
      fmt::format(R"({{"level":"{}","configured":"{}","temporary":{})",
                  level_name(static_cast<spdlog::level::level_enum>(level_)),
                  level_name(static_cast<spdlog::level::level_enum>(configured_)), temporary_);
  if (temporary_) out += R"(,"remaining_seconds":)" + remaining(until_);
  if (!selectors_.empty()) {
    out += R"(,"selectors":[)";
    for (std::size_t i = 0; i < selectors_.size(); ++i) {
      if (i != 0) out += ",";
      out += "{\"";
      out += kind_name(selectors_[i].kind);
      out += "\":";
      append_json_string(out, selectors_[i].value);
      out += R"(,"remaining_seconds":)" + remaining(selectors_[i].until) + "}";
    }
    out += "]";
  }
  out += "}\n";
  return out;
}

}  // namespace tunnel::observability
