#include "core/agents/tunnel_metrics.hpp"

namespace tunnel::core {
namespace {

constexpr std::string_view kMethodNames[kMethods] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other"};
constexpr std::string_view kClassNames[kStatusClasses] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
constexpr std::string_view kCauseNames[static_cast<std::size_t>(ErrorCause::kCount)] = {
    "no_tunnel", "agent_offline", "agent_unavailable", "agent_gone",  "app_refused", "app_error",
    "timeout",   "quota",         "too_large",         "bad_request", "client_gone", "filtered"};

observability::Labels with(const observability::Labels& base, std::string_view name,
                           std::string_view value) {
  observability::Labels labels = base;
  labels.emplace_back(std::string(name), std::string(value));
  return labels;
}

}  // namespace

std::string_view error_cause_name(ErrorCause cause) {
  const auto i = static_cast<std::size_t>(cause);
  return i < std::size(kCauseNames) ? kCauseNames[i] : "other";
}

ErrorCause cause_of_local_answer(int status, bool routed) {
  switch (status) {
    case 404:
      return routed ? ErrorCause::kFiltered : ErrorCause::kNoTunnel;
    case 503:
      return routed ? ErrorCause::kAgentUnavailable : ErrorCause::kAgentOffline;
    case 429:
      return ErrorCause::kQuota;
    case 413:
      return ErrorCause::kTooLarge;
    case 400:
    case 408:
    case 431:
    case 501:
    case 505:
      return ErrorCause::kBadRequest;
    default:
      return ErrorCause::kFiltered;
  }
}

std::size_t method_index(std::string_view method) {
  // By length first: one or two comparisons for the common methods.
  switch (method.size()) {
    case 3:
      if (method == "GET") return 0;
      if (method == "PUT") return 3;
      break;
    case 4:
      if (method == "POST") return 2;
      if (method == "HEAD") return 1;
      break;
    case 5:
      if (method == "PATCH") return 5;
      if (method == "TRACE") return 8;
      break;
    case 6:
      if (method == "DELETE") return 4;
      break;
    case 7:
      if (method == "OPTIONS") return 6;
      if (method == "CONNECT") return 7;
      break;
    default:
      break;
  }
  return kMethods - 1;
}

std::string_view method_label(std::size_t index) {
  return index < kMethods ? kMethodNames[index] : kMethodNames[kMethods - 1];
}

TunnelSeries::TunnelSeries(observability::Registry& registry, std::string tunnel,
                           std::string account)
    : open_duration(registry.histogram(
          "tunnel_request_open_duration_seconds",
          "Time from a public request's head to its stream opened to the agent, per tunnel.",
          kRequestBuckets, {{"tunnel", tunnel}, {"account", account}})),
      app_duration(registry.histogram("tunnel_request_app_duration_seconds",
                                      "Time from a request's stream opened to the response head "
                                      "(the trip to the agent and the app's time), per tunnel.",
                                      kRequestBuckets, {{"tunnel", tunnel}, {"account", account}})),
      duration(registry.histogram(
          "tunnel_request_duration_seconds",
          "Time from a public request's head to the end of its response, per tunnel.",
          kRequestBuckets, {{"tunnel", tunnel}, {"account", account}})),
      bytes_in(registry.counter(
          "tunnel_transfer_bytes_total",
          "Bytes relayed for public HTTP requests, per tunnel, counted as they are relayed.",
          {{"tunnel", tunnel}, {"account", account}, {"direction", "in"}})),
      bytes_out(registry.counter(
          "tunnel_transfer_bytes_total",
          "Bytes relayed for public HTTP requests, per tunnel, counted as they are relayed.",
          {{"tunnel", tunnel}, {"account", account}, {"direction", "out"}})),
      active(registry.gauge("tunnel_requests_active",
                            "Public HTTP requests being relayed to the agent now, per tunnel.",
                            {{"tunnel", tunnel}, {"account", account}})),
      registry_(registry),
      labels_{{"tunnel", std::move(tunnel)}, {"account", std::move(account)}} {}

observability::Counter* TunnelSeries::register_request(std::size_t i) {
  std::lock_guard lock(mutex_);
  observability::Counter* c = requests_[i].load(std::memory_order_acquire);
  if (c != nullptr) return c;
  auto labels = with(labels_, "method", method_label(i / kStatusClasses));
  labels.emplace_back("class", std::string(kClassNames[i % kStatusClasses]));
  c = &registry_.counter("tunnel_requests_total",
                         "Public HTTP requests answered, per tunnel, method and status class.",
                         labels);
  requests_[i].store(c, std::memory_order_release);
  return c;
}

observability::Counter* TunnelSeries::register_error(std::size_t i) {
  std::lock_guard lock(mutex_);
  observability::Counter* c = errors_[i].load(std::memory_order_acquire);
  if (c != nullptr) return c;
  c = &registry_.counter("tunnel_request_errors_total",
                         "Public HTTP requests the app did not answer, per tunnel and cause (see "
                         "docs/observability.md).",
                         with(labels_, "cause", error_cause_name(static_cast<ErrorCause>(i))));
  errors_[i].store(c, std::memory_order_release);
  return c;
}

TunnelMetricsBook::TunnelMetricsBook(observability::Registry& registry, std::size_t max_tunnels)
    : registry_(registry),
      max_tunnels_(max_tunnels),
      overflow_(registry.counter("tunnel_metrics_overflow_total",
                                 "Tunnel registrations whose metrics went to tunnel=\"_other\": "
                                 "metrics.max_tunnels tunnels had their own series already.")),
      other_(std::make_shared<TunnelSeries>(registry, std::string(kOther), std::string(kOther))),
      none_(std::make_shared<TunnelSeries>(registry, std::string(kNone), std::string(kNone))) {}

std::shared_ptr<TunnelSeries> TunnelMetricsBook::series(const std::string& tunnel,
                                                        const std::string& account) {
  std::lock_guard lock(mutex_);
  auto key = std::make_pair(tunnel, account);
  if (auto it = series_.find(key); it != series_.end()) return it->second;
  if (series_.size() >= max_tunnels_) {
    overflow_.inc();
    return other_;
  }
  auto s = std::make_shared<TunnelSeries>(registry_, tunnel, account);
  series_.emplace(std::move(key), s);
  return s;
}

std::size_t TunnelMetricsBook::tracked() const {
  std::lock_guard lock(mutex_);
  return series_.size();
}

}  // namespace tunnel::core
