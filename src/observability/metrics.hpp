// Metrics registry rendered in the Prometheus text exposition format 0.0.4.
//
// Register metrics once at startup and keep the returned references: registration takes a lock,
// while Counter::inc, Gauge::set and Histogram::observe are lock-free (relaxed atomics) and safe
// from any thread. A metric lives as long as its Registry. Every call with the same name adds a
// series to one family (one # HELP / # TYPE block); the same name and labels return the same
// series. Misuse at registration (bad name, a name reused with another type) throws
// std::invalid_argument: it is a programming error, found by the first test that runs it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tunnel::observability {

// Label name/value pairs of one series, e.g. {{"code", "200"}}. Rendered in the given order.
using Labels = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Upper bounds in seconds for request and connect latencies: 5 ms .. 10 s.
inline constexpr double kLatencyBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                             0.5,   1.0,  2.5,   5.0,  10.0};

class Counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double d = 1) { value_.fetch_add(d, std::memory_order_relaxed); }
  void dec(double d = 1) { value_.fetch_sub(d, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `upper_bounds` must be strictly increasing and finite; +Inf is implicit.
  explicit Histogram(std::span<const double> upper_bounds);

  void observe(double v);

  std::span<const double> upper_bounds() const { return bounds_; }
  // Observations in bucket `i` alone (not cumulative); i == upper_bounds().size() is +Inf.
  std::uint64_t bucket_count(std::size_t i) const {
    return counts_[i].load(std::memory_order_relaxed);
  }
  std::uint64_t count() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help,
                       std::span<const double> upper_bounds = kLatencyBuckets,
                       const Labels& labels = {});

  // Series whose value is computed by `read` at render time (process metrics, queue sizes).
  // `read` runs under the registry lock and must not call back into the registry.
  void counter_fn(std::string_view name, std::string_view help, std::function<double()> read,
                  const Labels& labels = {});
  void gauge_fn(std::string_view name, std::string_view help, std::function<double()> read,
                const Labels& labels = {});

  // The whole registry as exposition text: families in registration order, each with
  // # HELP and # TYPE lines, then its series in registration order.
  std::string render() const;

 private:
  struct Family;
  struct Series;
  Series& series(std::string_view name, std::string_view help, std::string_view type,
                 const Labels& labels, bool& created);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Family>> families_;
};

// The process-wide registry served on /metrics, with the process metrics registered.
Registry& default_registry();

// Adds process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds and process_start_time_seconds (read from /proc).
void register_process_metrics(Registry& registry);

// Formats a sample value as Prometheus expects: shortest round-trip form, "+Inf", "NaN".
std::string format_value(double v);

}  // namespace tunnel::observability
