// Account quotas on live traffic (issue 17): the store's per-account limits that the data path
// enforces: concurrent public connections, requests per second, bandwidth and bytes per month.
// (max_agents and max_tunnels are enforced at AUTH and by the API.)
//
// One AccountQuota per account, shared by every route of the account (Route::quota), by the
// filters that enforce it (core/edge: QuotaFilter for http, QuotaConnectionFilter for tcp and
// udp) and by the account's bandwidth buckets (Throttle::quota). Its limits are atomics that the
// control thread (core/live_control.cpp) sets in place after each change of the store, so a
// change applies to running traffic without re-registering agents. 0 = no limit.
//
// What counts:
// - a connection: an http request in flight (an upgraded one, WebSocket, for its whole life), a
//   tcp connection, a udp client flow (one source address and port until it idles out);
// - a request: an http request, a new tcp connection, a new udp client flow (what the usage
//   counts as requests); bucket of max_requests_per_second tokens, full at first and after a
//   quiet second (burst = one second's worth);
// - bytes: in + out of finished requests, connections and flows. This calendar month (UTC) =
//   what the store's hourly usage holds for the month (refreshed by the control thread at every
//   usage flush) + what was counted here since the last flush. Over it, new requests and
//   connections are refused until the month turns or the quota rises (running ones finish).
// Connections are counted whatever the limits, so a limit set later sees the ones open now.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/time_source.hpp"
#include "core/agents/bandwidth.hpp"

namespace tunnel::observability {
class Counter;
class Registry;
}  // namespace tunnel::observability

namespace tunnel::core {

struct QuotaLimits {
  std::uint64_t max_connections = 0;
  std::uint64_t max_requests_per_second = 0;
  std::uint64_t bandwidth = 0;  // bytes per second, each direction, all tunnels together
  std::uint64_t bytes_per_month = 0;
  bool operator==(const QuotaLimits&) const = default;
};

enum class QuotaKind { kMaxConnections, kMaxRequestsPerSecond, kBytesPerMonth };
// The quota's key in the API ("max_connections", "max_requests_per_second", "bytes_per_month").
std::string_view quota_name(QuotaKind kind);

// Why a new request or connection was refused.
struct QuotaRefusal {
  QuotaKind quota = QuotaKind::kMaxConnections;
  std::uint64_t limit = 0;
  std::uint64_t retry_after = 0;  // seconds until it may succeed; 0 = unknown (connections)
  // "the account's quota max_connections (2) is reached"
  std::string describe() const;
};

// Refusals by quota: tunnel_quota_refusals_total{quota=...}.
struct QuotaMetrics {
  explicit QuotaMetrics(observability::Registry& registry);
  observability::Counter& by_kind(QuotaKind kind) const;

 private:
  observability::Counter* counters_[3];
};

class AccountQuota {
 public:
  // `time` and `metrics` must outlive the quota; `metrics` may be null (tests).
  AccountQuota(TimeSource& time, const QuotaMetrics* metrics);
  AccountQuota(const AccountQuota&) = delete;
  AccountQuota& operator=(const AccountQuota&) = delete;

  // Any thread; applies to the next admission (and the next bandwidth take).
  void set_limits(const QuotaLimits& limits);
  QuotaLimits limits() const;

  // A new request, connection or udp flow. Admitted: it holds a connection until release().
  // Refused: nothing held, the refusal counted in the metrics.
  std::optional<QuotaRefusal> admit();
  // The admitted request or connection ended having moved `bytes` (in + out).
  void release(std::uint64_t bytes);
  std::uint64_t connections() const { return open_.load(std::memory_order_relaxed); }

  // Bytes this month as the quota sees it now.
  std::uint64_t month_bytes() const;
  // From the control thread: the store holds `stored` bytes for the month that ends at
  // `month_end` (unix seconds), and `flushed` bytes counted here went to the store since the
  // last call. After month_end the stored part counts as 0 until the next call.
  void set_month(std::uint64_t stored, std::int64_t month_end, std::uint64_t flushed);

  // Bandwidth (0 = none): how long to wait before moving `n` bytes of `direction` at `now`.
  std::uint64_t bandwidth() const { return bandwidth_.load(std::memory_order_relaxed); }
  TokenBucket::Clock::duration take_bandwidth(Direction direction, std::size_t n,
                                              MonotonicTime now);
  TimeSource& time() const { return time_; }

 private:
  std::optional<QuotaRefusal> refuse(QuotaKind kind, std::uint64_t limit, std::uint64_t retry);
  bool take_request_token(std::uint64_t rate, std::uint64_t& retry_after);

  TimeSource& time_;
  const QuotaMetrics* metrics_;
  std::atomic<std::uint64_t> max_connections_{0};
  std::atomic<std::uint64_t> max_rps_{0};
  std::atomic<std::uint64_t> bandwidth_{0};
  std::atomic<std::uint64_t> bytes_per_month_{0};
  std::atomic<std::uint64_t> open_{0};
  // This month: the store's part (valid until month_end_) and what was counted since the last
  // flush (may dip below 0 briefly: a flush can take bytes before they are added here).
  std::atomic<std::uint64_t> month_stored_{0};
  std::atomic<std::int64_t> month_end_{0};  // 0 = not known yet
  std::atomic<std::int64_t> month_pending_{0};
  // Requests per second.
  std::mutex rps_mutex_;
  double tokens_ = 0;
  std::uint64_t bucket_rate_ = 0;  // the rate tokens_ was filled for
  MonotonicTime last_{};
  // Bandwidth, one bucket per direction (their rate follows bandwidth_).
  std::unique_ptr<TokenBucket> buckets_[2];
};

// The quota of every account, created on first use (by the gateway when it builds a route, or
// by the control thread when it sets limits) and kept for the process's life.
class QuotaBook {
 public:
  QuotaBook(observability::Registry& registry, TimeSource& time);
  std::shared_ptr<AccountQuota> get(const std::string& account);
  // The quota of `account` if it has one, else null.
  std::shared_ptr<AccountQuota> find(const std::string& account) const;
  // Forgets the quotas of accounts not in `accounts` (deleted ones); routes that still hold one
  // keep it until they end.
  void retain(const std::unordered_set<std::string>& accounts);
  const QuotaMetrics& metrics() const { return metrics_; }

 private:
  TimeSource& time_;
  QuotaMetrics metrics_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<AccountQuota>> quotas_;
};

// The first second of the calendar month (UTC) after the one `unix_seconds` is in.
std::int64_t next_month_start(std::int64_t unix_seconds);
// The first second of the calendar month (UTC) that `unix_seconds` is in.
std::int64_t month_start(std::int64_t unix_seconds);

}  // namespace tunnel::core
