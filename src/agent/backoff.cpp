#include "agent/backoff.hpp"

#include <algorithm>

namespace tunnel::agent {

Backoff::Backoff(Duration base, Duration cap, std::uint64_t seed)
    : base_(std::max(base, Duration(1))), cap_(std::max(cap, base_)), ceiling_(base_), rng_(seed) {}

Backoff::Duration Backoff::next() {
  std::uniform_int_distribution<Duration::rep> pick(0, ceiling_.count());
  const Duration delay(pick(rng_));
  ++attempts_;
  ceiling_ = ceiling_ >= cap_ / 2 ? cap_ : ceiling_ * 2;
  return delay;
}

void Backoff::reset() {
  ceiling_ = base_;
  attempts_ = 0;
}

}  // namespace tunnel::agent
