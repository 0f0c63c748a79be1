// Port policy of tcp/udp tunnels: the `ports:` config blocks, PortRules, and port claims in
// the Registry (ownership, max per account, port 0, reservation after the last agent leaves).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "common/result_testing.hpp"
#include "core/agents/agent_gateway.hpp"
#include "core/agents/registry.hpp"
#include "core/control/config.hpp"

namespace tunnel::core {
namespace {

std::string all(const std::vector<ConfigError>& errors) {
  return format_errors(errors, "t");
}

TEST(PortPolicy, ParsesRanges) {
  EXPECT_EQ(parse_port_range("10000-20000").value(), (PortRange{10000, 20000}));
  EXPECT_EQ(parse_port_range("5432").value(), (PortRange{5432, 5432}));
  const auto reversed = parse_port_range("20000-10000");
  ASSERT_FALSE(reversed);
  EXPECT_EQ(reversed.error().message, "\"20000-10000\": the first port is above the last");
  for (const char* bad : {"", "-", "0-10", "1-65536", "a-b", "10-", "-10", "1 - 2", "80x"}) {
    EXPECT_FALSE(parse_port_range(bad)) << bad;
  }
}

TEST(PortPolicy, NoPolicyMeansAnyPortFrom1024) {
  auto loaded = load_config_string("accounts:\n  - name: a\n    tokens: [token-t-0123456789]\n");
  ASSERT_TRUE(loaded.ok()) << all(loaded.errors);
  const PortRules rules = port_rules(loaded.config, loaded.config.accounts[0]);
  EXPECT_EQ(rules.describe_ranges(), "1024-65535");
  EXPECT_EQ(rules.max_ports, 10u);  // finite by default (issue 25: one AUTH opened 900 ports)
  EXPECT_FALSE(rules.allows(80));
  EXPECT_FALSE(rules.allows(1023));
  EXPECT_TRUE(rules.allows(1024));
  EXPECT_TRUE(rules.allows(65535));
}

TEST(PortPolicy, AccountKeysOverrideTheTopLevelOnes) {
  auto loaded = load_config_string(
      "ports:\n"
      "  ranges: [\"10000-20000\"]\n"
      "  max_per_account: 10\n"
      "accounts:\n"
      "  - name: alice\n"
      "    tokens: [token-a-0123456789]\n"
      "    ports:\n"
      "      ranges: [\"15000-15099\", \"16000\"]\n"
      "  - name: bob\n"
      "    tokens: [token-b-0123456789]\n"
      "    ports:\n"
      "      max_per_account: 2\n"
      "listen:\n"
      "  tunnels_host: 127.0.0.1\n"
      "limits:\n"
      "  udp_idle_timeout: 5s\n");
  ASSERT_TRUE(loaded.ok()) << all(loaded.errors);
  const Config& c = loaded.config;
  EXPECT_EQ(c.listen.tunnels_host, "127.0.0.1");
  EXPECT_EQ(c.limits.udp_idle_timeout, std::chrono::seconds(5));
  const PortRules alice = port_rules(c, c.accounts[0]);
  EXPECT_EQ(alice.describe_ranges(), "15000-15099, 16000");
  EXPECT_EQ(alice.max_ports, 10u);
  EXPECT_TRUE(alice.allows(16000));
  EXPECT_FALSE(alice.allows(16001));
  const PortRules bob = port_rules(c, c.accounts[1]);
  EXPECT_EQ(bob.describe_ranges(), "10000-20000");
  EXPECT_EQ(bob.max_ports, 2u);
}

TEST(PortPolicy, ReportsBadRangesWithLines) {
  auto loaded = load_config_string(
      "ports:\n"
      "  ranges: [\"10000-20000\", \"9-x\"]\n"
      "  max_pre_account: 3\n"
      "listen:\n"
      "  tunnels_host: example.com\n"
      "accounts:\n"
      "  - name: alice\n"
      "    tokens: [token-a-0123456789]\n"
      "    ports:\n"
      "      ranges:\n"
      "        - \"30000-20000\"\n");
  const std::string text = all(loaded.errors);
  EXPECT_NE(text.find("t:2:27: ports.ranges[1]: \"9-x\" is not a port range"), std::string::npos)
      << text;
  EXPECT_NE(text.find("t:3:3: ports: unknown key \"max_pre_account\""), std::string::npos) << text;
  EXPECT_NE(text.find("t:5:17: listen.tunnels_host: \"example.com\" is not an IP address"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("t:11:11: accounts[0].ports.ranges[0]: \"30000-20000\": the first port is "
                      "above the last"),
            std::string::npos)
      << text;
}

TEST(PortPolicy, EnvironmentSetsTheTunnelsHost) {
  Config config;
  auto errors = apply_env(config, [](const char* name) -> const char* {
    return std::string_view(name) == "TUNNEL_TUNNELS_HOST" ? "127.0.0.1" : nullptr;
  });
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(config.listen.tunnels_host, "127.0.0.1");
  config.listen.tunnels_host = "not-an-ip";
  EXPECT_NE(all(validate(config)).find("listen.tunnels_host"), std::string::npos);
}

// A listener that records whether it was closed.
struct FakeListener : PortListener {
  explicit FakeListener(int& counter) : closes(counter) {}
  void close() override { ++closes; }
  int& closes;
};

struct Opener {
  std::set<std::uint16_t> busy;  // ports "in use" by other programs
  std::vector<std::uint16_t> opened;
  int closes = 0;
  OpenPort fn() {
    return [this](std::uint16_t port) -> common::Result<std::shared_ptr<PortListener>> {
      if (busy.contains(port)) return common::fail("port " + std::to_string(port) + " is in use");
      opened.push_back(port);
      return std::shared_ptr<PortListener>(std::make_shared<FakeListener>(closes));
    };
  }
};

Route route_of(const std::shared_ptr<AgentSession>& agent, std::uint16_t index = 0) {
  return Route{agent, index, "localhost:5432", nullptr, nullptr, nullptr, nullptr};
}

PortRules rules(std::vector<PortRange> ranges, std::uint32_t max = 0) {
  PortRules r;
  r.ranges = std::move(ranges);
  r.max_ports = max;
  return r;
}

TEST(PortClaims, OneAccountPerPortSharedRoundRobinReservedAfterLeaving) {
  SimulatedTimeSource time;
  Registry registry(time, std::chrono::minutes(10));
  Opener opener;
  auto a1 = std::make_shared<AgentSession>();
  auto a2 = std::make_shared<AgentSession>();
  auto b = std::make_shared<AgentSession>();
  const PortRules any = rules({{1024, 65535}});
  EXPECT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 15432, "alice", any, route_of(a1, 0), opener.fn()),
      15432));
  EXPECT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 15432, "alice", any, route_of(a2, 3), opener.fn()),
      15432));
  EXPECT_EQ(opener.opened.size(), 1u);  // the second agent joins the open listener
  EXPECT_EQ(common::error_of(registry.claim_port(PortProtocol::kTcp, 15432, "bob", any, route_of(b),
                                                 opener.fn())),
            "port 15432 is in use by another account");
  // udp 15432 is another port.
  EXPECT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kUdp, 15432, "bob", any, route_of(b), opener.fn()), 15432));

  Route r;
  ASSERT_EQ(registry.lookup_port(PortProtocol::kTcp, 15432, r), LookupStatus::kFound);
  const auto first = r.agent;
  ASSERT_EQ(registry.lookup_port(PortProtocol::kTcp, 15432, r), LookupStatus::kFound);
  EXPECT_NE(r.agent, first);

  registry.release_agent(a1.get());
  EXPECT_EQ(opener.closes, 0);
  registry.release_agent(a2.get());
  EXPECT_EQ(opener.closes, 1);  // the last agent left: the listener closes
  EXPECT_EQ(registry.lookup_port(PortProtocol::kTcp, 15432, r), LookupStatus::kOffline);
  EXPECT_EQ(common::error_of(registry.claim_port(PortProtocol::kTcp, 15432, "bob", any, route_of(b),
                                                 opener.fn())),
            "port 15432 is reserved by another account (its agent left recently)");
  // alice comes back within the hold: the port opens again for her.
  EXPECT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 15432, "alice", any, route_of(a1), opener.fn()),
      15432));
  EXPECT_EQ(opener.opened.size(), 3u);
}

