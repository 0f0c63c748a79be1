// A finished span as the exporter sends it, and its OTLP/HTTP JSON encoding
// (opentelemetry-proto's ExportTraceServiceRequest in the proto3 JSON mapping, as Jaeger, Tempo
// and the OpenTelemetry Collector accept at POST /v1/traces).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tracing/trace_context.hpp"

namespace tunnel::tracing {

// OTLP's SpanKind values.
enum class SpanKind : std::uint8_t { kInternal = 1, kServer = 2, kClient = 3 };

struct Attribute {
  std::string key;
  std::variant<std::string, std::int64_t> value;
};

struct SpanData {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_span_id{};  // all zeros: a root span
  std::uint8_t flags = 0;
  SpanKind kind = SpanKind::kInternal;
  std::string name;
  std::int64_t start_unix_nano = 0;
  std::int64_t end_unix_nano = 0;
  bool error = false;          // status ERROR (else UNSET)
  std::string status_message;  // with error
  std::vector<Attribute> attributes;
};

// The body of POST /v1/traces for `spans`, under one resource whose service.name is
// `service_name` and one scope "tunnel" of `version`.
std::string encode_otlp_json(std::string_view service_name, std::string_view version,
                             std::span<const SpanData> spans);

// `text` as a JSON string, quotes included.
void append_json_string(std::string& out, std::string_view text);

}  // namespace tunnel::tracing
