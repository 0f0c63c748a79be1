// Registry ownership rules that are not about port policy: a refused AUTH reserves nothing,
// ownership survives a restart, explicit names win over patterns.
#include "core/agents/registry.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/result_testing.hpp"
#include "core/agents/agent_gateway.hpp"
#include "core/agents/context.hpp"
#include "core/agents/ownership_store.hpp"

namespace tunnel::core {
namespace {

struct CountingListener : PortListener {
  explicit CountingListener(int& counter) : closes(counter) {}
  void close() override { ++closes; }
  int& closes;
};

Route route_of(const std::shared_ptr<AgentSession>& agent) {
  return Route{agent, 0, "localhost:3000", nullptr, nullptr, nullptr, nullptr};
}

OpenPort counting_open(int& closes) {
  return [&closes](std::uint16_t) -> common::Result<std::shared_ptr<PortListener>> {
    return std::shared_ptr<PortListener>(std::make_shared<CountingListener>(closes));
  };
}

// A registry with the default 10-minute hold on a simulated clock, and ports that are not bound
// (each closing counts in `closes`) from any unprivileged range.
class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest() { any.ranges = {{1024, 65535}}; }

  SimulatedTimeSource time;
  Registry registry{time, std::chrono::minutes(10)};
  int closes = 0;
  const OpenPort open = counting_open(closes);
  PortRules any;
};
// The suites keep their names (and so their CTest names).
using RegistryRollback = RegistryTest;
using RegistryExplicit = RegistryTest;
using RegistryLimits = RegistryTest;
using RegistryHold = RegistryTest;

// An attacker sends AUTHs that are refused on purpose (one bad tunnel among many): the names and
// ports of the refused AUTH must not stay reserved for its account.
TEST_F(RegistryRollback, ARefusedAuthHoldsNothing) {
  auto attacker = std::make_shared<AgentSession>();
  ASSERT_TRUE(common::is_ok(registry.claim("bob.localhost", "mallory", route_of(attacker))));
  ASSERT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 15432, "mallory", any, route_of(attacker), open),
      15432));
  registry.rollback_agent(attacker.get());
  EXPECT_EQ(closes, 1);  // the listener it opened is closed
  Route out;
  EXPECT_EQ(registry.lookup("bob.localhost", out), LookupStatus::kUnknown);
  EXPECT_EQ(registry.hostname_count(), 0u);
  EXPECT_EQ(registry.lookup_port(PortProtocol::kTcp, 15432, out), LookupStatus::kUnknown);

  auto bob = std::make_shared<AgentSession>();
  EXPECT_TRUE(common::is_ok(registry.claim("bob.localhost", "bob", route_of(bob))));
  EXPECT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 15432, "bob", any, route_of(bob), open), 15432));
  // The release that follows a rollback (the gateway's scope guard) changes nothing.
  registry.release_agent(attacker.get());
  EXPECT_EQ(registry.lookup("bob.localhost", out), LookupStatus::kFound);
}

// A refused AUTH that joined names its account already had leaves them as they were: online
// ones keep their other agents, held ones keep their hold.
TEST_F(RegistryRollback, JoinedNamesStayAsTheyWere) {
  auto first = std::make_shared<AgentSession>();
  auto gone = std::make_shared<AgentSession>();
  auto refused = std::make_shared<AgentSession>();
  ASSERT_TRUE(common::is_ok(registry.claim("web.localhost", "alice", route_of(first))));
  ASSERT_TRUE(common::is_ok(registry.claim("held.localhost", "alice", route_of(gone))));
  registry.release_agent(gone.get());
  ASSERT_TRUE(common::is_ok(registry.claim("web.localhost", "alice", route_of(refused))));
  ASSERT_TRUE(common::is_ok(registry.claim("held.localhost", "alice", route_of(refused))));
  registry.rollback_agent(refused.get());
  Route out;
  ASSERT_EQ(registry.lookup("web.localhost", out), LookupStatus::kFound);
  EXPECT_EQ(out.agent, first);
  ASSERT_EQ(registry.lookup("web.localhost", out), LookupStatus::kFound);
  EXPECT_EQ(out.agent, first);
  EXPECT_EQ(registry.lookup("held.localhost", out), LookupStatus::kOffline);
  EXPECT_FALSE(registry.claim("held.localhost", "mallory", route_of(refused)));
}

