#include "core/agents/bandwidth.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/agents/quota.hpp"

namespace tunnel::core {

TokenBucket::TokenBucket(std::uint64_t rate, std::uint64_t burst, TimeSource& time)
    : time_(time),
      rate_per_ns_(static_cast<double>(rate) / 1e9),
      rate_(rate),
      burst_(static_cast<double>(burst)),
      tokens_(static_cast<double>(burst)),
      last_(time.monotonic_time()) {}

std::uint64_t TokenBucket::default_burst(std::uint64_t rate) {
  return std::max<std::uint64_t>(rate / 10, 16 * 1024);
}

void TokenBucket::set_rate(std::uint64_t rate, std::uint64_t burst, bool fill) {
  const MonotonicTime now = time_.monotonic_time();
  std::lock_guard lock(mutex_);
  rate_per_ns_ = static_cast<double>(rate) / 1e9;
  rate_.store(rate, std::memory_order_relaxed);
  burst_ = static_cast<double>(burst);
  if (fill) {
    tokens_ = burst_;
    last_ = now;
  }
  tokens_ = std::min(tokens_, burst_);
}

TokenBucket::Clock::duration TokenBucket::take(std::size_t n, MonotonicTime now) {
  std::lock_guard lock(mutex_);
  if (now > last_) {
    const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_);
    tokens_ = std::min(burst_, tokens_ + static_cast<double>(elapsed.count()) * rate_per_ns_);
    last_ = now;
  }
  tokens_ -= static_cast<double>(n);
  if (tokens_ >= 0) return Clock::duration::zero();
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::nanoseconds(static_cast<std::int64_t>(-tokens_ / rate_per_ns_)));
}

bool Throttle::limited() const {
  return tunnel[0] || tunnel[1] || account[0] || account[1] || quota;
}

bool Throttle::engaged() const {
  return tunnel[0] || tunnel[1] || account[0] || account[1] || (quota && quota->bandwidth() != 0);
}

std::uint64_t Throttle::tunnel_rate() const {
  return tunnel[0] ? tunnel[0]->rate() : 0;
}

TokenBucket::Clock::duration Throttle::take(Direction direction, std::size_t n) const {
  const auto d = static_cast<std::size_t>(direction);
  const TokenBucket* first = tunnel[d] ? tunnel[d].get() : account[d].get();
  auto wait = TokenBucket::Clock::duration::zero();
  const bool by_quota = quota && quota->bandwidth() != 0;
  if (first == nullptr && !by_quota) return wait;
  // One reading for every bucket.
  const MonotonicTime now =
      first != nullptr ? first->time().monotonic_time() : quota->time().monotonic_time();
  if (tunnel[d]) wait = std::max(wait, tunnel[d]->take(n, now));
  if (account[d]) wait = std::max(wait, account[d]->take(n, now));
  if (by_quota) wait = std::max(wait, quota->take_bandwidth(direction, n, now));
  return wait;
}

boost::asio::awaitable<void> throttle(const Throttle* throttle, Direction direction,
                                      std::size_t n) {
  if (throttle == nullptr || n == 0) co_return;
  const auto wait = throttle->take(direction, n);
  if (wait <= TokenBucket::Clock::duration::zero()) co_return;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, wait);
  co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
}

std::shared_ptr<TokenBucket> AccountBuckets::get(const std::string& account, Direction direction,
                                                 std::uint64_t rate) {
  if (rate == 0) return nullptr;
  const std::string key = account + (direction == Direction::kIn ? "/in" : "/out");
  std::lock_guard lock(mutex_);
  auto& bucket = buckets_[key];
  if (!bucket || bucket->rate() != rate) {
    bucket = std::make_shared<TokenBucket>(rate, TokenBucket::default_burst(rate), time_);
  }
  return bucket;
}

}  // namespace tunnel::core
