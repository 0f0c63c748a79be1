#include "tracing/batcher.hpp"

#include <gtest/gtest.h>

#include "tracing/tracer.hpp"

namespace tunnel::tracing {
namespace {

using std::chrono::milliseconds;

SpanData span_named(std::string name) {
  SpanData span;
  span.name = std::move(name);
  return span;
}

TEST(SpanBatcher, ABatchIsDueWhenFullOrWhenTheOldestWaitedTheDelay) {
  SimulatedTimeSource time;
  SpanBatcher batcher({.max_queue = 10, .max_batch = 3, .delay = milliseconds(100)});
  EXPECT_FALSE(batcher.due(time.monotonic_time()));
  EXPECT_EQ(batcher.deadline(), MonotonicTime::max());
  batcher.push(span_named("a"), time.monotonic_time());
  const auto first_due = time.monotonic_time() + milliseconds(100);
  EXPECT_EQ(batcher.deadline(), first_due);
  time.advance(milliseconds(60));
  batcher.push(span_named("b"), time.monotonic_time());
  EXPECT_FALSE(batcher.due(time.monotonic_time()));
  time.advance(milliseconds(39));
  EXPECT_FALSE(batcher.due(time.monotonic_time()));
  time.advance(milliseconds(1));
  EXPECT_TRUE(batcher.due(time.monotonic_time()));  // exactly the delay after the oldest
  auto batch = batcher.take();
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].name, "a");
  EXPECT_EQ(batch[1].name, "b");
  EXPECT_EQ(batcher.size(), 0u);

  for (const char* name : {"c", "d", "e", "f"})
    batcher.push(span_named(name), time.monotonic_time());
  EXPECT_TRUE(batcher.due(time.monotonic_time()));  // max_batch waiting, no delay
  EXPECT_EQ(batcher.take().size(), 3u);             // at most max_batch per request
  EXPECT_FALSE(batcher.due(time.monotonic_time()));
  EXPECT_EQ(batcher.size(), 1u);
}

TEST(SpanBatcher, AFullQueueDropsAndCounts) {
  SimulatedTimeSource time;
  SpanBatcher batcher({.max_queue = 2, .max_batch = 10, .delay = milliseconds(100)});
  EXPECT_TRUE(batcher.push(span_named("a"), time.monotonic_time()));
  EXPECT_TRUE(batcher.push(span_named("b"), time.monotonic_time()));
  EXPECT_FALSE(batcher.push(span_named("c"), time.monotonic_time()));
  EXPECT_FALSE(batcher.push(span_named("d"), time.monotonic_time()));
  EXPECT_EQ(batcher.size(), 2u);
  EXPECT_EQ(batcher.dropped(), 2u);
  batcher.take();
  EXPECT_TRUE(batcher.push(span_named("e"), time.monotonic_time()));  // room again
  EXPECT_EQ(batcher.dropped(), 2u);
}

TEST(Tracer, SpansPastTheQueueAreDroppedAndCountedWithoutTheNetwork) {
  observability::Registry registry;
  // Nothing listens on port 1, and the batch never comes due: nothing is sent.
  auto tracer = Tracer::start(
      TracerOptions{.endpoint = "http://127.0.0.1:1",
                    .service_name = "test",
                    .sample_ratio = 1.0,
                    .batch = {.max_queue = 2, .max_batch = 100, .delay = std::chrono::hours(1)}},
      registry);
  ASSERT_TRUE(tracer);
  for (int i = 0; i < 5; ++i) tracer.value()->submit(span_named("s"));
  EXPECT_EQ(registry.counter("tunnel_trace_spans_dropped_total", "").value(), 3u);
  tracer.value()->shutdown(milliseconds(0));  // no time to export: the 2 queued are dropped
  EXPECT_EQ(registry.counter("tunnel_trace_spans_dropped_total", "").value(), 5u);
  EXPECT_EQ(registry.counter("tunnel_trace_spans_exported_total", "").value(), 0u);
}

TEST(Tracer, RefusesAnEndpointThatIsNotAnHttpUrl) {
  observability::Registry registry;
  TracerOptions options;
  options.endpoint = "collector:4318";
  auto tracer = Tracer::start(options, registry);
  ASSERT_FALSE(tracer);
  EXPECT_NE(tracer.error().message.find("OTLP endpoint"), std::string::npos);
  EXPECT_TRUE(check_endpoint("https://tempo.example.org/otlp/v1/traces"));
}

}  // namespace
}  // namespace tunnel::tracing
