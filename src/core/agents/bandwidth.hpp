// Bandwidth limits: token buckets per tunnel and per account, one per direction.
//
// A relay calls `co_await throttle(route.throttle, Direction::kIn, n)` after reading n bytes from
// a public client (kIn) or before writing n bytes to one (kOut). Buckets may go into debt: the
// bytes are taken at once and the caller sleeps until the bucket has refilled past zero, so the
// long-run rate is exact whatever the read sizes, and concurrent connections of one tunnel or
// account share its rate in arrival order. Buckets are thread-safe (an account's connections
// live on every worker).
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/time_source.hpp"

namespace tunnel::core {

enum class Direction { kIn, kOut };  // in: from public clients to the app; out: back to them

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;
  // `rate` bytes per second (> 0); bursts up to `burst` bytes after an idle spell. Full at
  // first; refills by `time` (which must outlive the bucket).
  TokenBucket(std::uint64_t rate, std::uint64_t burst, TimeSource& time);
  // Takes `n` bytes; returns how long the caller must wait before sending them (zero if the
  // bucket had them).
  Clock::duration take(std::size_t n) { return take(n, time_.monotonic_time()); }
  // The same at `now` (from the bucket's TimeSource), for callers that take from several.
  Clock::duration take(std::size_t n, MonotonicTime now);
  std::uint64_t rate() const { return rate_.load(std::memory_order_relaxed); }
  TimeSource& time() const { return time_; }
  // Changes the rate (> 0) and burst in place; tokens above the new burst are dropped. `fill`:
  // starts full, as a new bucket does.
  void set_rate(std::uint64_t rate, std::uint64_t burst, bool fill = false);

  // The burst used for a rate: a tenth of a second of traffic, at least 16 KiB.
  static std::uint64_t default_burst(std::uint64_t rate);

 private:
  TimeSource& time_;
  std::mutex mutex_;
  double rate_per_ns_;
  std::atomic<std::uint64_t> rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

class AccountQuota;  // core/agents/quota.hpp

// The buckets one tunnel's traffic passes: its own and its account's, per direction, and the
// account's quota (whose bandwidth, set through the API, may change while traffic runs). Any of
// them may be null (no limit at that level).
struct Throttle {
  std::shared_ptr<TokenBucket> tunnel[2];
  std::shared_ptr<TokenBucket> account[2];
  std::shared_ptr<AccountQuota> quota;
  // Whether any bucket may limit (with a quota: always, its bandwidth may be set later).
  bool limited() const;
  // Whether a bucket limits now: relays skip throttle() when not.
  bool engaged() const;
  // throttle != nullptr && throttle->engaged().
  static bool engaged(const Throttle* throttle) {
    return throttle != nullptr && throttle->engaged();
  }
  // Takes `n` bytes of `direction` from its buckets; returns how long the caller must wait (the
  // slowest bucket's wait; zero when they had the bytes or there is none).
  TokenBucket::Clock::duration take(Direction direction, std::size_t n) const;
  // The tunnel's own rate (bytes/s, 0 = none), for the AUTH reply and logs.
  std::uint64_t tunnel_rate() const;
};

// Sleeps as long as the buckets of `direction` require for `n` bytes. Returns at once when
// `throttle` is null or has no bucket for that direction (callers on the per-byte path test for
// null first, which saves the coroutine).
boost::asio::awaitable<void> throttle(const Throttle* throttle, Direction direction, std::size_t n);

// The per-account buckets, created on first use and kept for the process's life (accounts come
// from the configuration, so there are few).
class AccountBuckets {
 public:
  explicit AccountBuckets(TimeSource& time) : time_(time) {}
  // The bucket of `account` for `direction` at `rate` bytes/s; null when rate is 0.
  std::shared_ptr<TokenBucket> get(const std::string& account, Direction direction,
                                   std::uint64_t rate);

 private:
  TimeSource& time_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<TokenBucket>> buckets_;
};

}  // namespace tunnel::core
