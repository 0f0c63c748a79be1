#include "core/control/handshake_limiter.hpp"

#include "core/control/auth_limiter.hpp"

namespace tunnel::core {

void HandshakeLimiter::Slot::release() {
  if (limiter_ == nullptr) return;
  limiter_->give_back(key_);
  limiter_ = nullptr;
}

HandshakeLimiter::Slot HandshakeLimiter::try_acquire(std::string_view ip, Refusal& why) {
  std::string key = AuthLimiter::key_of(ip);
  std::lock_guard lock(mutex_);
  if (in_use_ >= options_.global) {
    why = Refusal::kGlobal;
    return {};
  }
  auto [it, inserted] = per_address_.try_emplace(key, 0);
  if (it->second >= options_.per_address) {
    if (inserted) per_address_.erase(it);
    why = Refusal::kAddress;
    return {};
  }
  ++it->second;
  ++in_use_;
  why = Refusal::kNone;
  return Slot(this, std::move(key));
}

void HandshakeLimiter::give_back(const std::string& key) {
  std::lock_guard lock(mutex_);
  if (in_use_ > 0) --in_use_;
  auto it = per_address_.find(key);
  if (it == per_address_.end()) return;
  if (it->second <= 1) {
    per_address_.erase(it);
  } else {
    --it->second;
  }
}

bool HandshakeLimiter::record_refusal(std::string_view ip, Refusal why, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (now - interval_start_ >= options_.log_interval && unlogged_.global == 0 &&
      unlogged_.address == 0) {
    interval_start_ = now;
    return true;
  }
  ++(why == Refusal::kGlobal ? unlogged_.global : unlogged_.address);
  unlogged_.last_address = AuthLimiter::key_of(ip);
  return false;
}

HandshakeLimiter::Summary HandshakeLimiter::take_summary(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if ((unlogged_.global == 0 && unlogged_.address == 0) ||
      now - interval_start_ < options_.log_interval) {
    return {};
  }
  Summary out = std::move(unlogged_);
  unlogged_ = {};
  interval_start_ = now;
  return out;
}

std::size_t HandshakeLimiter::in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

std::size_t HandshakeLimiter::in_use(std::string_view ip) const {
  const std::string key = AuthLimiter::key_of(ip);
  std::lock_guard lock(mutex_);
  auto it = per_address_.find(key);
  return it == per_address_.end() ? 0 : it->second;
}

std::size_t HandshakeLimiter::addresses() const {
  std::lock_guard lock(mutex_);
  return per_address_.size();
}

}  // namespace tunnel::core
