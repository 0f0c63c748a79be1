// The clock that decisions read: "is this session silent?", "has this hold expired?", "may
// this account send another request?". Envoy's TimeSource is the model.
//
// Code that decides by time takes a TimeSource& (from Server or the agent's main, which own a
// RealTimeSource) instead of calling std::chrono clocks itself, so that its unit tests run on a
// SimulatedTimeSource that they advance by hand: no sleeps, no wall-clock bounds, and exact
// boundaries ("the hold ends after exactly 10 minutes").
//
// Asio timers keep their own clock (steady_clock): a coroutine that waits until a time computed
// from a TimeSource waits `that time - monotonic_time()` on a timer, then decides again with a
// fresh monotonic_time(). Under a SimulatedTimeSource such a wait passes in real time while the
// simulated clock stands still; tests drive the decision, not the wait.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tunnel {

using MonotonicTime = std::chrono::steady_clock::time_point;
using SystemTime = std::chrono::system_clock::time_point;

class TimeSource {
 public:
  virtual ~TimeSource() = default;
  // For intervals and deadlines: never goes back.
  virtual MonotonicTime monotonic_time() const = 0;
  // Wall-clock time, for what is written down or compared with other machines (unix times,
  // JWT expiry, the ownership file).
  virtual SystemTime system_time() const = 0;
};

// `time`'s system time in whole seconds since the unix epoch (JWT claims, the ownership file).
inline std::int64_t unix_seconds(const TimeSource& time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.system_time().time_since_epoch())
      .count();
}

// The process's clocks. Stateless: one per program, owned by its main (Server, the agent's run).
class RealTimeSource final : public TimeSource {
 public:
  MonotonicTime monotonic_time() const override { return std::chrono::steady_clock::now(); }
  SystemTime system_time() const override { return std::chrono::system_clock::now(); }
};

// A clock for tests: stands still until advance() moves it. Both times move together. Starts at
// a monotonic time far from zero (code may use time_point{} as "never") and at a fixed system
// time (2026-01-01T00:00:00Z). Thread-safe.
class SimulatedTimeSource final : public TimeSource {
 public:
  static constexpr std::chrono::seconds kStartSinceEpoch{1'767'225'600};  // 2026-01-01

  MonotonicTime monotonic_time() const override {
    return MonotonicTime(std::chrono::steady_clock::duration(elapsed_.load())) + kMonotonicStart;
  }
  SystemTime system_time() const override {
    return SystemTime(kStartSinceEpoch) +
           std::chrono::duration_cast<std::chrono::system_clock::duration>(
               std::chrono::steady_clock::duration(elapsed_.load()));
  }
  // Moves both clocks forward by `d` (>= 0).
  void advance(std::chrono::steady_clock::duration d) { elapsed_ += d.count(); }

 private:
  static constexpr std::chrono::hours kMonotonicStart{1000};
  std::atomic<std::chrono::steady_clock::rep> elapsed_{0};
};

}  // namespace tunnel
