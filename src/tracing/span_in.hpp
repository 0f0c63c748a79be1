// The span of a RequestTrace that the core's server and tunnel spans and the agent's local span
// share: ids, parent, flags, kind, name and times. (A header of its own: span.hpp is under every
// unit of the core through tracer.hpp.)
#pragma once

#include <cstdint>
#include <string>

#include "tracing/span.hpp"
#include "tracing/trace_context.hpp"

namespace tunnel::tracing {

// Which span of a RequestTrace: the process's own span for the request (its parent the
// caller's span) or the one it hands on (the core's trip through the tunnel; its parent the
// request's span).
enum class SpanOf : std::uint8_t { kRequest, kHandedOn };

// The span `which` of `trace`, of `kind`, named `name`, that ended at `end_unix_nano` after
// `duration_nanos`; the caller adds status and attributes.
SpanData span_in(const RequestTrace& trace, SpanOf which, SpanKind kind, std::string name,
                 std::int64_t end_unix_nano, std::int64_t duration_nanos);

}  // namespace tunnel::tracing
