// The tracer of a process (the core's or the agent's): the sampling ratio, and the exporter that
// sends finished spans over OTLP/HTTP JSON (POST /v1/traces) from a thread of its own. The data
// path only decides (no lock), and for a kept span takes a short lock to queue it; the queue is
// bounded (BatchOptions::max_queue) and a full queue drops the span and counts it, so a slow or
// absent collector never slows a request. Counted in the process's registry:
//   tunnel_trace_spans_exported_total, tunnel_trace_spans_dropped_total,
//   tunnel_trace_spans_failed_total (in batches the collector refused or could not be sent).
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/result.hpp"
#include "observability/metrics.hpp"
#include "tracing/batcher.hpp"
#include "tracing/span.hpp"
#include "tracing/trace_context.hpp"

namespace tunnel::tracing {

struct TracerOptions {
  // "http://host:4318" (then POST /v1/traces) or a full URL with its path
  // ("https://tempo.example.org/otlp/v1/traces"); https verifies with the system's CAs.
  std::string endpoint;
  std::string service_name;  // the resource's service.name: "tunnel-core", "tunnel-agent"
  double sample_ratio = 1.0;
  BatchOptions batch{};
  std::chrono::milliseconds timeout{10'000};  // per export request
};

// Checks an endpoint as TracerOptions::endpoint takes it; the failure says what is wrong.
common::Status check_endpoint(const std::string& endpoint);

class Tracer {
 public:
  // Starts the exporter thread; fails when the endpoint is not an http(s) URL.
  static common::Result<std::unique_ptr<Tracer>> start(TracerOptions options,
                                                       observability::Registry& registry);
  ~Tracer();  // shutdown(0) if not done
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  double sample_ratio() const { return options_.sample_ratio; }
  // Parent-based, else the ratio (should_sample()).
  bool sample(const std::optional<TraceContext>& parent, const TraceId& trace_id) const {
    return should_sample(parent, trace_id, options_.sample_ratio);
  }
  // Queues a finished span for export; drops it (counted) when the queue is full. Never waits
  // for the network.
  void submit(SpanData&& span);
  // Exports what is queued (for at most `grace`) and stops the thread. Idempotent.
  void shutdown(std::chrono::milliseconds grace);

 private:
  Tracer(TracerOptions options, std::string target, observability::Registry& registry);
  void run();
  // Sends one batch; counts it as exported or failed.
  void send(std::vector<SpanData>& batch);

  TracerOptions options_;
  std::string target_;  // the request target: "/v1/traces"
  observability::Counter& exported_;
  observability::Counter& dropped_;
  observability::Counter& failed_;
  std::mutex mutex_;
  std::condition_variable wake_;
  SpanBatcher batcher_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point flush_until_{};  // set by shutdown()
  std::chrono::steady_clock::time_point last_warning_{};
  std::thread thread_;
};

// The current wall-clock time in nanoseconds since the unix epoch, for span times.
std::int64_t unix_nanos(SystemTime time);

}  // namespace tunnel::tracing
