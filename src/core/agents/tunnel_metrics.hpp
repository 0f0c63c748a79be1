// Metrics per tunnel and account (issue 18), bounded by design: a series is labelled only with
// the tunnel's name, its account, a method from a fixed set (or "other"), a status class and an
// error cause from a fixed set; never a path, a client address or a request id. At most
// `max_tunnels` tunnels (metrics.max_tunnels) get their own series; the ones after share the
// series of tunnel="_other" (account "_other") and each is counted in
// tunnel_metrics_overflow_total. Requests that reach no tunnel (400, 404, 503 offline) count
// under tunnel="_none".
//
// The data path never takes a lock for these: a Route holds its TunnelSeries (resolved once, at
// registration), whose counters, gauges and histograms are relaxed atomics. A request counter
// of a method and status class is registered the first time it is used (under the registry's
// lock, once), then read through an atomic pointer.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "observability/metrics.hpp"

namespace tunnel::core {

// Upper bounds in seconds of the request duration histograms: 100 us to 60 s, about three
// buckets per decade (1-2-5), so that P50/P95/P99 interpolate within a factor of 2.5.
inline constexpr double kRequestBuckets[] = {0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01,
                                             0.02,   0.05,   0.1,    0.2,   0.5,   1.0,   2.0,
                                             5.0,    10.0,   20.0,   30.0,  60.0};

// Why a request did not get an answer from the app (the `cause` label). A 5xx the app sent
// itself is not an error here: it is counted in tunnel_requests_total{class="5xx"}.
enum class ErrorCause : std::uint8_t {
  kNoTunnel,          // 404: no tunnel serves the host
  kAgentOffline,      // 503: the name is held but no agent serves it now
  kAgentUnavailable,  // 503: the agent took no stream (max_streams_per_agent, draining)
  kAgentGone,         // 502: the agent dropped the stream or its session ended mid-request
  kAppRefused,        // 502: the agent could not connect to the app
  kAppError,          // 502: the app closed early or sent something that is not HTTP
  kTimeout,           // 504: the app did not answer in time
  kQuota,             // 429 and other quota refusals (requests per second, quotas)
  kTooLarge,          // 413: the body is larger than limits.max_body_bytes
  kBadRequest,        // 400, 408, 431, 501, 505: the request was not valid HTTP/1.1
  kClientGone,        // 499: the client left before the answer began
  kFiltered,          // another filter refused the request
  kCount
};
std::string_view error_cause_name(ErrorCause cause);
// The cause of a request answered by the core itself with `status` (a decision or a filter);
// `routed`: a tunnel was chosen (503 then means the agent took no stream, not offline).
ErrorCause cause_of_local_answer(int status, bool routed);

// The `method` label: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE or other.
inline constexpr std::size_t kMethods = 10;
std::size_t method_index(std::string_view method);
std::string_view method_label(std::size_t index);
// The `class` label's index: 1xx..5xx -> 0..4 (anything else counts as 5xx).
inline constexpr std::size_t kStatusClasses = 5;
inline std::size_t status_class_index(int status) {
  return status >= 100 && status < 600 ? static_cast<std::size_t>(status / 100 - 1) : 4;
}

class TunnelMetricsBook;

// The series of one tunnel (or of "_other" / "_none"). Thread-safe; lives as long as its book.
class TunnelSeries {
 public:
  TunnelSeries(observability::Registry& registry, std::string tunnel, std::string account);

  void count_request(std::size_t method, int status) {
    const std::size_t i = method * kStatusClasses + status_class_index(status);
    observability::Counter* c = requests_[i].load(std::memory_order_acquire);
    if (c == nullptr) c = register_request(i);
    c->inc();
  }
  void count_error(ErrorCause cause) {
    const auto i = static_cast<std::size_t>(cause);
    observability::Counter* c = errors_[i].load(std::memory_order_acquire);
    if (c == nullptr) c = register_error(i);
    c->inc();
  }

  const std::string& tunnel() const { return labels_[0].second; }

  observability::Histogram& open_duration;  // head received -> stream opened to the agent
  observability::Histogram& app_duration;   // stream opened -> response head from the app
  observability::Histogram& duration;       // head received -> end of the response
  observability::Counter& bytes_in;         // relayed from the client, as it is relayed
  observability::Counter& bytes_out;        // written to the client, as it is written
  observability::Gauge& active;             // exchanges being relayed now

 private:
  observability::Counter* register_request(std::size_t i);
  observability::Counter* register_error(std::size_t i);

  observability::Registry& registry_;
  observability::Labels labels_;  // tunnel, account
  std::mutex mutex_;
  std::array<std::atomic<observability::Counter*>, kMethods * kStatusClasses> requests_{};
  std::array<std::atomic<observability::Counter*>, static_cast<std::size_t>(ErrorCause::kCount)>
      errors_{};
};

class TunnelMetricsBook {
 public:
  static constexpr std::string_view kOther = "_other";
  static constexpr std::string_view kNone = "_none";

  // `max_tunnels`: how many (tunnel, account) pairs get their own series (0 = none: all share
  // "_other").
  TunnelMetricsBook(observability::Registry& registry, std::size_t max_tunnels);

  // The series of `tunnel` of `account`: its own while the cap allows (the same object each
  // time it asks again, after reconnects too), else the shared "_other" one.
  std::shared_ptr<TunnelSeries> series(const std::string& tunnel, const std::string& account);
  // Requests that reached no tunnel.
  TunnelSeries& none() { return *none_; }
  std::size_t tracked() const;

 private:
  observability::Registry& registry_;
  std::size_t max_tunnels_;
  observability::Counter& overflow_;
  std::shared_ptr<TunnelSeries> other_;
  std::shared_ptr<TunnelSeries> none_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<TunnelSeries>> series_;
};

}  // namespace tunnel::core
