#include "tracing/span.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tracing/span_in.hpp"

namespace tunnel::tracing {
namespace {

TEST(OtlpJson, EncodesTheExportRequestOfTheProto3JsonMapping) {
  SpanData root;
  root.trace_id = new_trace_id();
  root.span_id = new_span_id();
  root.flags = kSampledFlag;
  root.kind = SpanKind::kServer;
  root.name = "GET";
  root.start_unix_nano = 1'767'225'600'000'000'000;
  root.end_unix_nano = 1'767'225'600'002'000'000;
  root.attributes = {{"http.request.method", std::string("GET")},
                     {"url.path", std::string("/a\"b\\c\x01\xc3\xa9")},
                     {"http.response.status_code", std::int64_t{502}}};
  root.error = true;
  root.status_message = "agent gone";
  SpanData child = root;
  child.span_id = new_span_id();
  child.parent_span_id = root.span_id;
  child.kind = SpanKind::kClient;
  child.error = false;
  const std::vector<SpanData> spans{root, child};

  const auto doc = nlohmann::json::parse(encode_otlp_json("tunnel-core", "1.2.3", spans));
  const auto& resource = doc.at("resourceSpans").at(0);
  EXPECT_EQ(resource.at("resource").at("attributes").at(0).at("key"), "service.name");
  EXPECT_EQ(resource.at("resource").at("attributes").at(0).at("value").at("stringValue"),
            "tunnel-core");
  const auto& scope = resource.at("scopeSpans").at(0);
  EXPECT_EQ(scope.at("scope").at("name"), "tunnel");
  const auto& out = scope.at("spans");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].at("traceId"), to_hex(root.trace_id));
  EXPECT_EQ(out[0].at("spanId"), to_hex(root.span_id));
  EXPECT_FALSE(out[0].contains("parentSpanId"));
  EXPECT_EQ(out[0].at("kind"), 2);
  EXPECT_EQ(out[0].at("startTimeUnixNano"), "1767225600000000000");
  EXPECT_EQ(out[0].at("endTimeUnixNano"), "1767225600002000000");
  EXPECT_EQ(out[0].at("status").at("code"), 2);
  EXPECT_EQ(out[0].at("status").at("message"), "agent gone");
  EXPECT_EQ(out[0].at("attributes").at(1).at("value").at("stringValue"),
            "/a\"b\\c\x01\xc3\x83\xc2\xa9");  // bytes past ASCII as Latin-1 code points
  EXPECT_EQ(out[0].at("attributes").at(2).at("value").at("intValue"), "502");
  EXPECT_EQ(out[1].at("parentSpanId"), to_hex(root.span_id));
  EXPECT_EQ(out[1].at("kind"), 3);
  EXPECT_TRUE(out[1].at("status").empty());
}

TEST(SpanIn, TakesTheIdsOfTheRequestOrOfTheSpanHandedOn) {
  RequestTrace trace;
  trace.trace_id = new_trace_id();
  trace.span_id = new_span_id();
  trace.child_span_id = new_span_id();
  trace.parent_span_id = new_span_id();
  trace.flags = kSampledFlag;
  trace.active = true;
  const SpanData own = span_in(trace, SpanOf::kRequest, SpanKind::kServer, "GET", 5000, 1500);
  EXPECT_EQ(own.trace_id, trace.trace_id);
  EXPECT_EQ(own.span_id, trace.span_id);
  EXPECT_EQ(own.parent_span_id, trace.parent_span_id);
  EXPECT_EQ(own.flags, kSampledFlag);
  EXPECT_EQ(own.kind, SpanKind::kServer);
  EXPECT_EQ(own.name, "GET");
  EXPECT_EQ(own.start_unix_nano, 3500);
  EXPECT_EQ(own.end_unix_nano, 5000);
  EXPECT_FALSE(own.error);
  EXPECT_TRUE(own.attributes.empty());
  const SpanData on =
      span_in(trace, SpanOf::kHandedOn, SpanKind::kClient, "GET tunnel", 5000, 1000);
  EXPECT_EQ(on.trace_id, trace.trace_id);
  EXPECT_EQ(on.span_id, trace.child_span_id);
  EXPECT_EQ(on.parent_span_id, trace.span_id);
  EXPECT_EQ(on.kind, SpanKind::kClient);
  EXPECT_EQ(on.start_unix_nano, 4000);
}

}  // namespace
}  // namespace tunnel::tracing
