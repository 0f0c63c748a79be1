#include "core/edge/http_filters.hpp"

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

std::shared_ptr<const FilterChain> tunnel_filters(const protocol::TunnelRequest& request) {
  if (request.proxy_protocol.empty()) return nullptr;
  return std::make_shared<const FilterChain>(
      std::vector<std::shared_ptr<HttpFilter>>{std::make_shared<ProxyAddressesFilter>()});
}

}  // namespace tunnel::core
