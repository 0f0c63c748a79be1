// The stages of a public HTTP request that are pure (no sockets, no waiting), and the filter
// interface the other stages call. HttpFront (http_front.hpp) runs them in order:
//
//   read head -> decide() -> request filters -> hop to the agent's worker -> rewrite_request()
//   -> relay (response-head and body filters) -> finish (complete filters, log, metrics)
//
// decide() picks the tunnel or the local answer from the head alone; rewrite_request() sets the
// fields the edge owns. Filters carry the features (limits, PROXY addresses; later routing, IP
// lists, authentication, WAF, capture, tracing): a feature adds a filter, never a branch in the
// relay. A chain holds only the filters that are configured, and the relay calls a hook only when
// some filter of the chain asked for it (FilterChain::hooks), so an unconfigured feature costs
// nothing per request.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/cidr.hpp"
#include "core/agents/registry.hpp"
#include "http/head.hpp"
#include "tracing/trace_context.hpp"

namespace tunnel::core {

// What is known about a request before it is routed: its head and what the parser learnt.
struct RequestFacts {
  const http::RequestHead& head;
  bool has_body = false;   // a body follows the head (Content-Length > 0 or chunked)
  bool keep_alive = true;  // the client may send another request on this connection
};

// A local answer: the status, the sentence of the error page, and whether the connection must
// close after it (the request's body cannot be skipped, or the client asked to close).
struct LocalAnswer {
  int status = 0;
  std::string detail;  // for the HTML page and the log line
  bool close = false;
  std::uint32_t retry_after = 0;  // seconds; > 0 adds Retry-After
  // Set: the body is this problem document (application/problem+json) instead of the page.
  std::string problem{};
  // More fields of the page's head, each "Name: value\r\n" (WWW-Authenticate of a 401).
  std::string headers{};
};

// What decide() chose.
struct Decision {
  std::string host;  // the normalized host the request is for ("" when it named none)
  // The authority the app must see in Host when it differs from the Host field (an
  // absolute-form target, RFC 9112 section 3.2.2); "" = keep the Host field.
  std::string host_override;
  std::string origin_target;          // with host_override: the target to forward ("/x?y")
  Route route;                        // valid when !answer
  std::optional<LocalAnswer> answer;  // set: answer here, do not forward
  // When the request head was complete (set by HttpFront, kept across the hop to the agent's
  // worker): the start of the per-tunnel duration histograms.
  std::chrono::steady_clock::time_point head_at{};
};

// The registry's lookup, as decide() uses it (a table in tests).
using RouteLookup = std::function<LookupStatus(const std::string& host, Route& out)>;

// Routes a request by its authority: the target's when the target is absolute-form
// ("GET http://a.example/x"), else the Host field. Answers 400 for a missing or invalid host
// (or a target authority that is not a host), 404 when no tunnel serves the host, 503 when its
// agents are offline (the name is held for them).
Decision decide(const RequestFacts& request, const RouteLookup& lookup);

// Which peers may tell the edge about the original client (X-Forwarded-For, X-Real-IP,
// Forwarded, X-Forwarded-Proto/Host, X-Request-Id): proxies the operator put in front of the
// core (`trusted_proxies:` in the configuration). Empty: the core is the edge and trusts no one.
struct ForwardingPolicy {
  std::vector<common::Cidr> trusted_proxies;
  bool trusts(std::string_view ip) const;
};
// From `trusted_proxies:` (checked with the configuration; an entry that does not parse is
// left out).
ForwardingPolicy forwarding_policy(const std::vector<std::string>& trusted_proxies);

// "ip" of "ip:port" or "[v6]:port" (a connection's peer as the edge writes it).
std::string_view ip_of_peer(std::string_view peer);

// What rewrite_request() needs besides the head.
struct RewriteInput {
  std::string_view client_ip;   // the connection's peer
  bool peer_trusted = false;    // ForwardingPolicy::trusts(client_ip)
  bool tls = false;             // the client connection is HTTPS
  std::string_view host;        // the Host value to forward (as the client wrote it)
  std::string_view request_id;  // the id chosen by request_id_for()
  bool keep_upgrade = false;    // the request asks to switch protocols
};

// The request id of a request: the client's X-Request-Id when the peer is trusted and the value
// is short and plain (letters, digits, '-', '_', '.'; at most 128), else a fresh one.
std::string request_id_for(const http::RequestHead& head, bool peer_trusted);

// Rewrites the head in place for the app: hop-by-hop fields and Expect removed, HTTP/1.1, Host
// set, X-Request-Id set. The forwarding fields are the edge's: from an untrusted peer, whatever
// the client sent in X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP and
// Forwarded is dropped, and X-Forwarded-For/-Proto/-Host are set to what the edge saw (X-Real-IP
// is not set: one more field costs every request about 1% in instructions; apps read
// X-Forwarded-For); from a trusted proxy its
// X-Forwarded-For is kept and the peer appended (as nginx's realip), and its X-Forwarded-Proto,
// X-Forwarded-Host, X-Real-IP and Forwarded pass.
void rewrite_request(http::RequestHead& head, const RewriteInput& input);

// ---- filters

// A filter's answer to a hook.
struct FilterVerdict {
  enum class Kind {
    kContinue,  // go on with the next filter and stage
    kAnswer,    // answer locally with `answer` (if nothing was sent to the client yet) and end
                // the exchange; the stream to the agent, if open, is cancelled
    kStop,      // end the exchange and close the client connection without an answer
  };
  Kind kind = Kind::kContinue;
  LocalAnswer answer;

