#include "tracing/batcher.hpp"

namespace tunnel::tracing {

bool SpanBatcher::push(SpanData&& span, MonotonicTime now) {
  if (queue_.size() >= options_.max_queue) {
    ++dropped_;
    return false;
  }
  queue_.push_back(Queued{std::move(span), now});
  return true;
}

bool SpanBatcher::due(MonotonicTime now) const {
  if (queue_.empty()) return false;
  return queue_.size() >= options_.max_batch || now >= deadline();
}

MonotonicTime SpanBatcher::deadline() const {
  if (queue_.empty()) return MonotonicTime::max();
  return queue_.front().at + options_.delay;
}

std::vector<SpanData> SpanBatcher::take() {
  const std::size_t n = std::min(queue_.size(), options_.max_batch);
  std::vector<SpanData> batch;
  batch.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    batch.push_back(std::move(queue_.front().span));
    queue_.pop_front();
  }
  return batch;
}

}  // namespace tunnel::tracing
