#include "tracing/trace_context.hpp"

#include <charconv>
#include <cmath>
#include <random>

namespace tunnel::tracing {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

int lower_hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is not allowed (HEXDIGLC)
}

// Reads `out.size()` bytes from 2 * size lower-case hex digits; false on any other character.
bool read_hex(std::string_view text, std::span<std::uint8_t> out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int high = lower_hex_value(text[2 * i]);
    const int low = lower_hex_value(text[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    out[i] = static_cast<std::uint8_t>(high * 16 + low);
  }
  return true;
}

template <std::size_t N>
bool all_zero(const std::array<std::uint8_t, N>& bytes) {
  for (const std::uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

std::mt19937_64& generator() {
  thread_local std::mt19937_64 engine = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  return engine;
}

template <std::size_t N>
std::array<std::uint8_t, N> random_id() {
  std::array<std::uint8_t, N> id{};
  do {
    for (std::size_t i = 0; i < N; i += 8) {
      std::uint64_t word = generator()();
      for (std::size_t j = 0; j < 8 && i + j < N; ++j) {
        id[i + j] = static_cast<std::uint8_t>(word >> (8 * j));
      }
    }
  } while (all_zero(id));
  return id;
}

void write_hex(char* out, std::span<const std::uint8_t> bytes) {
  for (const std::uint8_t b : bytes) {
    *out++ = kHexDigits[b >> 4];
    *out++ = kHexDigits[b & 0xfu];
  }
}

}  // namespace

std::optional<TraceContext> parse_traceparent(std::string_view value) {
  if (value.size() < kTraceparentLength) return std::nullopt;
  std::uint8_t version = 0;
  if (!read_hex(value.substr(0, 2), std::span(&version, 1))) return std::nullopt;
  if (version == 0xff) return std::nullopt;
  if (version == 0 && value.size() != kTraceparentLength) return std::nullopt;
  if (value.size() > kTraceparentLength && value[kTraceparentLength] != '-') return std::nullopt;
  if (value[2] != '-' || value[35] != '-' || value[52] != '-') return std::nullopt;
  TraceContext context;
  if (!read_hex(value.substr(3, 32), context.trace_id)) return std::nullopt;
  if (!read_hex(value.substr(36, 16), context.span_id)) return std::nullopt;
  if (!read_hex(value.substr(53, 2), std::span(&context.flags, 1))) return std::nullopt;
  if (all_zero(context.trace_id) || all_zero(context.span_id)) return std::nullopt;
  return context;
}

void write_traceparent(char* out, const TraceId& trace_id, const SpanId& span_id,
                       std::uint8_t flags) {
  out[0] = '0';
  out[1] = '0';
  out[2] = '-';
  write_hex(out + 3, trace_id);
  out[35] = '-';
  write_hex(out + 36, span_id);
  out[52] = '-';
  write_hex(out + 53, std::span(&flags, 1));
}

std::string format_traceparent(const TraceId& trace_id, const SpanId& span_id, std::uint8_t flags) {
  std::string out(kTraceparentLength, '\0');
  write_traceparent(out.data(), trace_id, span_id, flags);
  return out;
}

void append_hex(std::string& out, std::span<const std::uint8_t> bytes) {
  const std::size_t at = out.size();
  out.resize(at + 2 * bytes.size());
  write_hex(out.data() + at, bytes);
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  std::string out;
  append_hex(out, bytes);
  return out;
}

TraceId new_trace_id() {
  return random_id<16>();
}
SpanId new_span_id() {
  return random_id<8>();
}

bool ratio_samples(const TraceId& trace_id, double ratio) {
  if (!(ratio > 0)) return false;
  if (ratio >= 1) return true;
  std::uint64_t low = 0;
  for (std::size_t i = 8; i < 16; ++i) low = (low << 8) | trace_id[i];
  const auto threshold = static_cast<std::uint64_t>(std::ldexp(ratio, 64));
  return low < threshold;
}

bool should_sample(const std::optional<TraceContext>& parent, const TraceId& trace_id,
                   double ratio) {
  if (parent) return parent->sampled();
  return ratio_samples(trace_id, ratio);
}

std::optional<double> parse_sample_ratio(std::string_view text) {
  bool percent = false;
  if (text.ends_with('%')) {
    percent = true;
    text.remove_suffix(1);
  }
  if (text.empty()) return std::nullopt;
  double value = 0;
  const auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::fixed);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if (percent) value /= 100;
  if (!(value >= 0 && value <= 1)) return std::nullopt;
  return value;
}

}  // namespace tunnel::tracing