  static FilterVerdict next() { return {}; }
  static FilterVerdict respond(int status, std::string detail, bool close) {
    return {Kind::kAnswer, LocalAnswer{status, std::move(detail), close}};
  }
  static FilterVerdict stop() { return {Kind::kStop, {}}; }
  bool proceed() const { return kind == Kind::kContinue; }
};

// Per-request state a filter keeps between its hooks (the recording's copy of the exchange).
struct FilterState {
  virtual ~FilterState() = default;
};

// The request as filters see it. Lives for one exchange, on the worker of the agent's session
// once the request hooks after the hop run; references stay valid for the exchange.
struct FilterRequest {
  http::RequestHead& head;  // filters may change fields (the rewrite runs after them)
  const Decision& decision;
  std::string_view client_peer;  // "ip:port" of the client connection
  std::string_view local_addr;   // "ip:port" the client connected to (filled on demand: see
                                 // needs_local_addr)
  bool tls = false;
  // Bytes OPEN_STREAM carries before the request head (the PROXY address line); filters append.
  std::string& open_prefix;
  std::uint64_t body_bytes = 0;  // request body bytes relayed so far (framing included)
  // What filters' request hooks took and their complete hooks give back (held::k*): complete
  // runs for every exchange, also one a filter before them refused.
  unsigned held = 0;
  const std::string* request_id = nullptr;  // the request's X-Request-Id (set by HttpFront)
  tracing::RequestTrace trace{};            // set by TracingFilter when tracing is on
  // The state of the one filter that keeps some (RecordingFilter); null for other requests.
  std::unique_ptr<FilterState> state{};
};

namespace held {
inline constexpr unsigned kQuotaSlot = 1u << 0;  // QuotaFilter: a connection of the account
}  // namespace held

// How an exchange ended, for complete hooks and the log.
struct ExchangeSummary {
  int status = 0;  // what the client got; 499 when it left before an answer
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  double seconds = 0;
  bool complete = false;  // the response reached its end (not cut off)
  bool relayed = false;   // a stream to the agent was opened (else the core answered)
};

// Which hooks a filter implements; the relay skips hooks no filter of the chain asked for.
namespace hook {
inline constexpr unsigned kRequestHead = 1u << 0;
inline constexpr unsigned kRequestBody = 1u << 1;
inline constexpr unsigned kResponseHead = 1u << 2;
inline constexpr unsigned kResponseBody = 1u << 3;
inline constexpr unsigned kComplete = 1u << 4;
inline constexpr unsigned kLocalAddr = 1u << 5;  // needs FilterRequest::local_addr
}  // namespace hook

// One feature on the request path. Hooks run on the worker that relays the exchange; a filter
// object is shared by every connection of its listener or tunnel, so hooks must be thread-safe
// (keep per-request state in FilterRequest, shared state atomic or locked).
class HttpFilter {
 public:
  virtual ~HttpFilter() = default;
  virtual std::string_view name() const = 0;
  virtual unsigned hooks() const = 0;  // a set of hook::k*

  // After decide(), before the request goes to the agent: may change the head, add to the
  // OPEN_STREAM prefix, answer or stop.
  virtual FilterVerdict on_request_head(FilterRequest& /*request*/) { return {}; }
  // Request body bytes as they arrive from the client, before they go to the agent.
  virtual FilterVerdict on_request_body(FilterRequest& /*request*/,
                                        std::span<const char> /*bytes*/) {
    return {};
  }
  // The app's final response head, before it goes to the client (may change fields).
  virtual FilterVerdict on_response_head(FilterRequest& /*request*/, http::ResponseHead& /*head*/) {
    return {};
  }
  // Response bytes as they go to the client (heads included, after the response-head hook).
  virtual void on_response_body(FilterRequest& /*request*/, std::span<const char> /*bytes*/) {}
  // The exchange is over (answered, relayed, or the client left).
  virtual void on_complete(const FilterRequest& /*request*/, const ExchangeSummary& /*summary*/) {}
};

// An ordered list of filters (a listener's, or a tunnel's). Immutable once built; shared.
class FilterChain {
 public:
  FilterChain() = default;
  explicit FilterChain(std::vector<std::shared_ptr<HttpFilter>> filters);

  bool empty() const { return filters_.empty(); }
  bool wants(unsigned hook_bits) const { return (hooks_ & hook_bits) != 0; }
  const std::vector<std::shared_ptr<HttpFilter>>& filters() const { return filters_; }

  // Runs the hook of every filter that has it, in order, until one does not continue.
  FilterVerdict request_head(FilterRequest& request) const;
  FilterVerdict request_body(FilterRequest& request, std::span<const char> bytes) const;
  FilterVerdict response_head(FilterRequest& request, http::ResponseHead& head) const;
  void response_body(FilterRequest& request, std::span<const char> bytes) const;
  void complete(const FilterRequest& request, const ExchangeSummary& summary) const;

 private:
  std::vector<std::shared_ptr<HttpFilter>> filters_;
  unsigned hooks_ = 0;
};

}  // namespace tunnel::core
