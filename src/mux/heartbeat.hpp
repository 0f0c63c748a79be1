// The heartbeat decisions of a Session, apart from its I/O: when to PING, when the peer counts
// as silent (open_stream refuses) and when it is dropped. Pure: the Session passes the time of
// its TimeSource, so these decisions are unit-tested on a simulated clock, to the nanosecond.
#pragma once

#include <algorithm>
#include <chrono>

#include "common/time_source.hpp"

namespace tunnel::mux {

class Heartbeat {
 public:
  // `interval`: between our PINGs (and the peer's, which we answer). `timeout`: the silence
  // after which the peer is dropped. `send_pings`: false for a v1 core, which only answers.
  Heartbeat(std::chrono::milliseconds interval, std::chrono::milliseconds timeout, bool send_pings,
            MonotonicTime now)
      : interval_(interval),
        timeout_(timeout),
        send_pings_(send_pings),
        last_received_(now),
        next_ping_(now + interval) {}

  // A frame arrived at `now`.
  void received(MonotonicTime now) {
    last_received_ = now;
    silent_ = false;
  }

  struct Step {
    bool drop = false;  // the peer was silent for `timeout`: end the session
    bool ping = false;  // send a PING now
  };
  // Decides at `now`. While `reading_paused` (v1 backpressure: we do not read, so the peer's
  // silence proves nothing) the peer is neither marked silent nor dropped.
  Step check(MonotonicTime now, bool reading_paused) {
    Step step;
    if (!reading_paused) {
      const auto quiet = now - last_received_;
      if (quiet >= timeout_) {
        step.drop = true;
        return step;
      }
      // A peer that answers our PINGs is never this quiet; received() clears it.
      if (send_pings_ && quiet >= silent_after()) silent_ = true;
    }
    if (now < next_ping_) return step;
    next_ping_ = now + interval_;
    step.ping = send_pings_;
    return step;
  }

  // When check() has something new to decide: the next PING, or exactly when the silence
  // reaches the silent bound or the timeout.
  MonotonicTime next_check(bool reading_paused) const {
    auto wake = next_ping_;
    if (!reading_paused) {
      wake = std::min(wake, last_received_ + timeout_);
      if (!silent_ && send_pings_) wake = std::min(wake, last_received_ + silent_after());
    }
    return wake;
  }

  // Nothing received for silent_after() although we PING every interval.
  bool silent() const { return silent_; }
  // How long the peer may be quiet before it counts as silent: 2 intervals (it answers every
  // PING), at most the timeout.
  std::chrono::milliseconds silent_after() const { return std::min(2 * interval_, timeout_); }
  std::chrono::milliseconds timeout() const { return timeout_; }
  MonotonicTime last_received() const { return last_received_; }

 private:
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds timeout_;
  bool send_pings_;
  MonotonicTime last_received_;
  MonotonicTime next_ping_;
  bool silent_ = false;
};

}  // namespace tunnel::mux
