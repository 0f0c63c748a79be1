// The filters of today's features. Each is added to a chain only when configured (see
// listener_filters() and tunnel_filters()), so an unconfigured limit costs nothing per request.
#pragma once

#include <memory>

#include "core/agents/context.hpp"
#include "core/edge/http_pipeline.hpp"
#include "protocol/handshake.hpp"

namespace tunnel::core {

// limits.requests_per_second: 429 once the account of the tunnel spent its tokens. Charged once
// per request, before the connection moves to the agent's worker.
class RateLimitFilter final : public HttpFilter {
 public:
  explicit RateLimitFilter(RateLimiter& limiter) : limiter_(limiter) {}
  std::string_view name() const override { return "rate_limit"; }
  unsigned hooks() const override { return hook::kRequestHead; }
  FilterVerdict on_request_head(FilterRequest& request) override;

 private:
  RateLimiter& limiter_;
};

// limits.max_body_bytes: 413 when Content-Length announces more, or when the bytes of a body
// (chunked, or longer than announced) pass the limit while they are relayed.
class BodyLimitFilter final : public HttpFilter {
 public:
  explicit BodyLimitFilter(std::uint64_t max_bytes) : max_bytes_(max_bytes) {}
  std::string_view name() const override { return "body_limit"; }
  unsigned hooks() const override { return hook::kRequestHead | hook::kRequestBody; }
  FilterVerdict on_request_head(FilterRequest& request) override;
  FilterVerdict on_request_body(FilterRequest& request, std::span<const char> bytes) override;

 private:
  std::uint64_t max_bytes_;
};

// A tunnel whose agent sends PROXY headers to its app: OPEN_STREAM starts with the client's and
// the listener's addresses (protocol/proxy_header.hpp) so the agent can write them.
class ProxyAddressesFilter final : public HttpFilter {
 public:
  std::string_view name() const override { return "proxy_addresses"; }
  unsigned hooks() const override { return hook::kRequestHead | hook::kLocalAddr; }
  FilterVerdict on_request_head(FilterRequest& request) override;
};

// The account's quotas of the control plane's store (core/agents/quota.hpp): a request over
// max_connections, max_requests_per_second or bytes_per_month is answered 429 with a problem
// document naming the quota and its value (Retry-After for the last two); an admitted one holds
// one of the account's connections until it completes, and its bytes count for the month.
// Last in the tunnel's chain: nothing after it refuses what it admitted.
class QuotaFilter final : public HttpFilter {
 public:
  explicit QuotaFilter(std::shared_ptr<AccountQuota> quota) : quota_(std::move(quota)) {}
  std::string_view name() const override { return "quota"; }
  unsigned hooks() const override { return hook::kRequestHead | hook::kComplete; }
  FilterVerdict on_request_head(FilterRequest& request) override;
  void on_complete(const FilterRequest& request, const ExchangeSummary& summary) override;

 private:
  std::shared_ptr<AccountQuota> quota_;
};

// tracing.otlp_endpoint (docs/observability.md#tracing): W3C trace context in and out. First in
// the listener's chain. The request head hook reads the client's traceparent (a valid one is the
// parent; an invalid one, or several, is ignored with its tracestate and a new trace starts),
// decides sampling (parent-based, else tracing.sample_ratio) and sets traceparent to the span of
// the trip through the tunnel; the complete hook sends the core's two spans (server: the public
// request; client: the tunnel trip, when a stream was opened) when the request was sampled or
// failed (5xx, or refused by the core). Nothing is allocated for an unsampled request apart
// from the traceparent value the app is sent.
class TracingFilter final : public HttpFilter {
 public:
  explicit TracingFilter(tracing::Tracer& tracer) : tracer_(tracer) {}
  std::string_view name() const override { return "tracing"; }
  unsigned hooks() const override { return hook::kRequestHead | hook::kComplete; }
  FilterVerdict on_request_head(FilterRequest& request) override;
  void on_complete(const FilterRequest& request, const ExchangeSummary& summary) override;

 private:
  tracing::Tracer& tracer_;
};

// The trace context of a request head: its one valid traceparent, else nullopt (none, invalid,
// or more than one field).
std::optional<tracing::TraceContext> incoming_trace(const http::RequestHead& head);

// The 429 answer to a request refused by a quota: the problem document names the quota
// ("quota": "max_requests_per_second") and its value ("limit").
LocalAnswer quota_answer(const QuotaRefusal& refusal, std::string_view host);

// The chain every request of a public HTTP/HTTPS listener passes, from the configuration.
std::shared_ptr<const FilterChain> listener_filters(CoreContext& context);

struct AccessScope;  // core/edge/access.hpp

// The chain of one http tunnel, from what its agent asked for, its account's quota (null in a
// core without a store), when given the access rules of the core and the account (access.hpp,
// first in the chain), and `recording` (a RecordingFilter when a recording rule matches its
// hostname; it goes last); null when it needs none. The error names what the tunnel asked for
// that is wrong (an access rule that does not parse).
common::Result<std::shared_ptr<const FilterChain>> tunnel_filters(
    const protocol::TunnelRequest& request, const std::shared_ptr<AccountQuota>& quota,
    const AccessScope* access = nullptr, std::shared_ptr<HttpFilter> recording = nullptr);

}  // namespace tunnel::core