// A port whose last agent left is held for its account for exactly the hold (10 minutes).
TEST(PortClaims, ReservationExpiresAfterExactlyTheHold) {
  SimulatedTimeSource time;
  Registry registry(time);
  Opener opener;
  auto a = std::make_shared<AgentSession>();
  auto b = std::make_shared<AgentSession>();
  const PortRules any = rules({{1024, 65535}});
  ASSERT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 20000, "alice", any, route_of(a), opener.fn()),
      20000));
  registry.release_agent(a.get());
  time.advance(std::chrono::minutes(10));
  EXPECT_EQ(common::error_of(registry.claim_port(PortProtocol::kTcp, 20000, "bob", any, route_of(b),
                                                 opener.fn())),
            "port 20000 is reserved by another account (its agent left recently)");
  time.advance(std::chrono::nanoseconds(1));
  EXPECT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 20000, "bob", any, route_of(b), opener.fn()), 20000));
}

TEST(PortClaims, PortZeroPicksAFreePortInTheRanges) {
  SimulatedTimeSource time;
  Registry registry(time);
  Opener opener;
  opener.busy = {30000, 30002};
  auto a = std::make_shared<AgentSession>();
  const PortRules narrow = rules({{30000, 30002}, {30005, 30005}});
  std::set<std::uint16_t> got;
  for (int i = 0; i < 2; ++i) {
    const auto port =
        registry.claim_port(PortProtocol::kTcp, 0, "alice", narrow, route_of(a), opener.fn());
    ASSERT_TRUE(common::is_ok(port));
    got.insert(port.value());
  }
  EXPECT_EQ(got, (std::set<std::uint16_t>{30001, 30005}));
  // Which busy port was tried last depends on where the search started.
  EXPECT_THAT(common::error_of(registry.claim_port(PortProtocol::kTcp, 0, "alice", narrow,
                                                   route_of(a), opener.fn())),
              ::testing::MatchesRegex("no free tcp port left in 30000-30002, 30005 "
                                      "\\(last error: port 3000[02] is in use\\)"));
}

