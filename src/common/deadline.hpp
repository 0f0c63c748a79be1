// A read deadline without a second coroutine.
//
// with_timeout() races the operation against a timer in a parallel group: two coroutines, a
// group state and a timer per call. On the proxy's hot path (a read per request, per
// connection) that was a large share of the instructions and allocations per request. A
// Deadline instead cancels whatever operation is bound to its slot() once the deadline passes.
// Moving the deadline later, which every keep-alive request does, only writes a field: the one
// timer, when it fires before the current deadline, re-arms itself for it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>

namespace tunnel {

namespace asio = boost::asio;

// Lives on one executor, like the I/O object whose reads it guards; not thread-safe.
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  Deadline() = default;
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  // From now on, the operation bound to slot() is cancelled (cancellation_type::all) when `at`
  // passes; time_point::max() means never. The timer runs on `executor`, which must be the one
  // the guarded operations run on.
  void expires_at(const asio::any_io_executor& executor, Clock::time_point at);
  // Forgets the timer (for an owner that moves to another executor); the deadline is cleared.
  void reset();

  bool armed() const { return state_ != nullptr && state_->deadline != Clock::time_point::max(); }
  bool passed() const { return armed() && Clock::now() >= state_->deadline; }
  // Bind an operation to this slot (asio::bind_cancellation_slot) to put it under the deadline.
  asio::cancellation_slot slot() { return state_->signal.slot(); }

 private:
  // Shared with the pending timer handler, which may run after the owner is gone.
  struct State {
    explicit State(const asio::any_io_executor& executor) : timer(executor) {}
    asio::steady_timer timer;
    asio::cancellation_signal signal;
    Clock::time_point deadline = Clock::time_point::max();
    Clock::time_point timer_at = Clock::time_point::max();  // the timer's expiry while waiting
    bool waiting = false;
    std::uint64_t generation = 0;  // a handler of an older wait does nothing
  };
  static void start(const std::shared_ptr<State>& state, Clock::time_point at);

  std::shared_ptr<State> state_;
};

}  // namespace tunnel
