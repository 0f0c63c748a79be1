#include "duration.hpp"

#include <cstdint>
#include <limits>

namespace tunnel::common {
namespace {

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

// Milliseconds per unit, or 0 for an unknown unit.
std::int64_t unit_millis(std::string_view unit) {
  if (unit == "ms") return 1;
  if (unit == "s") return 1000;
  if (unit == "m") return 60 * 1000;
  if (unit == "h") return 60 * 60 * 1000;
  return 0;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

}  // namespace

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) {
    return fail("empty duration (write e.g. \"10s\", \"250ms\", \"1h30m\")");
  }
  if (text == "0") return std::chrono::milliseconds(0);
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    if (!is_digit(text[i])) {
      return fail("invalid duration " + quoted(text) + ": expected a number at position " +
                  std::to_string(i + 1) + " (write e.g. \"10s\", \"1h30m\")");
    }
    std::int64_t number = 0;
    while (i < text.size() && is_digit(text[i])) {
      const int digit = text[i] - '0';
      if (number > (kMax - digit) / 10) {
        return fail("duration " + quoted(text) + " is too large");
      }
      number = number * 10 + digit;
      ++i;
    }
    const std::size_t unit_start = i;
    while (i < text.size() && is_alpha(text[i])) ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    if (unit.empty()) {
      return fail("duration " + quoted(text) + " is missing a unit (ms, s, m or h)");
    }
    const std::int64_t per_unit = unit_millis(unit);
    if (per_unit == 0) {
      return fail("unknown unit " + quoted(unit) + " in duration " + quoted(text) +
                  " (use ms, s, m or h)");
    }
    if (number > (kMax - total) / per_unit) {
      return fail("duration " + quoted(text) + " is too large");
    }
    total += number * per_unit;
  }
  return std::chrono::milliseconds(total);
}

std::string format_duration(std::chrono::milliseconds d) {
  std::int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  const std::int64_t hours = ms / 3'600'000;
  ms %= 3'600'000;
  const std::int64_t minutes = ms / 60'000;
  ms %= 60'000;
  const std::int64_t seconds = ms / 1000;
  ms %= 1000;
  if (hours) out += std::to_string(hours) + "h";
  if (minutes) out += std::to_string(minutes) + "m";
  if (seconds) out += std::to_string(seconds) + "s";
  if (ms) out += std::to_string(ms) + "ms";
  return out;
}

}  // namespace tunnel::common
