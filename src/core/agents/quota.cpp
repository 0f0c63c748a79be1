#include "core/agents/quota.hpp"

#include <algorithm>
#include <cmath>

#include "observability/metrics.hpp"

namespace tunnel::core {

std::string_view quota_name(QuotaKind kind) {
  switch (kind) {
    case QuotaKind::kMaxConnections:
      return "max_connections";
    case QuotaKind::kMaxRequestsPerSecond:
      return "max_requests_per_second";
    case QuotaKind::kBytesPerMonth:
      return "bytes_per_month";
  }
  return "?";
}

std::string QuotaRefusal::describe() const {
  std::string out = "the account's quota " + std::string(quota_name(quota)) + " (" +
                    std::to_string(limit) + ") is reached";
  if (retry_after != 0) out += "; retry in " + std::to_string(retry_after) + " s";
  return out;
}

QuotaMetrics::QuotaMetrics(observability::Registry& registry) {
  static constexpr std::string_view kHelp =
      "Public requests, tcp connections and udp flows refused by an account quota of the "
      "control plane.";
  for (const QuotaKind kind :
       {QuotaKind::kMaxConnections, QuotaKind::kMaxRequestsPerSecond, QuotaKind::kBytesPerMonth}) {
    counters_[static_cast<std::size_t>(kind)] = &registry.counter(
        "tunnel_quota_refusals_total", kHelp, {{"quota", std::string(quota_name(kind))}});
  }
}

observability::Counter& QuotaMetrics::by_kind(QuotaKind kind) const {
  return *counters_[static_cast<std::size_t>(kind)];
}

AccountQuota::AccountQuota(TimeSource& time, const QuotaMetrics* metrics)
    : time_(time), metrics_(metrics) {
  for (auto& bucket : buckets_) bucket = std::make_unique<TokenBucket>(1, 1, time);
}

void AccountQuota::set_limits(const QuotaLimits& limits) {
  max_connections_.store(limits.max_connections, std::memory_order_relaxed);
  max_rps_.store(limits.max_requests_per_second, std::memory_order_relaxed);
  bytes_per_month_.store(limits.bytes_per_month, std::memory_order_relaxed);
  if (const std::uint64_t before = bandwidth_.load(std::memory_order_relaxed);
      limits.bandwidth != before) {
    if (limits.bandwidth != 0) {
      for (auto& bucket : buckets_) {
        // A new limit starts full (as a new bucket); a changed one keeps what it holds.
        bucket->set_rate(limits.bandwidth, TokenBucket::default_burst(limits.bandwidth),
                         before == 0);
      }
    }
    bandwidth_.store(limits.bandwidth, std::memory_order_relaxed);
  }
}

QuotaLimits AccountQuota::limits() const {
  QuotaLimits l;
  l.max_connections = max_connections_.load(std::memory_order_relaxed);
  l.max_requests_per_second = max_rps_.load(std::memory_order_relaxed);
  l.bandwidth = bandwidth_.load(std::memory_order_relaxed);
  l.bytes_per_month = bytes_per_month_.load(std::memory_order_relaxed);
  return l;
}

std::optional<QuotaRefusal> AccountQuota::refuse(QuotaKind kind, std::uint64_t limit,
                                                 std::uint64_t retry) {
  if (metrics_ != nullptr) metrics_->by_kind(kind).inc();
  return QuotaRefusal{kind, limit, retry};
}

std::uint64_t AccountQuota::month_bytes() const {
  const std::int64_t end = month_end_.load(std::memory_order_relaxed);
  const std::uint64_t stored =
      end != 0 && unix_seconds(time_) >= end ? 0 : month_stored_.load(std::memory_order_relaxed);
  const std::int64_t pending = month_pending_.load(std::memory_order_relaxed);
  return stored + static_cast<std::uint64_t>(std::max<std::int64_t>(pending, 0));
}

void AccountQuota::set_month(std::uint64_t stored, std::int64_t month_end, std::uint64_t flushed) {
  month_pending_.fetch_sub(static_cast<std::int64_t>(flushed), std::memory_order_relaxed);
  month_stored_.store(stored, std::memory_order_relaxed);
  month_end_.store(month_end, std::memory_order_relaxed);
}

bool AccountQuota::take_request_token(std::uint64_t rate, std::uint64_t& retry_after) {
  const MonotonicTime now = time_.monotonic_time();
  const auto burst = static_cast<double>(rate);  // one second's worth
  std::lock_guard lock(rps_mutex_);
  if (bucket_rate_ != rate) {
    // A new limit starts full; a changed one keeps its tokens and refills at the new rate.
    if (bucket_rate_ == 0) {
      tokens_ = burst;
      last_ = now;
    }
    bucket_rate_ = rate;
  }
  if (now > last_) {
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst, tokens_ + elapsed * static_cast<double>(rate));
    last_ = now;
  }
  tokens_ = std::min(tokens_, burst);
  if (tokens_ >= 1.0) {
    tokens_ -= 1.0;
    return true;
  }
  retry_after = static_cast<std::uint64_t>(
      std::max(1.0, std::ceil((1.0 - tokens_) / static_cast<double>(rate))));
  return false;
}