TEST(PortClaims, MaxPerAccountCountsPortsNotAgents) {
  SimulatedTimeSource time;
  Registry registry(time);
  Opener opener;
  auto a = std::make_shared<AgentSession>();
  auto a2 = std::make_shared<AgentSession>();
  const PortRules one = rules({{1024, 65535}}, 1);
  ASSERT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 15000, "alice", one, route_of(a), opener.fn()),
      15000));
  // Joining the port it already serves is fine; another port is not.
  EXPECT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 15000, "alice", one, route_of(a2), opener.fn()),
      15000));
  EXPECT_EQ(common::error_of(registry.claim_port(PortProtocol::kTcp, 15001, "alice", one,
                                                 route_of(a2), opener.fn())),
            "account alice already serves 1 tcp port (ports.max_per_account)");
  EXPECT_FALSE(registry.claim_port(PortProtocol::kTcp, 0, "alice", one, route_of(a2), opener.fn()));
  // udp ports are counted apart.
  EXPECT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kUdp, 15001, "alice", one, route_of(a2), opener.fn()),
      15001));
  EXPECT_EQ(registry.ports_of(PortProtocol::kTcp, "alice"), 1u);
}

TEST(PortClaims, AFailedOpenLeavesNoReservation) {
  SimulatedTimeSource time;
  Registry registry(time);
  Opener opener;
  opener.busy = {15432};
  auto a = std::make_shared<AgentSession>();
  auto b = std::make_shared<AgentSession>();
  const PortRules any = rules({{1024, 65535}});
  EXPECT_EQ(common::error_of(registry.claim_port(PortProtocol::kTcp, 15432, "alice", any,
                                                 route_of(a), opener.fn())),
            "port 15432 is in use");
  opener.busy.clear();
  EXPECT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 15432, "bob", any, route_of(b), opener.fn()), 15432));
}

}  // namespace
}  // namespace tunnel::core

namespace tunnel::core {
namespace {

// Releasing an agent touches only what it claimed: the others keep their names and ports, and
// the released ones stay reserved (offline) for their account.
TEST(RegistryRelease, OnlyTheAgentsOwnClaims) {
  SimulatedTimeSource time;
  Registry registry(time);
  Opener opener;
  std::vector<std::shared_ptr<AgentSession>> agents;
  const PortRules any = rules({{1024, 65535}});
  for (int i = 0; i < 2000; ++i) {
    agents.push_back(std::make_shared<AgentSession>());
    ASSERT_TRUE(common::is_ok(
        registry.claim("a" + std::to_string(i) + ".localhost", "acct", route_of(agents.back()))));
  }
  ASSERT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 30000, "acct", any, route_of(agents[7]), opener.fn()),
      30000));
  for (int i = 0; i < 2000; i += 2) registry.release_agent(agents[i].get());
  Route out;
  EXPECT_EQ(registry.lookup("a0.localhost", out), LookupStatus::kOffline);
  EXPECT_EQ(registry.lookup("a1.localhost", out), LookupStatus::kFound);
  EXPECT_EQ(out.agent, agents[1]);
  EXPECT_EQ(registry.lookup_port(PortProtocol::kTcp, 30000, out), LookupStatus::kFound);
  registry.release_agent(agents[7].get());
  EXPECT_EQ(registry.lookup_port(PortProtocol::kTcp, 30000, out), LookupStatus::kOffline);
  EXPECT_EQ(opener.closes, 1);
  // Another account still cannot take a released name while it is reserved.
  EXPECT_FALSE(registry.claim("a0.localhost", "other", route_of(agents[0])));
  EXPECT_EQ(registry.hostname_count(), 2000u);
}

}  // namespace
}  // namespace tunnel::core
