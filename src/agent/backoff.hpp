// Reconnect delays: exponential backoff with full jitter (each delay uniform in [0, ceiling],
// the ceiling doubling from `base` up to `cap`), so agents cut off together by a core restart
// do not all come back in the same millisecond.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace tunnel::agent {

class Backoff {
 public:
  using Duration = std::chrono::milliseconds;

  Backoff(Duration base, Duration cap, std::uint64_t seed);
  explicit Backoff(std::uint64_t seed)
      : Backoff(std::chrono::milliseconds(100), std::chrono::seconds(10), seed) {}

  // The next delay (uniform in [0, ceiling()]); then the ceiling doubles, up to the cap.
  Duration next();
  // After a connection that lived long enough: start again from `base`.
  void reset();

  // The upper bound of the delay next() returns.
  Duration ceiling() const { return ceiling_; }
  int attempts() const { return attempts_; }

 private:
  Duration base_;
  Duration cap_;
  Duration ceiling_;
  int attempts_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace tunnel::agent
