#include "core/edge/http_filters.hpp"

#include <algorithm>
#include <limits>

#include "core/agents/agent_gateway.hpp"
#include "protocol/proxy_header.hpp"

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

std::shared_ptr<const FilterChain> listener_filters(CoreContext& context) {
  std::vector<std::shared_ptr<HttpFilter>> filters;
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

std::shared_ptr<const FilterChain> tunnel_filters(const protocol::TunnelRequest& request,
                                                  const std::shared_ptr<AccountQuota>& quota) {
  std::vector<std::shared_ptr<HttpFilter>> filters;
  if (!request.proxy_protocol.empty()) filters.push_back(std::make_shared<ProxyAddressesFilter>());
  if (quota) filters.push_back(std::make_shared<QuotaFilter>(quota));  // last: see QuotaFilter
  if (filters.empty()) return nullptr;
  return std::make_shared<const FilterChain>(std::move(filters));
}

}  // namespace tunnel::core
