#include "common/byte_rate.hpp"

#include <array>
#include <cmath>
#include <cstdio>

namespace tunnel::common {
namespace {

struct Unit {
  std::string_view name;
  double bytes;
};

constexpr std::array<Unit, 13> kUnits = {{
    {"B", 1.0},
    {"KB", 1e3},
    {"kB", 1e3},
    {"MB", 1e6},
    {"GB", 1e9},
    {"KiB", 1024.0},
    {"MiB", 1024.0 * 1024},
    {"GiB", 1024.0 * 1024 * 1024},
    {"kbit", 1e3 / 8},
    {"Kbit", 1e3 / 8},
    {"Mbit", 1e6 / 8},
    {"Gbit", 1e9 / 8},
    {"bit", 1.0 / 8},
}};

Error bad_rate(std::string_view text, std::string_view why) {
  return fail("\"" + std::string(text) + "\": " + std::string(why));
}

}  // namespace

Result<std::uint64_t> parse_byte_rate(std::string_view text) {
  if (text == "0") return std::uint64_t{0};
  std::size_t i = 0;
  double number = 0;
  bool digits = false;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    number = number * 10 + (text[i] - '0');
    digits = true;
    ++i;
  }
  if (i < text.size() && text[i] == '.') {
    ++i;
    double scale = 0.1;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      number += (text[i] - '0') * scale;
      scale /= 10;
      digits = true;
      ++i;
    }
  }
  if (!digits) return bad_rate(text, "expected a number and a unit, e.g. 1MiB/s or 100Mbit/s");
  if (i < text.size() && text[i] == ' ') ++i;
  std::string_view unit = text.substr(i);
  if (unit.ends_with("/s")) unit.remove_suffix(2);
  if (unit.empty())
    return bad_rate(text, "missing unit (B, KB, KiB, MB, MiB, GB, GiB, kbit, Mbit, Gbit)");
  for (const auto& u : kUnits) {
    if (u.name != unit) continue;
    const double bytes = std::round(number * u.bytes);
    if (bytes < 1) return bad_rate(text, "less than 1 byte per second; use 0 for no limit");
    if (bytes > 1e15) return bad_rate(text, "too large (at most 1 PB/s)");
    return static_cast<std::uint64_t>(bytes);
  }
  return bad_rate(text, "unknown unit \"" + std::string(unit) +
                            "\" (B, KB, KiB, MB, MiB, GB, GiB, kbit, Mbit, Gbit; per second)");
}

std::string format_byte_rate(std::uint64_t bytes_per_second) {
  if (bytes_per_second == 0) return "unlimited";
  constexpr std::array<std::pair<std::uint64_t, const char*>, 3> kSteps = {
      {{1024ULL * 1024 * 1024, "GiB"}, {1024ULL * 1024, "MiB"}, {1024ULL, "KiB"}}};
  for (const auto& [size, name] : kSteps) {
    if (bytes_per_second >= size) {
      char buf[48];
      const double v = static_cast<double>(bytes_per_second) / static_cast<double>(size);
      if (bytes_per_second % size == 0) {
        std::snprintf(buf, sizeof buf, "%llu %s/s",
                      static_cast<unsigned long long>(bytes_per_second / size), name);
      } else {
        std::snprintf(buf, sizeof buf, "%.2f %s/s", v, name);
      }
      return buf;
    }
  }
  return std::to_string(bytes_per_second) + " B/s";
}

}  // namespace tunnel::common