std::optional<QuotaRefusal> AccountQuota::admit() {
  if (const std::uint64_t limit = bytes_per_month_.load(std::memory_order_relaxed); limit != 0) {
    if (month_bytes() >= limit) {
      const std::int64_t now = unix_seconds(time_);
      return refuse(
          QuotaKind::kBytesPerMonth, limit,
          static_cast<std::uint64_t>(std::max<std::int64_t>(1, next_month_start(now) - now)));
    }
  }
  const std::uint64_t open = open_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (const std::uint64_t limit = max_connections_.load(std::memory_order_relaxed);
      limit != 0 && open > limit) {
    open_.fetch_sub(1, std::memory_order_relaxed);
    return refuse(QuotaKind::kMaxConnections, limit, 0);
  }
  if (const std::uint64_t rate = max_rps_.load(std::memory_order_relaxed); rate != 0) {
    std::uint64_t retry = 0;
    if (!take_request_token(rate, retry)) {
      open_.fetch_sub(1, std::memory_order_relaxed);
      return refuse(QuotaKind::kMaxRequestsPerSecond, rate, retry);
    }
  }
  return std::nullopt;
}

void AccountQuota::release(std::uint64_t bytes) {
  open_.fetch_sub(1, std::memory_order_relaxed);
  if (bytes != 0) {
    month_pending_.fetch_add(static_cast<std::int64_t>(bytes), std::memory_order_relaxed);
  }
}

TokenBucket::Clock::duration AccountQuota::take_bandwidth(Direction direction, std::size_t n,
                                                          MonotonicTime now) {
  if (bandwidth_.load(std::memory_order_relaxed) == 0) return TokenBucket::Clock::duration::zero();
  return buckets_[static_cast<std::size_t>(direction)]->take(n, now);
}

QuotaBook::QuotaBook(observability::Registry& registry, TimeSource& time)
    : time_(time), metrics_(registry) {}

std::shared_ptr<AccountQuota> QuotaBook::get(const std::string& account) {
  std::lock_guard lock(mutex_);
  auto& slot = quotas_[account];
  if (!slot) slot = std::make_shared<AccountQuota>(time_, &metrics_);
  return slot;
}

std::shared_ptr<AccountQuota> QuotaBook::find(const std::string& account) const {
  std::lock_guard lock(mutex_);
  const auto it = quotas_.find(account);
  return it == quotas_.end() ? nullptr : it->second;
}

void QuotaBook::retain(const std::unordered_set<std::string>& accounts) {
  std::lock_guard lock(mutex_);
  std::erase_if(quotas_, [&](const auto& entry) { return !accounts.contains(entry.first); });
}

std::int64_t month_start(std::int64_t unix_seconds) {
  using namespace std::chrono;
  const sys_days day{floor<days>(sys_seconds{seconds{unix_seconds}})};
  const year_month_day ymd{day};
  return duration_cast<seconds>(sys_days{ymd.year() / ymd.month() / 1}.time_since_epoch()).count();
}

std::int64_t next_month_start(std::int64_t unix_seconds) {
  using namespace std::chrono;
  const sys_days day{floor<days>(sys_seconds{seconds{unix_seconds}})};
  const year_month_day ymd{day};
  const year_month next = year_month{ymd.year(), ymd.month()} + months{1};
  return duration_cast<seconds>(sys_days{next / 1}.time_since_epoch()).count();
}

}  // namespace tunnel::core
