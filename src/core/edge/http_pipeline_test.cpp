// The pure stages of the request pipeline, without sockets: decide() for every local answer,
// the head rewrite, request ids, the filter chain and today's filters.
#include "core/edge/http_pipeline.hpp"

#include <gtest/gtest.h>

#include <map>

#include "core/agents/agent_gateway.hpp"
#include "core/edge/http_filters.hpp"
#include "http/error_page.hpp"
#include "observability/metrics.hpp"

namespace tunnel::core {
namespace {

http::RequestHead head_with(std::string target, std::vector<http::Header> fields) {
  http::RequestHead head;
  head.method = "GET";
  head.target = std::move(target);
  head.headers = std::move(fields);
  return head;
}

// A registry stand-in: known hosts map to a status; found ones get a route of account "acme".
struct Table {
  std::map<std::string, LookupStatus> hosts;
  std::vector<std::string> asked;
  RouteLookup lookup() {
    return [this](const std::string& host, Route& out) {
      asked.push_back(host);
      const auto it = hosts.find(host);
      if (it == hosts.end()) return LookupStatus::kUnknown;
      if (it->second == LookupStatus::kFound) {
        out.agent = std::make_shared<AgentSession>();
        out.agent->account = "acme";
      }
      return it->second;
    };
  }
};

Decision decide_head(const http::RequestHead& head, Table& table, bool has_body = false,
                     bool keep_alive = true) {
  return decide(RequestFacts{head, has_body, keep_alive}, table.lookup());
}

TEST(Decide, ForwardsToTheTunnelOfTheHost) {
  Table table{{{"app.example", LookupStatus::kFound}}, {}};
  const auto d = decide_head(head_with("/x", {{"Host", "App.Example:8080"}}), table);
  ASSERT_FALSE(d.answer);
  EXPECT_EQ(d.host, "app.example");
  EXPECT_TRUE(d.host_override.empty());
  EXPECT_EQ(d.route.agent->account, "acme");
}

TEST(Decide, AnswersFourHundredWithoutAValidSingleHost) {
  Table table{{{"app.example", LookupStatus::kFound}}, {}};
  const struct {
    http::RequestHead head;
    std::string detail;
  } cases[] = {
      {head_with("/", {}), "The request has no Host header."},
      {head_with("/", {{"Host", "bad host"}}),
       "The Host header \"bad host\" is not a valid host name."},
      {head_with("/", {{"Host", "app.example"}, {"host", "evil.example"}}),
       "The request has more than one Host field."},
      {head_with("http://user@app.example/", {{"Host", "app.example"}}),
       "The request target carries user information."},
      {head_with("http://a..b/x", {{"Host", "app.example"}}),
       "The host \"a..b\" in the request target is not a valid host name."},
  };
  for (const auto& c : cases) {
    const auto d = decide_head(c.head, table);
    ASSERT_TRUE(d.answer) << c.detail;
    EXPECT_EQ(d.answer->status, 400);
    EXPECT_EQ(d.answer->detail, c.detail);
    EXPECT_TRUE(d.answer->close);
  }
  EXPECT_TRUE(table.asked.empty()) << "a bad request is never looked up";
}

TEST(Decide, AnAbsoluteFormTargetRoutesByItsAuthority) {
  Table table{{{"a.example", LookupStatus::kFound}, {"b.example", LookupStatus::kFound}}, {}};
  const auto d =
      decide_head(head_with("HTTP://a.example:8080/x?y=1", {{"Host", "b.example"}}), table);
  ASSERT_FALSE(d.answer);
  EXPECT_EQ(d.host, "a.example");
  EXPECT_EQ(d.host_override, "a.example:8080");
  EXPECT_EQ(d.origin_target, "/x?y=1");
  EXPECT_EQ(table.asked, std::vector<std::string>{"a.example"});
  EXPECT_EQ(decide_head(head_with("https://a.example", {}), table).origin_target, "/");
  EXPECT_EQ(decide_head(head_with("http://a.example?q", {}), table).origin_target, "/?q");
}

// Issue 19: every agent of the name reports its app unhealthy: 503 with the agent's reason.
TEST(Decide, EveryAppUnhealthyIsFiveOhThreeNamingTheReason) {
  RouteLookup lookup = [](const std::string&, Route& out) {
    out.agent = std::make_shared<AgentSession>();
    out.tunnel_index = 1;
    out.agent->set_health(1, false, "GET /healthz answered 500");
    return LookupStatus::kUnhealthy;
  };
  const auto d =
      decide(RequestFacts{head_with("/", {{"Host", "app.example"}}), false, true}, lookup);
  ASSERT_TRUE(d.answer);
  EXPECT_EQ(d.answer->status, 503);
  EXPECT_EQ(d.answer->detail,
            "Every agent serving app.example reports its app unhealthy (GET /healthz answered "
            "500). Try again when it recovers.");
}

TEST(Decide, UnknownIsFourOhFourAndOfflineIsFiveOhThree) {
  Table table{{{"gone.example", LookupStatus::kOffline}}, {}};
  auto d = decide_head(head_with("/", {{"Host", "nope.example"}}), table);
  ASSERT_TRUE(d.answer);
  EXPECT_EQ(d.answer->status, 404);
  EXPECT_EQ(d.answer->detail, "No tunnel is serving nope.example.");
  EXPECT_FALSE(d.answer->close) << "a bodiless keep-alive request leaves the connection usable";
  d = decide_head(head_with("/", {{"Host", "gone.example"}}), table);
  ASSERT_TRUE(d.answer);
  EXPECT_EQ(d.answer->status, 503);
  EXPECT_NE(d.answer->detail.find("gone.example is not connected"), std::string::npos);
  EXPECT_TRUE(decide_head(head_with("/", {{"Host", "nope.example"}}), table, true).answer->close)
      << "an unread body cannot be skipped";
  EXPECT_TRUE(
      decide_head(head_with("/", {{"Host", "nope.example"}}), table, false, false).answer->close);
}

std::string field(const http::RequestHead& head, std::string_view name) {
  const std::string* value = head.find(name);
  return value == nullptr ? "<none>" : *value;
}

TEST(Rewrite, TheEdgeOwnsTheForwardingFieldsOfAnUntrustedPeer) {
  auto head = head_with("/", {{"Host", "app.example"},
                              {"X-Forwarded-For", "6.6.6.6"},
                              {"x-forwarded-for", "7.7.7.7"},
                              {"X-Real-IP", "6.6.6.6"},
                              {"Forwarded", "for=6.6.6.6"},
                              {"X-Forwarded-Proto", "https"},
                              {"X-Forwarded-Host", "bank.example"},
                              {"X-Request-Id", "forged"},
                              {"Expect", "100-continue"},
                              {"Connection", "close"},
                              {"Accept", "*/*"}});
  head.version_minor = 0;
  rewrite_request(head, RewriteInput{"192.0.2.7", false, false, "app.example", "id-1", false});
  EXPECT_EQ(field(head, "X-Forwarded-For"), "192.0.2.7");
  EXPECT_EQ(field(head, "X-Real-IP"), "<none>") << "dropped, not set (an extra field costs 1%)";
  EXPECT_EQ(field(head, "Forwarded"), "<none>");
  EXPECT_EQ(field(head, "X-Forwarded-Proto"), "http");
  EXPECT_EQ(field(head, "X-Forwarded-Host"), "app.example");
  EXPECT_EQ(field(head, "X-Request-Id"), "id-1");
  EXPECT_EQ(field(head, "Expect"), "<none>");
  EXPECT_EQ(field(head, "Connection"), "<none>");
  EXPECT_EQ(field(head, "Accept"), "*/*");
  EXPECT_EQ(head.version_minor, 1);
  int forwarded_for = 0;
  for (const auto& h : head.headers) forwarded_for += http::iequals(h.name, "X-Forwarded-For");
  EXPECT_EQ(forwarded_for, 1);
}

TEST(Rewrite, ATrustedProxyKeepsItsChainAndTheHostCanBeReplaced) {
  auto head = head_with("/", {{"Host", "b.example"},
                              {"X-Forwarded-For", "203.0.113.9"},
                              {"X-Forwarded-Proto", "https"},
                              {"X-Real-IP", "203.0.113.9"}});
  rewrite_request(head, RewriteInput{"10.0.0.2", true, false, "a.example:8080", "id-2", false});
  EXPECT_EQ(field(head, "X-Forwarded-For"), "203.0.113.9, 10.0.0.2");
  EXPECT_EQ(field(head, "X-Forwarded-Proto"), "https");
  EXPECT_EQ(field(head, "X-Real-IP"), "203.0.113.9");
  EXPECT_EQ(field(head, "Host"), "a.example:8080");
  EXPECT_EQ(head.headers.front().name, "Host");
  auto bare = head_with("/", {});
  rewrite_request(bare, RewriteInput{"10.0.0.2", false, true, "a.example", "id-3", false});
  EXPECT_EQ(bare.headers.front().name, "Host") << "an absolute-form request without Host gets one";
  EXPECT_EQ(field(bare, "X-Forwarded-Proto"), "https");
}

TEST(RequestId, AdoptedOnlyFromATrustedPeer) {
  const auto head = head_with("/", {{"X-Request-Id", "abc-123"}});
  EXPECT_EQ(request_id_for(head, true), "abc-123");
  EXPECT_NE(request_id_for(head, false), "abc-123");
  EXPECT_EQ(request_id_for(head, false).size(), 32u);
  const auto odd = head_with("/", {{"X-Request-Id", "a b"}});
  EXPECT_NE(request_id_for(odd, true), "a b");
}

TEST(ForwardingPolicy, TrustsOnlyListedRanges) {
  ForwardingPolicy policy;
  EXPECT_FALSE(policy.trusts("127.0.0.1"));
  policy.trusted_proxies.push_back(common::Cidr::parse("10.0.0.0/8").value());
  EXPECT_TRUE(policy.trusts("10.9.8.7"));
  EXPECT_FALSE(policy.trusts("11.0.0.1"));
}

// A filter that records its calls and answers as told.
class Probe final : public HttpFilter {
 public:
  Probe(std::string name, unsigned hooks, std::vector<std::string>& log, FilterVerdict verdict = {})
      : name_(std::move(name)), hooks_(hooks), log_(log), verdict_(std::move(verdict)) {}
  std::string_view name() const override { return name_; }
  unsigned hooks() const override { return hooks_; }
  FilterVerdict on_request_head(FilterRequest&) override {
    log_.push_back(name_ + ".head");
    return verdict_;
  }
  FilterVerdict on_request_body(FilterRequest&, std::span<const char> bytes) override {
    log_.push_back(name_ + ".body " + std::to_string(bytes.size()));
    return {};
  }
  void on_complete(const FilterRequest&, const ExchangeSummary& summary) override {
    log_.push_back(name_ + ".complete " + std::to_string(summary.status));
  }

