// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` field, fresh ids
// and the sampling decision. Pure functions, no allocation except format_traceparent().
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace tunnel::tracing {

using TraceId = std::array<std::uint8_t, 16>;
using SpanId = std::array<std::uint8_t, 8>;

inline constexpr std::uint8_t kSampledFlag = 0x01;
inline constexpr std::size_t kTraceparentLength = 55;  // "00-" 32 "-" 16 "-" 2

// What a valid `traceparent` says: the trace, the caller's span (our parent) and the flags.
struct TraceContext {
  TraceId trace_id{};
  SpanId span_id{};
  std::uint8_t flags = 0;
  bool sampled() const { return (flags & kSampledFlag) != 0; }
};

// One request's trace in one process, set when tracing is on (`active`): the trace, this
// process's span for the request, the span it hands on (the core's span for the trip through
// the tunnel; the agent sends its own span), the caller's span (zeros: none) and the flags.
struct RequestTrace {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId child_span_id{};
  SpanId parent_span_id{};
  std::uint8_t flags = 0;
  bool active = false;
  bool sampled() const { return (flags & kSampledFlag) != 0; }
};

// Parses a `traceparent` value strictly (W3C Trace Context level 1, section 3.2): version
// 2 lower-case hex digits, not "ff"; version 00 is exactly 55 characters; a later version is at
// least 55 and, when longer, goes on with '-' (its first four parts are read as version 00's);
// trace-id 32 and parent-id 16 lower-case hex digits, neither all zeros; flags 2 hex digits.
// nullopt for anything else: the caller ignores the field and starts a new trace.
std::optional<TraceContext> parse_traceparent(std::string_view value);

// "00-<trace-id>-<span-id>-<flags>" (version 00, 55 characters).
std::string format_traceparent(const TraceId& trace_id, const SpanId& span_id, std::uint8_t flags);
// Writes the same into `out` (kTraceparentLength characters).
void write_traceparent(char* out, const TraceId& trace_id, const SpanId& span_id,
                       std::uint8_t flags);

// Lower-case hex of `bytes`.
std::string to_hex(std::span<const std::uint8_t> bytes);
void append_hex(std::string& out, std::span<const std::uint8_t> bytes);

// Random ids from a per-thread generator (seeded from std::random_device), never all zeros.
TraceId new_trace_id();
SpanId new_span_id();

// The ratio sampler of OpenTelemetry (TraceIdRatioBased): samples when the trace id's last 8
// bytes, read as a big-endian number, are below ratio * 2^64. The same trace id gives the same
// answer everywhere, so a core and an agent with the same ratio agree. 0 never, 1 always.
bool ratio_samples(const TraceId& trace_id, double ratio);

// Parent-based sampling: a request with a valid parent follows the parent's sampled flag; a new
// trace is sampled by ratio_samples().
bool should_sample(const std::optional<TraceContext>& parent, const TraceId& trace_id,
                   double ratio);

// A sampling ratio as configured: a decimal number from 0 to 1 ("0.01", "1") or a percentage
// ("1%", "0.5%"). nullopt for anything else.
std::optional<double> parse_sample_ratio(std::string_view text);

}  // namespace tunnel::tracing
