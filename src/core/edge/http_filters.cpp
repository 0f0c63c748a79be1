#include "core/edge/http_filters.hpp"

#include <algorithm>
#include <array>
#include <boost/algorithm/string/predicate.hpp>
#include <chrono>
#include <limits>

#include "core/agents/agent_gateway.hpp"
#include "core/edge/access.hpp"
#include "protocol/proxy_header.hpp"
#include "tracing/span_in.hpp"

namespace tunnel::core {

FilterVerdict RateLimitFilter::on_request_head(FilterRequest& request) {
  if (limiter_.allow(request.decision.route.agent->account)) return FilterVerdict::next();
  return FilterVerdict::respond(
      429, "Too many requests for " + request.decision.host + "; slow down.", false);
}

FilterVerdict BodyLimitFilter::on_request_head(FilterRequest& request) {
  const std::string* length = request.head.find("Content-Length");
  if (length == nullptr) return FilterVerdict::next();
  // The parser accepted the field, so it is all digits and fits in 64 bits.
  const std::uint64_t announced = std::stoull(*length);
  if (announced <= max_bytes_) return FilterVerdict::next();
  return FilterVerdict::respond(413,
                                "The request body of " + std::to_string(announced) +
                                    " bytes is larger than the limit of " +
                                    std::to_string(max_bytes_) + " bytes.",
                                true);
}

FilterVerdict BodyLimitFilter::on_request_body(FilterRequest& request, std::span<const char>) {
  if (request.body_bytes <= max_bytes_) return FilterVerdict::next();
  return FilterVerdict::respond(
      413, "The request body is larger than the limit of " + std::to_string(max_bytes_) + " bytes.",
      true);
}

FilterVerdict ProxyAddressesFilter::on_request_head(FilterRequest& request) {
  request.open_prefix += protocol::format_addresses(request.client_peer, request.local_addr);
  request.open_prefix += '\n';
  return FilterVerdict::next();
}

std::optional<tracing::TraceContext> incoming_trace(const http::RequestHead& head) {
  const std::string* found = nullptr;
  for (const http::Header& field : head.headers) {
    if (field.name.size() != 11 || !boost::algorithm::iequals(field.name, "traceparent")) continue;
    if (found != nullptr) return std::nullopt;  // several: not one context
    found = &field.value;
  }
  if (found == nullptr) return std::nullopt;
  return tracing::parse_traceparent(*found);
}

FilterVerdict TracingFilter::on_request_head(FilterRequest& request) {
  tracing::RequestTrace& trace = request.trace;
  const auto parent = incoming_trace(request.head);
  if (parent) {
    trace.trace_id = parent->trace_id;
    trace.parent_span_id = parent->span_id;
  } else {
    trace.trace_id = tracing::new_trace_id();
    request.head.remove("tracestate");  // it belonged to the context that was not valid
  }
  trace.span_id = tracing::new_span_id();
  trace.child_span_id = tracing::new_span_id();
  trace.flags = tracer_.sample(parent, trace.trace_id) ? tracing::kSampledFlag : 0;
  trace.active = true;
  std::array<char, tracing::kTraceparentLength> value{};
  tracing::write_traceparent(value.data(), trace.trace_id, trace.child_span_id, trace.flags);
  request.head.set("traceparent", std::string_view(value.data(), value.size()));
  return FilterVerdict::next();
}

namespace {

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::string_view ip_of(std::string_view peer) {
  const auto colon = peer.rfind(':');
  std::string_view ip = colon == std::string_view::npos ? peer : peer.substr(0, colon);
  if (ip.size() > 2 && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
  return ip;
}

}  // namespace

void TracingFilter::on_complete(const FilterRequest& request, const ExchangeSummary& summary) {
  const tracing::RequestTrace& trace = request.trace;
  if (!trace.active) return;
  const bool failed = summary.status >= 500 || !summary.relayed;
  if (!trace.sampled() && !failed) return;  // kept: sampled, or an error (a bounded tail)
  const auto now = std::chrono::steady_clock::now();
  const std::int64_t end = tracing::unix_nanos(std::chrono::system_clock::now());
  const auto since_head =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - request.decision.head_at);
  const std::string method = request.head.method;
  const std::string& host = request.decision.host;
  const std::string request_id = request.request_id != nullptr ? *request.request_id : "";
  const auto status = static_cast<std::int64_t>(summary.status);
  const std::string status_text = "HTTP " + std::to_string(summary.status);

