#include "tracing/tracer.hpp"

#include <spdlog/spdlog.h>

#include "common/version.hpp"
#include "ctl/http_client.hpp"

namespace tunnel::tracing {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kWarnEvery = std::chrono::seconds(60);

common::Result<ctl::Url> endpoint_url(const std::string& endpoint) {
  auto url = ctl::parse_url(endpoint);
  if (!url) return common::fail("the OTLP endpoint " + url.error().message);
  return url;
}

}  // namespace

std::int64_t unix_nanos(SystemTime time) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
}

common::Status check_endpoint(const std::string& endpoint) {
  auto url = endpoint_url(endpoint);
  if (!url) return common::fail(url.error().message);
  return common::success();
}

common::Result<std::unique_ptr<Tracer>> Tracer::start(TracerOptions options,
                                                      observability::Registry& registry) {
  auto url = endpoint_url(options.endpoint);
  if (!url) return common::fail(url.error().message);
  std::string target = url.value().base_path.empty() ? "/v1/traces" : url.value().base_path;
  std::unique_ptr<Tracer> tracer(new Tracer(std::move(options), std::move(target), registry));
  tracer->thread_ = std::thread([t = tracer.get()] { t->run(); });
  return tracer;
}

Tracer::Tracer(TracerOptions options, std::string target, observability::Registry& registry)
    : options_(std::move(options)),
      target_(std::move(target)),
      exported_(registry.counter("tunnel_trace_spans_exported_total",
                                 "Spans sent to the OTLP endpoint and accepted by it.")),
      dropped_(registry.counter("tunnel_trace_spans_dropped_total",
                                "Spans dropped because the export queue was full.")),
      failed_(registry.counter(
          "tunnel_trace_spans_failed_total",
          "Spans in export requests that failed (endpoint unreachable, timeout, or refused).")),
      batcher_(options_.batch) {}

Tracer::~Tracer() {
  shutdown(std::chrono::milliseconds(0));
}

void Tracer::submit(SpanData&& span) {
  bool wake = false;
  {
    const std::lock_guard lock(mutex_);
    if (stopping_ || !batcher_.push(std::move(span), Clock::now())) {
      dropped_.inc();
      return;
    }
    // The thread sleeps without a deadline while the queue is empty, and until the oldest
    // span's deadline otherwise: wake it for the first span and for a full batch.
    wake = batcher_.size() == 1 || batcher_.size() == batcher_.options().max_batch;
  }
  if (wake) wake_.notify_one();
}

void Tracer::shutdown(std::chrono::milliseconds grace) {
  {
    const std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    flush_until_ = Clock::now() + grace;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Tracer::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    const auto now = Clock::now();
    if (stopping_) {
      if (batcher_.size() == 0 || now >= flush_until_) break;
    } else if (!batcher_.due(now)) {
      const auto deadline = batcher_.deadline();
      if (deadline == MonotonicTime::max()) {
        wake_.wait(lock);
      } else {
        wake_.wait_until(lock, deadline);
      }
      continue;
    }
    std::vector<SpanData> batch = batcher_.take();
    lock.unlock();
    send(batch);
    lock.lock();
  }
  if (const std::size_t left = batcher_.size(); left != 0) {
    dropped_.inc(left);
    spdlog::warn("tracing: {} span(s) not exported at exit", left);
  }
}

void Tracer::send(std::vector<SpanData>& batch) {
  auto url = endpoint_url(options_.endpoint);  // checked by start()
  ctl::HttpClient client(std::move(url).value(), ctl::ClientOptions{"", false, options_.timeout});
  ctl::HttpRequest request;
  request.method = "POST";
  request.target = target_;
  request.headers.emplace_back(
      "User-Agent", std::string(options_.service_name) + "/" + std::string(common::kVersion));
  request.body = encode_otlp_json(options_.service_name, common::kVersion, batch);
  auto response = client.send(request);
  if (response && response.value().status / 100 == 2) {
    exported_.inc(batch.size());
    return;
  }
  failed_.inc(batch.size());
  const auto now = Clock::now();
  if (last_warning_ == Clock::time_point{} || now - last_warning_ >= kWarnEvery) {
    last_warning_ = now;
    spdlog::warn("tracing: exporting {} span(s) to {} failed: {} (repeats not logged for {} s)",
                 batch.size(), options_.endpoint,
                 response ? "HTTP status " + std::to_string(response.value().status)
                          : response.error().message,
                 std::chrono::duration_cast<std::chrono::seconds>(kWarnEvery).count());
  }
}

}  // namespace tunnel::tracing
