#include "agent/allow_local.hpp"

#include <gtest/gtest.h>

#include "agent/connector.hpp"

namespace tunnel::agent {
namespace {

std::vector<LocalRule> rules(const std::vector<std::string>& texts) {
  auto parsed = parse_local_rules(texts);
  EXPECT_TRUE(parsed) << parsed.error().message;
  return parsed ? parsed.value() : std::vector<LocalRule>{};
}

TEST(AllowLocal, TheDefaultIsLoopbackOnly) {
  const auto loopback = rules({});
  EXPECT_TRUE(local_allowed(loopback, {"127.0.0.1", 3000}));
  EXPECT_TRUE(local_allowed(loopback, {"127.1.2.3", 22}));
  EXPECT_TRUE(local_allowed(loopback, {"LocalHost", 80}));
  EXPECT_TRUE(local_allowed(loopback, {"::1", 5432}));
  EXPECT_FALSE(local_allowed(loopback, {"10.0.0.5", 5432}));
  EXPECT_FALSE(local_allowed(loopback, {"169.254.169.254", 80}));  // cloud metadata
  EXPECT_FALSE(local_allowed(loopback, {"db.internal", 5432}));
  EXPECT_FALSE(local_allowed(loopback, {"localhost.evil.example", 80}));
}

TEST(AllowLocal, HostsRangesAndPorts) {
  const auto r = rules({"db.internal:5432", "10.0.0.0/8:8000-8999", "[fd00::/8]:443"});
  EXPECT_TRUE(local_allowed(r, {"DB.internal", 5432}));
  EXPECT_FALSE(local_allowed(r, {"db.internal", 5433}));
  EXPECT_TRUE(local_allowed(r, {"10.1.2.3", 8080}));
  EXPECT_FALSE(local_allowed(r, {"10.1.2.3", 9000}));
  EXPECT_FALSE(local_allowed(r, {"127.0.0.1", 8080}));  // a list replaces the default
  EXPECT_TRUE(local_allowed(r, {"fd12::1", 443}));
  EXPECT_FALSE(local_allowed(r, {"fe80::1", 443}));
}

TEST(AllowLocal, BadRulesNameTheRuleAndTheProblem) {
  const auto error = [](std::string_view text) {
    auto r = parse_local_rule(text);
    return r ? std::string("(accepted)") : r.error().message;
  };
  EXPECT_EQ(error("localhost"),
            "\"localhost\": expected HOST:PORTS, e.g. 127.0.0.1:3000 or localhost:*");
  EXPECT_NE(error("localhost:0").find("the ports must be"), std::string::npos);
  EXPECT_NE(error("localhost:90-80").find("the ports must be"), std::string::npos);
  EXPECT_NE(error("10.0.0.0/33:*").find("\"10.0.0.0/33:*\": "), std::string::npos);
  EXPECT_NE(error("[::1:*").find("closing ]"), std::string::npos);
  EXPECT_NE(error("bad_host!:80").find("is not a host name"), std::string::npos);
  EXPECT_NE(error(":80").find("expected HOST:PORTS"), std::string::npos);
}

TEST(AssignedTunnels, EachResultsTargetIsCheckedAgainstTheAllowList) {
  protocol::AuthResponse reply;
  reply.success = true;
  protocol::TunnelResult ok;
  ok.type = "http";
  ok.ok = true;
  ok.local = "127.0.0.1:3000";
  protocol::TunnelResult outside = ok;
  outside.type = "tcp";
  outside.local = "10.0.0.7:22";
  protocol::TunnelResult garbage = ok;
  garbage.local = "not a target";
  reply.tunnels = {ok, outside, garbage};
  const auto specs = assigned_tunnels(reply, rules({}));
  ASSERT_EQ(specs.size(), 3u);
  EXPECT_TRUE(specs[0].refused.empty()) << specs[0].refused;
  EXPECT_EQ(specs[0].local, (common::NetAddress{"127.0.0.1", 3000}));
  EXPECT_EQ(specs[1].request.type, "tcp");
  EXPECT_NE(specs[1].refused.find("10.0.0.7:22, which allow_local (--allow-local) does not allow"),
            std::string::npos)
      << specs[1].refused;
  EXPECT_NE(specs[2].refused.find("which is not an address"), std::string::npos)
      << specs[2].refused;
}

}  // namespace
}  // namespace tunnel::agent