 private:
  std::string name_;
  unsigned hooks_;
  std::vector<std::string>& log_;
  FilterVerdict verdict_;
};

struct Request {
  http::RequestHead head = head_with("/", {{"Host", "app.example"}});
  Decision decision;
  std::string prefix;
  FilterRequest filtered{head, decision, "192.0.2.7:5000", "127.0.0.1:8080", false, prefix};
  Request() {
    decision.host = "app.example";
    decision.route.agent = std::make_shared<AgentSession>();
    decision.route.agent->account = "acme";
  }
};

TEST(FilterChain, RunsHooksInOrderAndStopsAtTheFirstAnswer) {
  std::vector<std::string> log;
  FilterChain chain({std::make_shared<Probe>("a", hook::kRequestHead | hook::kComplete, log),
                     std::make_shared<Probe>("b", hook::kRequestHead, log,
                                             FilterVerdict::respond(403, "no", false)),
                     std::make_shared<Probe>("c", hook::kRequestHead | hook::kRequestBody, log)});
  EXPECT_TRUE(chain.wants(hook::kRequestBody));
  EXPECT_FALSE(chain.wants(hook::kResponseHead));
  Request r;
  const FilterVerdict verdict = chain.request_head(r.filtered);
  EXPECT_EQ(verdict.kind, FilterVerdict::Kind::kAnswer);
  EXPECT_EQ(verdict.answer.status, 403);
  chain.request_body(r.filtered, std::span<const char>("xyz", 3));
  chain.complete(r.filtered, ExchangeSummary{403});
  EXPECT_EQ(log, (std::vector<std::string>{"a.head", "b.head", "c.body 3", "a.complete 403"}));
}

TEST(Filters, RateLimitAnswersFourTwentyNineOnceTheAccountSpentItsBurst) {
  SimulatedTimeSource time;
  RateLimiter limiter(1, time);  // 1 request/s, burst 2
  RateLimitFilter filter(limiter);
  Request r;
  EXPECT_TRUE(filter.on_request_head(r.filtered).proceed());
  EXPECT_TRUE(filter.on_request_head(r.filtered).proceed());
  const FilterVerdict third = filter.on_request_head(r.filtered);
  ASSERT_EQ(third.kind, FilterVerdict::Kind::kAnswer);
  EXPECT_EQ(third.answer.status, 429);
  EXPECT_EQ(third.answer.detail, "Too many requests for app.example; slow down.");
}

TEST(Filters, BodyLimitByLengthAndByBytes) {
  BodyLimitFilter filter(10);
  Request r;
  r.head.set("Content-Length", "11");
  const FilterVerdict announced = filter.on_request_head(r.filtered);
  ASSERT_EQ(announced.kind, FilterVerdict::Kind::kAnswer);
  EXPECT_EQ(announced.answer.status, 413);
  EXPECT_TRUE(announced.answer.close);
  r.head.set("Content-Length", "10");
  EXPECT_TRUE(filter.on_request_head(r.filtered).proceed());
  r.filtered.body_bytes = 10;
  EXPECT_TRUE(filter.on_request_body(r.filtered, {}).proceed());
  r.filtered.body_bytes = 11;
  EXPECT_EQ(filter.on_request_body(r.filtered, {}).answer.status, 413);
}

TEST(Filters, ProxyAddressesPrefixTheOpenStreamPayload) {
  protocol::TunnelRequest with_proxy;
  with_proxy.proxy_protocol = "v1";
  const auto chain = tunnel_filters(with_proxy, nullptr).value();
  ASSERT_TRUE(chain);
  EXPECT_TRUE(chain->wants(hook::kLocalAddr));
  Request r;
  EXPECT_TRUE(chain->request_head(r.filtered).proceed());
  EXPECT_EQ(r.prefix, "192.0.2.7:5000 127.0.0.1:8080\n");
  EXPECT_FALSE(tunnel_filters(protocol::TunnelRequest{}, nullptr).value());
}

TEST(Filters, QuotaAnswersFourTwentyNineWithAProblemNamingTheQuota) {
  SimulatedTimeSource time;
  observability::Registry registry;
  QuotaBook book(registry, time);
  auto quota = book.get("acme");
  const auto chain = tunnel_filters(protocol::TunnelRequest{}, quota).value();
  ASSERT_TRUE(chain);  // every tunnel of a core with a store has it
  EXPECT_TRUE(chain->wants(hook::kRequestHead | hook::kComplete));
  quota->set_limits(QuotaLimits{.max_requests_per_second = 1});
  Request admitted;
  EXPECT_TRUE(chain->request_head(admitted.filtered).proceed());
  EXPECT_EQ(quota->connections(), 1u);
  Request refused;
  const FilterVerdict verdict = chain->request_head(refused.filtered);
  ASSERT_EQ(verdict.kind, FilterVerdict::Kind::kAnswer);
  EXPECT_EQ(verdict.answer.status, 429);
  EXPECT_EQ(verdict.answer.retry_after, 1u);
  EXPECT_EQ(verdict.answer.problem,
            R"({"type":"urn:tunnel:problem:quota-exceeded","title":"Too Many Requests",)"
            R"("status":429,"detail":"app.example: the account's quota max_requests_per_second )"
            R"((1) is reached; retry in 1 s.","quota":"max_requests_per_second","limit":1,)"
            R"("retry_after":1})");
  // Complete gives back only what the head hook took: the refused request held nothing.
  chain->complete(refused.filtered, ExchangeSummary{429});
  EXPECT_EQ(quota->connections(), 1u);
  chain->complete(admitted.filtered, ExchangeSummary{200, 100, 900});
  EXPECT_EQ(quota->connections(), 0u);
  EXPECT_EQ(quota->month_bytes(), 1000u);
  EXPECT_EQ(
      registry.counter("tunnel_quota_refusals_total", "", {{"quota", "max_requests_per_second"}})
          .value(),
      1u);
}

TEST(Filters, AQuotaAnswerIsAProblemDocumentWithRetryAfter) {
  const std::string response =
      http::problem_response(429, R"({"quota":"bytes_per_month"})", "abc", false, 3600);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 429 Too Many Requests\r\n")) << response;
  EXPECT_NE(response.find("Content-Type: application/problem+json\r\n"), std::string::npos);
  EXPECT_NE(response.find("Retry-After: 3600\r\n"), std::string::npos);
  EXPECT_NE(response.find("X-Request-Id: abc\r\n"), std::string::npos);
  EXPECT_TRUE(response.ends_with("\r\n\r\n{\"quota\":\"bytes_per_month\"}")) << response;
}

}  // namespace
}  // namespace tunnel::core
