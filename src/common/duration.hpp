// Durations as people write them in config files and flags: "250ms", "10s", "2m", "1h30m".
//
// A duration is one or more <integer><unit> parts, units ms, s, m, h, in any order
// ("1h30m", "1m500ms"); "0" alone is also accepted. No sign, no fractions, no spaces.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace tunnel::common {

// The error says what is wrong with the text, quoting it.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);

// The shortest text parse_duration() reads back as `d`: "1h30m", "250ms", "0s".
// Negative durations are written with a leading '-' (which the parser rejects).
std::string format_duration(std::chrono::milliseconds d);

}  // namespace tunnel::common
