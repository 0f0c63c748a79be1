#include "common/deadline.hpp"

namespace tunnel {

Deadline::~Deadline() {
  reset();
}

void Deadline::reset() {
  if (state_ == nullptr) return;
  state_->deadline = Clock::time_point::max();
  ++state_->generation;  // the pending handler, if any, sees it is stale
  state_->timer.cancel();
  state_.reset();
}

void Deadline::expires_at(const asio::any_io_executor& executor, Clock::time_point at) {
  if (state_ == nullptr) {
    if (at == Clock::time_point::max()) return;
    state_ = std::make_shared<State>(executor);
  }
  state_->deadline = at;
  if (at == Clock::time_point::max()) return;  // a running timer finds nothing to do and stops
  if (!state_->waiting || at < state_->timer_at) start(state_, at);
}

void Deadline::start(const std::shared_ptr<State>& state, Clock::time_point at) {
  state->timer.expires_at(at);
  state->timer_at = at;
  state->waiting = true;
  const std::uint64_t generation = ++state->generation;
  state->timer.async_wait([state, generation](const boost::system::error_code&) {
    if (generation != state->generation) return;  // re-armed or reset since
    state->waiting = false;
    if (state->deadline == Clock::time_point::max()) return;
    if (Clock::now() >= state->deadline) {
      state->signal.emit(asio::cancellation_type::all);
    } else {
      start(state, state->deadline);  // the deadline moved later while the timer ran
    }
  });
}

}  // namespace tunnel
