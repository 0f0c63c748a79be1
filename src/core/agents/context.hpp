// What every part of the core shares: configuration, accounts, the registry, metrics, and the
// drain state. Built once by Server before any worker starts; read-only afterwards except for
// the thread-safe members.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/result.hpp"
#include "common/time_source.hpp"
#include "core/agents/control_view.hpp"
#include "core/agents/quota.hpp"
#include "core/agents/registry.hpp"
#include "core/agents/tunnel_metrics.hpp"
#include "core/control/auth.hpp"
#include "core/control/auth_limiter.hpp"
#include "core/control/config.hpp"
#include "core/control/handshake_limiter.hpp"
#include "observability/metrics.hpp"
#include "tracing/tracer.hpp"

namespace tunnel::mux {
class WindowBudget;
}

namespace tunnel::core {

namespace asio = boost::asio;

struct CoreMetrics {
  explicit CoreMetrics(observability::Registry& registry);

  // Counts a finished public request by status code.
  void count_request(int status);

  observability::Registry& registry;
  observability::Histogram& request_duration;
  observability::Counter& bytes_in;   // from public clients
  observability::Counter& bytes_out;  // to public clients
  observability::Gauge& agents;
  observability::Gauge& streams;
  observability::Gauge& window_growth;  // of the agents' stream windows, in all
  observability::Gauge& public_connections;
  observability::Counter& agent_sessions;
  observability::Gauge& unhealthy_tunnels;  // tunnels of connected sessions reported unhealthy
  observability::Counter& agent_auth_failures;
  observability::Gauge& agent_handshakes;  // agent connections before AUTH now
  // Agent connections closed unserved because a handshake cap was reached.
  observability::Counter& agent_handshakes_refused_global;
  observability::Counter& agent_handshakes_refused_address;

 private:
  std::array<std::atomic<observability::Counter*>, 600> by_status_{};
  std::mutex mutex_;
};

// Token bucket per account: `rate` requests per second, bursts up to 2x rate; refills by `time`
// (which must outlive the limiter).
class RateLimiter {
 public:
  RateLimiter(std::uint32_t rate, TimeSource& time) : rate_(rate), time_(time) {}
  bool allow(const std::string& account);

 private:
  struct Bucket {
    double tokens;
    MonotonicTime last;
  };
  std::uint32_t rate_;
  TimeSource& time_;
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

struct CoreContext {
  // `time` (the Server's) must outlive the context.
  CoreContext(Config config_in, observability::Registry& metrics_registry, TimeSource& time);

  TimeSource& time;  // every decision by time in the core reads this clock
  Config config;
  Authenticator auth;
  AuthLimiter auth_limiter;            // failed AUTHs per source address
  HandshakeLimiter handshake_limiter;  // agent connections before AUTH
  Registry registry;
  CoreMetrics metrics;
  TunnelMetricsBook tunnel_metrics;  // per tunnel and account (metrics.max_tunnels)
  RateLimiter rate_limiter;
  AccountBuckets account_buckets;       // bandwidth per account
  std::uint16_t public_http_port = 0;   // for the URLs given to agents
  std::uint16_t public_https_port = 0;  // 0 = HTTPS off
  std::uint32_t workers = 0;            // event loops serving traffic (set by the Server)
  std::atomic<bool> draining{false};
  // Window growth for all agents' sessions together (limits.window_budget_total).
  std::shared_ptr<mux::WindowBudget> window_budget;
  // What the control plane's store says (registered agents, API accounts, reservations);
  // null without a store. Swapped by the core after each change; read at each AUTH.
  std::atomic<std::shared_ptr<const ControlView>> control;
  // Requests and bytes per tunnel and account, for the store's usage (written in batches).
  UsageBook usage;
  // The store's quotas per account, enforced on live traffic (core/agents/quota.hpp); routes
  // get one only in a core with a store.
  QuotaBook quotas;
  // OpenTelemetry spans (tracing.otlp_endpoint); null when tracing is off. Set by the Server
  // before the listeners' filters are built.
  std::unique_ptr<tracing::Tracer> tracer;
};

// A fresh request id: 16 random bytes as 32 hex digits.
std::string new_request_id();

// Success while more than `reserve` file descriptors are free (of RLIMIT_NOFILE's soft limit;
// at most a quarter of the limit counts as reserve), else why a new listener is refused, naming
// limits.fd_reserve. Counts /proc/self/fd: for AUTH time, not per request. 0 = no check.
common::Status check_descriptor_reserve(std::uint32_t reserve);

}  // namespace tunnel::core
