#include "core/agents/context.hpp"

#include <openssl/rand.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <system_error>

#include "mux/session.hpp"

namespace tunnel::core {

CoreMetrics::CoreMetrics(observability::Registry& r)
    : registry(r),
      request_duration(
          r.histogram("tunnel_http_request_duration_seconds",
                      "Time from a public request's head to the end of its response.")),
      bytes_in(r.counter("tunnel_http_bytes_total", "Bytes of public HTTP traffic.",
                         {{"direction", "in"}})),
      bytes_out(r.counter("tunnel_http_bytes_total", "Bytes of public HTTP traffic.",
                          {{"direction", "out"}})),
      agents(r.gauge("tunnel_agents_connected", "Agent sessions connected now.")),
      streams(r.gauge("tunnel_streams_active", "Streams open to agents now.")),
      window_growth(r.gauge("tunnel_stream_window_growth_bytes",
                            "How far the receive windows of streams from agents have grown "
                            "beyond their initial size, in all (auto-tuning).")),
      public_connections(
          r.gauge("tunnel_public_connections", "Public client connections open now.")),
      agent_sessions(r.counter("tunnel_agent_sessions_total", "Agent sessions accepted.")),
      unhealthy_tunnels(r.gauge("tunnel_agent_tunnels_unhealthy",
                                "Tunnels of connected agent sessions whose app fails the "
                                "agent's health check now (they get no new requests).")),
      agent_auth_failures(
          r.counter("tunnel_agent_auth_failures_total", "Agent connections refused at AUTH.")),
      agent_handshakes(r.gauge("tunnel_agent_handshakes",
                               "Agent connections in the TLS handshake or waiting for AUTH now.")),
      agent_handshakes_refused_global(r.counter(
          "tunnel_agent_handshakes_refused_total",
          "Agent connections closed before the TLS handshake: a handshake cap was reached.",
          {{"cap", "global"}})),
      agent_handshakes_refused_address(r.counter(
          "tunnel_agent_handshakes_refused_total",
          "Agent connections closed before the TLS handshake: a handshake cap was reached.",
          {{"cap", "address"}})) {
  mux::register_session_stats(r);
}

void CoreMetrics::count_request(int status) {
  const std::size_t index = status >= 100 && status < 600 ? static_cast<std::size_t>(status) : 0;
  observability::Counter* counter = by_status_[index].load(std::memory_order_acquire);
  if (counter == nullptr) {
    std::lock_guard lock(mutex_);
    counter = &registry.counter("tunnel_http_requests_total",
                                "Public HTTP requests answered, by status code.",
                                {{"code", index == 0 ? "other" : std::to_string(index)}});
    by_status_[index].store(counter, std::memory_order_release);
  }
  counter->inc();
}

bool RateLimiter::allow(const std::string& account) {
  if (rate_ == 0) return true;
  const MonotonicTime now = time_.monotonic_time();
  std::lock_guard lock(mutex_);
  auto [it, inserted] = buckets_.try_emplace(account, Bucket{2.0 * rate_, now});
  Bucket& bucket = it->second;
  const double elapsed = std::chrono::duration<double>(now - bucket.last).count();
  bucket.tokens = std::min(2.0 * rate_, bucket.tokens + elapsed * rate_);
  bucket.last = now;
  if (bucket.tokens < 1.0) return false;
  bucket.tokens -= 1.0;
  return true;
}

CoreContext::CoreContext(Config config_in, observability::Registry& metrics_registry,
                         TimeSource& time_in)
    : time(time_in),
      config(std::move(config_in)),
      auth(config, [&time_in] { return unix_seconds(time_in); }),
      handshake_limiter(HandshakeLimiter::Options{config.limits.max_agent_handshakes,
                                                  config.limits.max_agent_handshakes_per_address,
                                                  std::chrono::seconds(60)}),
      registry(time),
      metrics(metrics_registry),
      tunnel_metrics(metrics_registry, config.metrics.max_tunnels),
      rate_limiter(config.limits.requests_per_second, time),
      account_buckets(time),
      window_budget(std::make_shared<mux::WindowBudget>(config.limits.window_budget_total)),
      quotas(metrics_registry, time) {}

common::Status check_descriptor_reserve(std::uint32_t reserve_setting) {
  rlimit limit{};
  if (reserve_setting == 0 || ::getrlimit(RLIMIT_NOFILE, &limit) != 0 ||
      limit.rlim_cur == RLIM_INFINITY) {
    return common::success();
  }
  const std::uint64_t max = limit.rlim_cur;
  const std::uint64_t reserve = std::min<std::uint64_t>(reserve_setting, max / 4);
  std::error_code ec;
  std::uint64_t open = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++open;
  }
  if (ec || open + reserve <= max) return common::success();
  return common::fail(
      "the core has " + std::to_string(open) + " of its " + std::to_string(max) +
      " file descriptors in use; new ports are refused while fewer than " +
      std::to_string(reserve) +
      " are free (limits.fd_reserve; raise the core's descriptor limit, e.g. LimitNOFILE= "
      "in its systemd unit)");
}

std::string new_request_id() {
  // Ids need to be unique, not secret: a per-thread generator seeded once from the OS CSPRNG
  // keeps RAND_bytes (and its fork check) off the per-request path.
  thread_local std::mt19937_64 generator = [] {
    std::uint64_t seed[4];
    RAND_bytes(reinterpret_cast<unsigned char*>(seed), sizeof seed);
    std::seed_seq sequence(reinterpret_cast<std::uint32_t*>(seed),
                           reinterpret_cast<std::uint32_t*>(seed) + 8);
    return std::mt19937_64(sequence);
  }();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (std::size_t half = 0; half < 2; ++half) {
    std::uint64_t bits = generator();
    for (std::size_t i = 0; i < 16; ++i, bits >>= 4) id[half * 16 + i] = kHex[bits & 0xf];
  }
  return id;
}

}  // namespace tunnel::core
