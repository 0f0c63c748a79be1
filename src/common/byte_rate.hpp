// Byte rates as people write them in config files and flags: "1MiB/s", "500KB/s", "100Mbit/s".
//
// A rate is a positive integer or decimal number, an optional space, and a unit: B, KB, MB, GB
// (powers of 1000), KiB, MiB, GiB (powers of 1024), or kbit, Mbit, Gbit (bits, powers of 1000);
// "/s" after the unit is optional. "0" alone means "no limit". Units are case-sensitive except
// for the leading k/K, because "Mb" and "MB" differ by a factor of 8.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace tunnel::common {

// The value is bytes per second, 0 = unlimited; the error says what is wrong with the text,
// quoting it.
Result<std::uint64_t> parse_byte_rate(std::string_view text);

// "1 MiB/s", "512 KiB/s", "1500 B/s", "unlimited" for 0: for logs and messages.
std::string format_byte_rate(std::uint64_t bytes_per_second);

}  // namespace tunnel::common