  tracing::SpanData server =
      tracing::span_in(trace, tracing::SpanOf::kRequest, tracing::SpanKind::kServer, method, end,
                       since_head.count());
  server.error = summary.status >= 500 || summary.status == 0;
  if (server.error)
    server.status_message = summary.status == 0 ? "closed without an answer" : status_text;
  server.attributes = {
      {"http.request.method", method},
      {"url.path", std::string(path_of(request.head.target))},
      {"url.scheme", std::string(request.tls ? "https" : "http")},
      {"server.address", host},
      {"client.address", std::string(ip_of(request.client_peer))},
      {"http.response.status_code", status},
      {"tunnel.name", host},
      {"tunnel.request_id", request_id},
  };
  if (const auto& agent = request.decision.route.agent) {
    server.attributes.push_back({"tunnel.account", agent->account});
  }
  if (summary.relayed) {
    tracing::SpanData client =
        tracing::span_in(trace, tracing::SpanOf::kHandedOn, tracing::SpanKind::kClient,
                         method + " tunnel", end, static_cast<std::int64_t>(summary.seconds * 1e9));
    client.error = summary.status >= 500 || summary.status == 0;
    if (client.error) client.status_message = server.status_message;
    client.attributes = {
        {"http.request.method", method},       {"server.address", request.decision.route.local},
        {"http.response.status_code", status}, {"tunnel.name", host},
        {"tunnel.request_id", request_id},
    };
    tracer_.submit(std::move(client));
  }
  tracer_.submit(std::move(server));
}

std::shared_ptr<const FilterChain> listener_filters(CoreContext& context) {
  std::vector<std::shared_ptr<HttpFilter>> filters;
  if (context.tracer) filters.push_back(std::make_shared<TracingFilter>(*context.tracer));
  const LimitsConfig& limits = context.config.limits;
  if (limits.requests_per_second != 0) {
    filters.push_back(std::make_shared<RateLimitFilter>(context.rate_limiter));
  }
  if (limits.max_body_bytes != 0) {
    filters.push_back(std::make_shared<BodyLimitFilter>(limits.max_body_bytes));
  }
  return std::make_shared<const FilterChain>(std::move(filters));
}

namespace {

// `s` as a JSON string (quotes included).
void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (const auto u = static_cast<unsigned char>(c); u < 0x20) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out += kHex[u >> 4];
      out += kHex[u & 0xfu];
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace

LocalAnswer quota_answer(const QuotaRefusal& refusal, std::string_view host) {
  const std::string_view quota = quota_name(refusal.quota);
  std::string detail = std::string(host) + ": " + refusal.describe() + ".";
  std::string problem =
      R"({"type":"urn:tunnel:problem:quota-exceeded","title":"Too Many Requests","status":429,"detail":)";
  append_json_string(problem, detail);
  problem += R"(,"quota":)";
  append_json_string(problem, quota);
  problem += R"(,"limit":)";
  problem += std::to_string(refusal.limit);
  if (refusal.retry_after != 0) {
    problem += R"(,"retry_after":)";
    problem += std::to_string(refusal.retry_after);
  }
  problem += '}';
  LocalAnswer answer;
  answer.status = 429;
  answer.detail = std::move(detail);
  answer.retry_after = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(refusal.retry_after, std::numeric_limits<std::uint32_t>::max()));
  answer.problem = std::move(problem);
  return answer;
}

FilterVerdict QuotaFilter::on_request_head(FilterRequest& request) {
  if (const auto refusal = quota_->admit()) {
    return {FilterVerdict::Kind::kAnswer, quota_answer(*refusal, request.decision.host)};
  }
  request.held |= held::kQuotaSlot;
  return FilterVerdict::next();
}

void QuotaFilter::on_complete(const FilterRequest& request, const ExchangeSummary& summary) {
  if ((request.held & held::kQuotaSlot) == 0) return;
  quota_->release(summary.bytes_in + summary.bytes_out);
}

common::Result<std::shared_ptr<const FilterChain>> tunnel_filters(
    const protocol::TunnelRequest& request, const std::shared_ptr<AccountQuota>& quota,
    const AccessScope* access, std::shared_ptr<HttpFilter> recording) {
  std::vector<std::shared_ptr<HttpFilter>> filters;
  // First: a visitor who may not reach the tunnel costs nothing more (no quota slot).
  if (access != nullptr) {
    auto filter = tunnel_access_filter(*access, request);
    if (!filter) return std::move(filter).error();
    if (filter.value()) filters.push_back(std::move(filter).value());
  } else if (!request.cidr_allow.empty() || !request.cidr_deny.empty() ||
             !request.basic_auth.empty()) {
    return common::fail("access rules need the core's configuration (no AccessScope given)");
  }
  if (!request.proxy_protocol.empty()) filters.push_back(std::make_shared<ProxyAddressesFilter>());
  if (quota) filters.push_back(std::make_shared<QuotaFilter>(quota));  // see QuotaFilter
  // After the quota: it records what was admitted, and refuses nothing.
  if (recording) filters.push_back(std::move(recording));
  if (filters.empty()) return std::shared_ptr<const FilterChain>{};
  return std::make_shared<const FilterChain>(std::move(filters));
}

}  // namespace tunnel::core