constexpr std::int64_t kNow = 1'800'000'000;

// The attack of issue 25: the core restarts, and an account allowed "*" retries AUTH for bob's
// name until it gets it. With the previous run's ownership restored it cannot, for the hold;
// bob's agent gets its name back, and its tcp tunnel the port the core had chosen for it.
TEST(RegistryRestore, WhatAnAccountOwnedBeforeARestartStaysWithIt) {
  SimulatedTimeSource time;
  int closes = 0;
  PortRules any;
  any.ranges = {{20000, 29999}};
  const std::string holder = "laptop localhost:22";
  std::vector<Registry::Owned> saved;
  std::uint16_t port = 0;
  {
    Registry before(time, std::chrono::minutes(10));
    auto bob = std::make_shared<AgentSession>();
    auto gone = std::make_shared<AgentSession>();
    ASSERT_TRUE(common::is_ok(before.claim("bob.localhost", "bob", route_of(bob))));
    ASSERT_TRUE(common::is_ok(before.claim("old.localhost", "bob", route_of(gone))));
    before.release_agent(gone.get());
    const auto claimed = before.claim_port(PortProtocol::kTcp, 0, "bob", any, route_of(bob),
                                           counting_open(closes), holder);
    ASSERT_TRUE(common::is_ok(claimed));
    port = claimed.value();
    saved = before.owned(kNow);
  }
  ASSERT_EQ(saved.size(), 3u);

  // Through the file, as the server does it.
  const auto dir =
      std::filesystem::temp_directory_path() / ("registry_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  FileOwnershipStore store((dir / "ownership").string());
  ASSERT_TRUE(common::is_ok(store.save(saved)));
  struct stat st {};
  ASSERT_EQ(::stat(store.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::vector<Registry::Owned> loaded;
  std::vector<std::string> warnings;
  ASSERT_TRUE(common::is_ok(store.load(loaded, warnings)));
  EXPECT_TRUE(warnings.empty());
  ASSERT_EQ(loaded.size(), 3u);
  std::filesystem::remove_all(dir);

  Registry after(time, std::chrono::minutes(10));
  EXPECT_EQ(after.restore(loaded, kNow + 5), 3u);
  auto mallory = std::make_shared<AgentSession>();
  Route out;
  EXPECT_EQ(after.lookup("bob.localhost", out), LookupStatus::kOffline);
  EXPECT_EQ(common::error_of(after.claim("bob.localhost", "mallory", route_of(mallory))),
            "bob.localhost is reserved by another account (its agent left recently)");
  EXPECT_FALSE(after.claim("old.localhost", "mallory", route_of(mallory)));
  EXPECT_FALSE(after.claim_port(PortProtocol::kTcp, port, "mallory", any, route_of(mallory),
                                counting_open(closes)));

  auto bob = std::make_shared<AgentSession>();
  EXPECT_TRUE(common::is_ok(after.claim("bob.localhost", "bob", route_of(bob))));
  EXPECT_TRUE(common::is_value(after.claim_port(PortProtocol::kTcp, 0, "bob", any, route_of(bob),
                                                counting_open(closes), holder),
                               port));
}

// A name that went offline long enough before the save is not held after the restart.
TEST(RegistryRestore, AnExpiredHoldIsNotRestored) {
  SimulatedTimeSource time;
  Registry registry(time, std::chrono::minutes(10));
  const std::vector<Registry::Owned> saved = {
      {"stale.localhost", "bob", "", false, kNow - 11 * 60},
      {"fresh.localhost", "bob", "", false, kNow - 60},
      {"udp:5353", "bob", "", false, 0},
      {"tcp:0", "bob", "", false, 0},  // not a port: skipped
  };
  EXPECT_EQ(registry.restore(saved, kNow), 2u);
  Route out;
  EXPECT_EQ(registry.lookup("stale.localhost", out), LookupStatus::kUnknown);
  EXPECT_EQ(registry.lookup("fresh.localhost", out), LookupStatus::kOffline);
  EXPECT_EQ(registry.lookup_port(PortProtocol::kUdp, 5353, out), LookupStatus::kOffline);
}

TEST(RegistryRestore, UnreadableLinesAreNamedAndSkipped) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("registry_test_lines_" + std::to_string(::getpid()));
  {
    std::ofstream f(path);
    f << "# tunnel-core ownership v1\n"
      << "bob.localhost\tbob\t1\t0\t\n"
      << "broken line\n"
      << "x.localhost\tbob\t2\t0\t\n"
      << "y.localhost\tbob\t0\t-5\t\n";
  }
  FileOwnershipStore store(path.string());
  std::vector<Registry::Owned> loaded;
  std::vector<std::string> warnings;
  ASSERT_TRUE(common::is_ok(store.load(loaded, warnings)));
  std::filesystem::remove(path);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_TRUE(loaded[0].explicit_name);
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_NE(warnings[0].find(":3: expected 5 tab-separated fields"), std::string::npos)
      << warnings[0];
  // A missing file is a first start, not an error.
  loaded.clear();
  EXPECT_TRUE(common::is_ok(store.load(loaded, warnings)));
  EXPECT_TRUE(loaded.empty());
}

// An account that names bob.localhost exactly wins over another account holding it through
// "*", whether that one serves it now or holds it; two pattern holders do not displace each
// other, and a pattern never displaces an explicit owner.
TEST_F(RegistryExplicit, AnExplicitNameWinsOverAnotherAccountsPattern) {
  auto squatter = std::make_shared<AgentSession>();
  auto other = std::make_shared<AgentSession>();
  auto bob = std::make_shared<AgentSession>();
  ASSERT_TRUE(common::is_ok(registry.claim("bob.localhost", "mallory", route_of(squatter))));
  std::vector<Route> displaced;
  EXPECT_FALSE(registry.claim("bob.localhost", "carol", route_of(other), false, &displaced));
  EXPECT_TRUE(displaced.empty()) << "a refused claim displaces nobody";
  EXPECT_TRUE(
      common::is_ok(registry.claim("bob.localhost", "bob", route_of(bob), true, &displaced)));
  ASSERT_EQ(displaced.size(), 1u) << "the live pattern holder is handed back, to be told";
  EXPECT_EQ(displaced[0].agent, squatter);
  displaced.clear();
  auto bob2 = std::make_shared<AgentSession>();
  EXPECT_TRUE(
      common::is_ok(registry.claim("bob.localhost", "bob", route_of(bob2), true, &displaced)));
  EXPECT_TRUE(displaced.empty()) << "joining one's own name displaces nobody";
  registry.release_agent(bob2.get());
  Route out;
  ASSERT_EQ(registry.lookup("bob.localhost", out), LookupStatus::kFound);
  EXPECT_EQ(out.agent, bob);
  ASSERT_EQ(registry.lookup("bob.localhost", out), LookupStatus::kFound);
  EXPECT_EQ(out.agent, bob);
  EXPECT_FALSE(registry.claim("bob.localhost", "mallory", route_of(squatter)));
  // Releasing the displaced agent leaves bob's route alone.
  registry.release_agent(squatter.get());
  EXPECT_EQ(registry.lookup("bob.localhost", out), LookupStatus::kFound);
  // Held for bob now: the pattern still cannot take it.
  registry.release_agent(bob.get());
  EXPECT_FALSE(registry.claim("bob.localhost", "mallory", route_of(squatter)));
}

// Issue 25: nothing capped the names and ports one account could hold (served, held after its
// agents left, restored after a restart), so one tenant could grow the registry and the
// ownership file without bound.
TEST_F(RegistryLimits, NamesAndPortsHeldPerAccountAreCapped) {
  any.max_ports = 0;
  auto a = std::make_shared<AgentSession>();
  ASSERT_TRUE(
      common::is_ok(registry.claim("a1.localhost", "alice", route_of(a), false, nullptr, 3)));
  ASSERT_TRUE(
      common::is_ok(registry.claim("a2.localhost", "alice", route_of(a), false, nullptr, 3)));
  ASSERT_TRUE(common::is_value(
      registry.claim_port(PortProtocol::kTcp, 15001, "alice", any, route_of(a), open, "", 3),
      15001));
  EXPECT_EQ(registry.held_by("alice"), 3u);
  EXPECT_EQ(
      common::error_of(registry.claim("a3.localhost", "alice", route_of(a), false, nullptr, 3)),
      "account alice already holds 3 names and ports (served, or kept for it for 10 minutes "
      "after its agents left); at most 3 (accounts[].max_names in the core's config)");
  std::string error = common::error_of(
      registry.claim_port(PortProtocol::kTcp, 0, "alice", any, route_of(a), open, "", 3));
  EXPECT_NE(error.find("accounts[].max_names"), std::string::npos) << error;
  error = common::error_of(
      registry.claim_port(PortProtocol::kUdp, 15002, "alice", any, route_of(a), open, "", 3));
  EXPECT_NE(error.find("accounts[].max_names"), std::string::npos) << error;
  // Another agent of the account joining a name it holds adds nothing.
  auto a2 = std::make_shared<AgentSession>();
  EXPECT_TRUE(
      common::is_ok(registry.claim("a1.localhost", "alice", route_of(a2), false, nullptr, 3)));
  // Another account has its own count.
  auto b = std::make_shared<AgentSession>();
  EXPECT_TRUE(common::is_ok(registry.claim("b1.localhost", "bob", route_of(b), false, nullptr, 3)));
  // Held names count as long as they are held: the agents leaving frees nothing.
  registry.release_agent(a.get());
  registry.release_agent(a2.get());
  EXPECT_EQ(registry.held_by("alice"), 3u);
  EXPECT_FALSE(registry.claim("a3.localhost", "alice", route_of(a), false, nullptr, 3));
  EXPECT_TRUE(
      common::is_ok(registry.claim("a3.localhost", "alice", route_of(a), false, nullptr, 0)))
      << "0 = unlimited";
  // Names restored from a previous run count too.
  Registry restored(time, std::chrono::minutes(10));
  const std::int64_t now = 1'700'000'000;
  restored.restore({{"x1.localhost", "carol", "", false, 0}, {"tcp:15003", "carol", "h", false, 0}},
                   now);
  EXPECT_EQ(restored.held_by("carol"), 2u);
  EXPECT_FALSE(restored.claim("x2.localhost", "carol", route_of(b), false, nullptr, 2));
}

TEST_F(RegistryLimits, ExpiredAndRolledBackNamesNoLongerCount) {
  Registry quick(time, std::chrono::seconds(0));  // holds expire at once
  auto a = std::make_shared<AgentSession>();
  ASSERT_TRUE(common::is_ok(quick.claim("a1.localhost", "alice", route_of(a), false, nullptr, 1)));
  auto refused = std::make_shared<AgentSession>();
  EXPECT_FALSE(quick.claim("a2.localhost", "alice", route_of(refused), false, nullptr, 1));
  quick.release_agent(a.get());
  // The expired hold is swept when the limit is reached (at most once a second).
  time.advance(std::chrono::seconds(1));
  EXPECT_TRUE(common::is_ok(quick.claim("a2.localhost", "alice", route_of(a), false, nullptr, 1)));
  EXPECT_EQ(quick.held_by("alice"), 1u);
  // A refused AUTH's names are forgotten at once, and so is their count.
  quick.rollback_agent(a.get());
  EXPECT_EQ(quick.held_by("alice"), 0u);
}

// An explicit claim that takes a name moves it from one account's count to the other's.
TEST_F(RegistryLimits, ATakenOverNameChangesAccounts) {
  auto squatter = std::make_shared<AgentSession>();
  auto bob = std::make_shared<AgentSession>();
  ASSERT_TRUE(common::is_ok(registry.claim("bob.localhost", "mallory", route_of(squatter))));
  EXPECT_EQ(registry.held_by("mallory"), 1u);
  ASSERT_TRUE(common::is_ok(registry.claim("bob.localhost", "bob", route_of(bob), true)));
  EXPECT_EQ(registry.held_by("mallory"), 0u);
  EXPECT_EQ(registry.held_by("bob"), 1u);
}

// The hold of a name whose last agent left: exactly 10 minutes, to the nanosecond, measured
// from when it left; the owner may come back at any time within it.
TEST_F(RegistryHold, ANameIsHeldForExactlyTenMinutes) {
  auto bob = std::make_shared<AgentSession>();
  auto mallory = std::make_shared<AgentSession>();
  ASSERT_TRUE(common::is_ok(registry.claim("bob.localhost", "bob", route_of(bob))));
  time.advance(std::chrono::hours(5));  // served for a while: the hold starts when it leaves
  registry.release_agent(bob.get());
  time.advance(std::chrono::minutes(10));
  Route out;
  EXPECT_EQ(registry.lookup("bob.localhost", out), LookupStatus::kOffline) << "503, not 404";
  EXPECT_EQ(common::error_of(registry.claim("bob.localhost", "mallory", route_of(mallory))),
            "bob.localhost is reserved by another account (its agent left recently)");
  time.advance(std::chrono::nanoseconds(1));
  EXPECT_EQ(registry.lookup("bob.localhost", out), LookupStatus::kUnknown);
  EXPECT_TRUE(common::is_ok(registry.claim("bob.localhost", "mallory", route_of(mallory))));
}

TEST_F(RegistryHold, TheOwnerComesBackAtTheLastMoment) {
  auto bob = std::make_shared<AgentSession>();
  ASSERT_TRUE(common::is_ok(registry.claim("bob.localhost", "bob", route_of(bob))));
  registry.release_agent(bob.get());
  time.advance(std::chrono::minutes(10));
  auto again = std::make_shared<AgentSession>();
  EXPECT_TRUE(common::is_ok(registry.claim("bob.localhost", "bob", route_of(again))));
  // Served again: no hold runs, however long it is served.
  time.advance(std::chrono::hours(24));
  auto mallory = std::make_shared<AgentSession>();
  EXPECT_EQ(common::error_of(registry.claim("bob.localhost", "mallory", route_of(mallory))),
            "bob.localhost is in use by another account");
}

// owned() reports when a name went offline in unix seconds of the registry's clock.
TEST_F(RegistryHold, OwnedReportsTheUnixTimeOfLeaving) {
  auto bob = std::make_shared<AgentSession>();
  ASSERT_TRUE(common::is_ok(registry.claim("bob.localhost", "bob", route_of(bob))));
  const std::int64_t start = registry.now_unix();
  EXPECT_EQ(start, SimulatedTimeSource::kStartSinceEpoch.count());
  time.advance(std::chrono::seconds(100));
  registry.release_agent(bob.get());
  time.advance(std::chrono::seconds(20));
  const auto owned = registry.owned(registry.now_unix());
  ASSERT_EQ(owned.size(), 1u);
  EXPECT_EQ(owned[0].offline_since, start + 100);
}

TEST_F(RegistryLimits, TunnelsPerAccountAreCountedAcrossAgents) {
  std::size_t serving = 0;
  EXPECT_TRUE(registry.add_tunnels("alice", 20, 32, serving));
  EXPECT_EQ(serving, 0u);
  EXPECT_FALSE(registry.add_tunnels("alice", 13, 32, serving));
  EXPECT_EQ(serving, 20u);
  EXPECT_TRUE(registry.add_tunnels("bob", 32, 32, serving));  // per account
  EXPECT_TRUE(registry.add_tunnels("alice", 12, 32, serving));
  registry.remove_tunnels("alice", 20);
  EXPECT_TRUE(registry.add_tunnels("alice", 20, 32, serving));
  EXPECT_EQ(serving, 12u);
  EXPECT_TRUE(registry.add_tunnels("carol", 1000, 0, serving));  // 0 = unlimited
}

// Issue 25: with a 256-descriptor limit one AUTH filled the table with listeners and visitors
// got "accept failed: Too many open files". New ports are refused while the reserve is short.
TEST_F(RegistryLimits, NewPortsAreRefusedWhenDescriptorsRunShort) {
  EXPECT_TRUE(common::is_ok(check_descriptor_reserve(0)));
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  std::vector<int> fds;
  fds.reserve(64);
  for (int i = 0; i < 64; ++i) fds.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  std::size_t open_now = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++open_now;
  }
  EXPECT_TRUE(common::is_ok(check_descriptor_reserve(256))) << "plenty free at the normal limit";
  // 4 free: under the reserve (a quarter of the limit, at least 17 here).
  rlimit tight = saved;
  tight.rlim_cur = open_now + 4;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  const std::string why = common::error_of(check_descriptor_reserve(256));
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  for (const int fd : fds) ::close(fd);
  EXPECT_NE(why.find("file descriptors in use; new ports are refused while fewer than"),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("(limits.fd_reserve"), std::string::npos) << why;
}

// Issue 19: the sessions of one agent (its --connections) count once against max_agents, and at
// most kMaxSessionsPerAgent of them at a time.
TEST_F(RegistryLimits, SessionsOfOneAgentCountOnceAgainstMaxAgents) {
  EXPECT_EQ(registry.add_agent("alice", "laptop", 2), AddAgent::kAdded);
  EXPECT_EQ(registry.add_agent("alice", "laptop", 2), AddAgent::kAdded);
  EXPECT_EQ(registry.add_agent("alice", "laptop", 2), AddAgent::kAdded);
  EXPECT_EQ(registry.agents_of("alice"), 1u);
  EXPECT_EQ(registry.add_agent("alice", "server", 2), AddAgent::kAdded);
  EXPECT_EQ(registry.add_agent("alice", "phone", 2), AddAgent::kTooManyAgents);
  EXPECT_EQ(registry.agents_of("alice"), 2u);
  for (std::size_t i = 1; i < kMaxSessionsPerAgent; ++i) {
    EXPECT_EQ(registry.add_agent("bob", "box", 1), AddAgent::kAdded);
  }
  EXPECT_EQ(registry.add_agent("bob", "box", 1), AddAgent::kAdded);
  EXPECT_EQ(registry.add_agent("bob", "box", 1), AddAgent::kTooManySessions);
  registry.remove_agent("alice", "laptop");
  registry.remove_agent("alice", "laptop");
  EXPECT_EQ(registry.agents_of("alice"), 2u) << "one session of laptop is left";
  registry.remove_agent("alice", "laptop");
  EXPECT_EQ(registry.agents_of("alice"), 1u);
  EXPECT_EQ(registry.add_agent("alice", "phone", 2), AddAgent::kAdded);
  registry.remove_agent("nobody", "x");  // harmless
}

// A session the agent withdrew (GOAWAY: rotated or leaving) gets no new requests while another
// session serves the name; when every one is withdrawn, lookups still find one (its stream is
// then refused with the reason).
TEST_F(RegistryTest, LookupsPassOverWithdrawnSessions) {
  auto first = std::make_shared<AgentSession>();
  auto second = std::make_shared<AgentSession>();
  ASSERT_TRUE(common::is_ok(registry.claim("app.example.test", "alice", route_of(first))));
  ASSERT_TRUE(common::is_ok(registry.claim("app.example.test", "alice", route_of(second))));
  first->withdrawn = true;
  for (int i = 0; i < 4; ++i) {
    Route route;
    ASSERT_EQ(registry.lookup("app.example.test", route), LookupStatus::kFound);
    EXPECT_EQ(route.agent, second);
  }
  second->withdrawn = true;
  Route route;
  EXPECT_EQ(registry.lookup("app.example.test", route), LookupStatus::kFound);
  EXPECT_NE(route.agent, nullptr);

  // Issue 19: a tunnel whose app the agent reports unhealthy is passed over the same way; when
  // every route's app is unhealthy the lookup says so (503 naming the reason).
  first->withdrawn = false;
  second->withdrawn = false;
  EXPECT_TRUE(first->set_health(0, false, "connect refused"));
  EXPECT_FALSE(first->set_health(0, false, "connect refused")) << "no change";
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(registry.lookup("app.example.test", route), LookupStatus::kFound);
    EXPECT_EQ(route.agent, second);
  }
  EXPECT_TRUE(second->set_health(0, false, "GET / answered 500"));
  EXPECT_EQ(registry.lookup("app.example.test", route), LookupStatus::kUnhealthy);
  EXPECT_EQ(route.agent->health_reason(0),
            route.agent == first ? "connect refused" : "GET / answered 500");
  EXPECT_TRUE(first->set_health(0, true, ""));
  EXPECT_EQ(first->health_reason(0), "");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(registry.lookup("app.example.test", route), LookupStatus::kFound);
    EXPECT_EQ(route.agent, first);
  }

  // Ports the same way.
  auto third = std::make_shared<AgentSession>();
  auto fourth = std::make_shared<AgentSession>();
  third->withdrawn = true;
  ASSERT_TRUE(common::is_ok(
      registry.claim_port(PortProtocol::kTcp, 20001, "alice", any, route_of(third), open)));
  ASSERT_TRUE(common::is_ok(
      registry.claim_port(PortProtocol::kTcp, 20001, "alice", any, route_of(fourth), open)));
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(registry.lookup_port(PortProtocol::kTcp, 20001, route), LookupStatus::kFound);
    EXPECT_EQ(route.agent, fourth);
  }
}

}  // namespace
}  // namespace tunnel::core
