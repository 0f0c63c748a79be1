#include "core/agents/usage.hpp"

namespace tunnel::core {

std::shared_ptr<UsageCounters> UsageBook::counters(std::int64_t account_id,
                                                   std::int64_t tunnel_id) {
  std::lock_guard lock(mutex_);
  auto& slot = counters_[{account_id, tunnel_id}];
  if (!slot) slot = std::make_shared<UsageCounters>();
  return slot;
}

std::vector<UsageBook::Sample> UsageBook::take() {
  std::vector<Sample> out;
  std::lock_guard lock(mutex_);
  for (auto it = counters_.begin(); it != counters_.end();) {
    UsageCounters& c = *it->second;
    Sample s;
    s.account_id = it->first.first;
    s.tunnel_id = it->first.second;
    s.requests = c.requests.exchange(0, std::memory_order_relaxed);
    s.bytes_in = c.bytes_in.exchange(0, std::memory_order_relaxed);
    s.bytes_out = c.bytes_out.exchange(0, std::memory_order_relaxed);
    s.errors = c.errors.exchange(0, std::memory_order_relaxed);
    if (s.requests != 0 || s.bytes_in != 0 || s.bytes_out != 0 || s.errors != 0) {
      out.push_back(s);
    }
    // Only the book holds it: no route counts into it any more, and it was just emptied.
    it = it->second.use_count() == 1 ? counters_.erase(it) : std::next(it);
  }
  return out;
}

}  // namespace tunnel::core
