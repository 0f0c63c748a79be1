#include "core/edge/http_pipeline.hpp"

#include <cctype>

#include "core/agents/agent_gateway.hpp"
#include "core/agents/context.hpp"
#include "http/host.hpp"

namespace tunnel::core {
namespace {

bool starts_with_nocase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && http::iequals(text.substr(0, prefix.size()), prefix);
}

// The authority of an absolute-form target ("http://a.example:8080/x" -> "a.example:8080") and
// the origin-form target to forward ("/x"); nullopt when the target is not absolute-form.
struct AbsoluteTarget {
  std::string_view authority;
  std::string origin;
};
std::optional<AbsoluteTarget> absolute_form(std::string_view target) {
  std::size_t scheme = 0;
  if (starts_with_nocase(target, "http://")) {
    scheme = 7;
  } else if (starts_with_nocase(target, "https://")) {
    scheme = 8;
  } else {
    return std::nullopt;
  }
  const std::string_view rest = target.substr(scheme);
  const std::size_t end = rest.find_first_of("/?#");
  AbsoluteTarget out;
  out.authority = rest.substr(0, end);
  if (end == std::string_view::npos) {
    out.origin = "/";
  } else {
    out.origin =
        rest[end] == '/' ? std::string(rest.substr(end)) : "/" + std::string(rest.substr(end));
  }
  if (const auto hash = out.origin.find('#'); hash != std::string::npos) out.origin.resize(hash);
  return out;
}

bool plain_request_id(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (const char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

LocalAnswer bad_request(std::string detail) {
  return LocalAnswer{400, std::move(detail), true};
}

}  // namespace

Decision decide(const RequestFacts& request, const RouteLookup& lookup) {
  Decision decision;
  const http::RequestHead& head = request.head;
  const std::string* host_field = nullptr;
  for (const http::Header& field : head.headers) {
    if (field.name.size() != 4 || !http::iequals(field.name, "Host")) continue;
    if (host_field != nullptr) {
      decision.answer = bad_request("The request has more than one Host field.");
      return decision;
    }
    host_field = &field.value;
  }
  std::optional<std::string> host;
  if (const auto absolute = absolute_form(head.target)) {
    // RFC 9112 section 3.2.2: the target's authority wins over Host, and the app gets it as Host.
    if (absolute->authority.find('@') != std::string_view::npos) {
      decision.answer = bad_request("The request target carries user information.");
      return decision;
    }
    host = http::normalize_host(absolute->authority);
    if (!host) {
      decision.answer = bad_request("The host \"" + std::string(absolute->authority) +
                                    "\" in the request target is not a valid host name.");
      return decision;
    }
    decision.host_override = std::string(absolute->authority);
    decision.origin_target = absolute->origin;
  } else if (host_field == nullptr) {
    decision.answer = bad_request("The request has no Host header.");
    return decision;
  } else {
    host = http::normalize_host(*host_field);
    if (!host) {
      decision.answer =
          bad_request("The Host header \"" + *host_field + "\" is not a valid host name.");
      return decision;
    }
  }
  decision.host = std::move(*host);
  const LookupStatus found = lookup(decision.host, decision.route);
  if (found == LookupStatus::kFound) return decision;
  // The request is refused before its body was read: the connection can carry the next request
  // only when there is no body to skip.
  const bool close = request.has_body || !request.keep_alive;
  if (found == LookupStatus::kUnknown) {
    decision.answer = LocalAnswer{404, "No tunnel is serving " + decision.host + ".", close};
  } else if (found == LookupStatus::kUnhealthy) {
    const std::string why = decision.route.agent
                                ? decision.route.agent->health_reason(decision.route.tunnel_index)
                                : std::string();
    decision.answer =
        LocalAnswer{503,
                    "Every agent serving " + decision.host + " reports its app unhealthy (" +
                        (why.empty() ? std::string("health check failing") : why) +
                        "). Try again when it recovers.",
                    close};
  } else {
    decision.answer = LocalAnswer{503,
                                  "The agent serving " + decision.host +
                                      " is not connected right now. Try again when it reconnects.",
                                  close};
  }
  return decision;
}

ForwardingPolicy forwarding_policy(const std::vector<std::string>& trusted_proxies) {
  ForwardingPolicy policy;
  for (const std::string& text : trusted_proxies) {
    if (auto cidr = common::Cidr::parse(text)) policy.trusted_proxies.push_back(cidr.value());
  }
  return policy;
}

std::string_view ip_of_peer(std::string_view peer) {
  const auto colon = peer.rfind(':');
  std::string_view ip = colon == std::string_view::npos ? peer : peer.substr(0, colon);
  if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  return ip;
}

bool ForwardingPolicy::trusts(std::string_view ip) const {
  for (const common::Cidr& cidr : trusted_proxies) {
    if (cidr.contains(ip)) return true;
  }
  return false;
}

std::string request_id_for(const http::RequestHead& head, bool peer_trusted) {
  if (peer_trusted) {
    const std::string* id = head.find("X-Request-Id");
    if (id != nullptr && plain_request_id(*id)) return *id;
  }
  return new_request_id();
}

void rewrite_request(http::RequestHead& head, const RewriteInput& input) {
  head.remove_hop_by_hop(input.keep_upgrade);
  // One pass over the fields for what the edge owns (cheaper than one remove() per name).
  std::string trusted_xff;
  bool has_xff = false;
  bool has_host = false;
  std::erase_if(head.headers, [&](http::Header& field) {
    const std::string_view name = field.name;
    if (name.size() == 6 && http::iequals(name, "Expect")) return true;
    if (name.size() == 12 && http::iequals(name, "X-Request-Id")) return true;
    if (name.size() == 4 && http::iequals(name, "Host")) {
      if (field.value != input.host) field.value = input.host;
      has_host = true;
      return false;
    }
    if (name.size() < 9) return false;
    if (http::iequals(name, "X-Forwarded-For")) {
      if (input.peer_trusted) {
        if (has_xff) trusted_xff += ", ";
        trusted_xff += field.value;
        has_xff = true;
      }
      return true;
    }
    if (input.peer_trusted) return false;  // a trusted proxy's other forwarding fields pass
    return http::iequals(name, "X-Forwarded-Proto") || http::iequals(name, "X-Forwarded-Host") ||
           http::iequals(name, "X-Real-IP") || http::iequals(name, "Forwarded");
  });
  if (!has_host) {  // an absolute-form request without Host: first, as clients send it
    head.headers.insert(head.headers.begin(), http::Header{"Host", std::string(input.host)});
  }
  if (has_xff) {
    trusted_xff += ", ";
    trusted_xff += input.client_ip;
    head.headers.push_back({"X-Forwarded-For", std::move(trusted_xff)});
  } else {
    head.headers.push_back({"X-Forwarded-For", std::string(input.client_ip)});
  }
  if (!input.peer_trusted || head.find("X-Forwarded-Proto") == nullptr) {
    head.headers.push_back({"X-Forwarded-Proto", input.tls ? "https" : "http"});
  }
  if (!input.peer_trusted || head.find("X-Forwarded-Host") == nullptr) {
    head.headers.push_back({"X-Forwarded-Host", std::string(input.host)});
  }
  head.headers.push_back({"X-Request-Id", std::string(input.request_id)});
  head.version_major = 1;
  head.version_minor = 1;
}

FilterChain::FilterChain(std::vector<std::shared_ptr<HttpFilter>> filters)
    : filters_(std::move(filters)) {
  for (const auto& filter : filters_) hooks_ |= filter->hooks();
}

FilterVerdict FilterChain::request_head(FilterRequest& request) const {
  for (const auto& filter : filters_) {
    if ((filter->hooks() & hook::kRequestHead) == 0) continue;
    FilterVerdict verdict = filter->on_request_head(request);
    if (!verdict.proceed()) return verdict;
  }
  return {};
}

FilterVerdict FilterChain::request_body(FilterRequest& request, std::span<const char> bytes) const {
  for (const auto& filter : filters_) {
    if ((filter->hooks() & hook::kRequestBody) == 0) continue;
    FilterVerdict verdict = filter->on_request_body(request, bytes);
    if (!verdict.proceed()) return verdict;
  }
  return {};
}

FilterVerdict FilterChain::response_head(FilterRequest& request, http::ResponseHead& head) const {
  for (const auto& filter : filters_) {
    if ((filter->hooks() & hook::kResponseHead) == 0) continue;
    FilterVerdict verdict = filter->on_response_head(request, head);
    if (!verdict.proceed()) return verdict;
  }
  return {};
}

void FilterChain::response_body(FilterRequest& request, std::span<const char> bytes) const {
  for (const auto& filter : filters_) {
    if ((filter->hooks() & hook::kResponseBody) != 0) filter->on_response_body(request, bytes);
  }
}

void FilterChain::complete(const FilterRequest& request, const ExchangeSummary& summary) const {
  for (const auto& filter : filters_) {
    if ((filter->hooks() & hook::kComplete) != 0) filter->on_complete(request, summary);
  }
}

}  // namespace tunnel::core
