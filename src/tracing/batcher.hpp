// The exporter's queue: bounded, batched by size and by time. Pure (the caller passes the
// time and holds the lock), so its rules are unit-tested on a simulated clock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "common/time_source.hpp"
#include "tracing/span.hpp"

namespace tunnel::tracing {

struct BatchOptions {
  std::size_t max_queue = 2048;           // spans waiting; more are dropped
  std::size_t max_batch = 512;            // spans per export request
  std::chrono::milliseconds delay{2000};  // the longest a span waits for its batch
};

class SpanBatcher {
 public:
  explicit SpanBatcher(BatchOptions options) : options_(options) {}

  // Queues a span; false (and counted as dropped) when the queue is full.
  bool push(SpanData&& span, MonotonicTime now);
  // A batch should go now: max_batch spans wait, or the oldest has waited `delay`.
  bool due(MonotonicTime now) const;
  // When the oldest waiting span is due (time_point::max() when none waits).
  MonotonicTime deadline() const;
  // Takes up to max_batch spans, oldest first.
  std::vector<SpanData> take();

  std::size_t size() const { return queue_.size(); }
  std::uint64_t dropped() const { return dropped_; }
  const BatchOptions& options() const { return options_; }

 private:
  struct Queued {
    SpanData span;
    MonotonicTime at;
  };
  BatchOptions options_;
  std::deque<Queued> queue_;
  std::uint64_t dropped_ = 0;
};

}  // namespace tunnel::tracing
