#include "tracing/span.hpp"

#include "tracing/span_in.hpp"

namespace tunnel::tracing {
namespace {

template <std::size_t N>
bool all_zero(const std::array<std::uint8_t, N>& bytes) {
  for (const std::uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

void append_attribute(std::string& out, const Attribute& attribute) {
  out += "{\"key\":";
  append_json_string(out, attribute.key);
  out += ",\"value\":{";
  if (const auto* text = std::get_if<std::string>(&attribute.value)) {
    out += "\"stringValue\":";
    append_json_string(out, *text);
  } else {
    // int64 is a JSON string in the proto3 mapping.
    out += "\"intValue\":\"";
    out += std::to_string(std::get<std::int64_t>(attribute.value));
    out += '"';
  }
  out += "}}";
}

void append_span(std::string& out, const SpanData& span) {
  out += "{\"traceId\":\"";
  append_hex(out, span.trace_id);
  out += "\",\"spanId\":\"";
  append_hex(out, span.span_id);
  out += '"';
  if (!all_zero(span.parent_span_id)) {
    out += ",\"parentSpanId\":\"";
    append_hex(out, span.parent_span_id);
    out += '"';
  }
  out += ",\"flags\":";
  out += std::to_string(span.flags);
  out += ",\"name\":";
  append_json_string(out, span.name);
  out += ",\"kind\":";
  out += std::to_string(static_cast<int>(span.kind));
  out += ",\"startTimeUnixNano\":\"";
  out += std::to_string(span.start_unix_nano);
  out += "\",\"endTimeUnixNano\":\"";
  out += std::to_string(span.end_unix_nano);
  out += "\",\"attributes\":[";
  for (std::size_t i = 0; i < span.attributes.size(); ++i) {
    if (i != 0) out += ',';
    append_attribute(out, span.attributes[i]);
  }
  out += "],\"status\":{";
  if (span.error) {
    out += "\"code\":2";
    if (!span.status_message.empty()) {
      out += ",\"message\":";
      append_json_string(out, span.status_message);
    }
  }
  out += "}}";
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (const auto u = static_cast<unsigned char>(c); u < 0x20 || u >= 0x7f) {
      // Bytes past ASCII as code points (Latin-1): the document stays valid UTF-8 whatever a
      // path held (paths are percent-encoded in practice).
      out += "\\u00";
      out += kHex[u >> 4];
      out += kHex[u & 0xfu];
    } else {
      out += c;
    }
  }
  out += '"';
}

std::string encode_otlp_json(std::string_view service_name, std::string_view version,
                             std::span<const SpanData> spans) {
  std::string out;
  out.reserve(256 + spans.size() * 512);
  out +=
      R"({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":)";
  append_json_string(out, service_name);
  out += R"(}}]},"scopeSpans":[{"scope":{"name":"tunnel","version":)";
  append_json_string(out, version);
  out += R"(},"spans":[)";
  for (std::size_t i = 0; i < spans.size(); ++i) {
    if (i != 0) out += ',';
    append_span(out, spans[i]);
  }
  out += "]}]}]}";
  return out;
}

SpanData span_in(const RequestTrace& trace, SpanOf which, SpanKind kind, std::string name,
                 std::int64_t end_unix_nano, std::int64_t duration_nanos) {
  SpanData span;
  span.trace_id = trace.trace_id;
  if (which == SpanOf::kRequest) {
    span.span_id = trace.span_id;
    span.parent_span_id = trace.parent_span_id;
  } else {
    span.span_id = trace.child_span_id;
    span.parent_span_id = trace.span_id;
  }
  span.flags = trace.flags;
  span.kind = kind;
  span.name = std::move(name);
  span.end_unix_nano = end_unix_nano;
  span.start_unix_nano = end_unix_nano - duration_nanos;
  return span;
}

}  // namespace tunnel::tracing
