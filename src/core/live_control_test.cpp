// The control plane's store applied to live agents: a real SQLite store, a real AgentGateway
// over loopback TCP (serve_plain) and LiveControl between them. A test "agent" sends AUTH with
// a registered agent's credential or a configured token; changes made in the store reach the
// connected agents through LiveControl::store_changed().
#include "core/live_control.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "core/control/store/test_backends.hpp"
#include "mux/frame_io.hpp"
#include "mux/session_test_support.hpp"
#include "observability/metrics.hpp"

namespace tunnel::core {
namespace {

using mux::test::run_until;
using mux::test::tcp_pair;
using namespace std::chrono_literals;

class NoPort final : public PortListener {
 public:
  void close() override {}
};

constexpr std::string_view kConfig =
    "domain: example.test\n"
    "accounts:\n"
    "  - name: acme\n"
    "    tokens: [acme-secret-token-0123]\n"
    "    ports:\n"
    "      ranges: [\"20050-20051\"]\n";

// One agent connection: AUTH sent, the reply read; the connection stays open until closed by
// the core (`closed`) or by the test.
struct TestAgent {
  std::unique_ptr<transport::Conn> conn;
  protocol::AuthResponse reply;
  bool replied = false;
  bool closed = false;   // the core closed the connection after the reply
  bool go_away = false;  // a GOAWAY frame arrived after the reply
  bool served = false;   // the gateway's serve() returned
};

class LiveControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = load_config_string(std::string(kConfig));
    ASSERT_TRUE(loaded.ok()) << format_errors(loaded.errors, "config");
    context = std::make_unique<CoreContext>(std::move(loaded.config), metrics, time);
    const PortOpener opener = [](PortProtocol, asio::any_io_executor,
                                 std::uint16_t) -> common::Result<std::shared_ptr<PortListener>> {
      return std::shared_ptr<PortListener>(std::make_shared<NoPort>());
    };
    gateway = std::make_unique<AgentGateway>(*context, opener, nullptr);
    auto opened = store::open_store(backend.options());
    ASSERT_TRUE(opened) << opened.error().message;
    db = std::move(opened).value();
    ASSERT_TRUE(db->sync_configured_accounts({"acme"}));
    store::Account account;
    account.name = "team";
    auto team = db->create_account(account);
    ASSERT_TRUE(team) << team.error().message;
    team_id = team.value().id;
    store::Agent registered;
    registered.account_id = team_id;
    registered.name = "laptop";
    auto agent = db->create_agent(registered);
    ASSERT_TRUE(agent) << agent.error().message;
    agent_id = agent.value().object.id;
    credential = agent.value().secret;
    app_tunnel = http_tunnel("app");
    live = std::make_unique<LiveControl>(*db, *context, *gateway);
    ASSERT_TRUE(live->start());
  }

  store::Id http_tunnel(std::string name) {
    store::Tunnel t;
    t.account_id = team_id;
    t.name = std::move(name);
    return create_tunnel(t);
  }
  store::Id port_tunnel(std::uint16_t port) {
    store::Tunnel t;
    t.account_id = team_id;
    t.type = store::TunnelType::kTcp;
    t.port = port;
    return create_tunnel(t);
  }
  store::Id create_tunnel(const store::Tunnel& t) {
    auto created = db->create_tunnel(t);
    EXPECT_TRUE(created) << created.error().message;
    return created ? created.value().id : 0;
  }

  static protocol::TunnelRequest http(std::string subdomain) {
    protocol::TunnelRequest t;
    t.subdomain = std::move(subdomain);
    t.local = "localhost:3000";
    return t;
  }
  static protocol::TunnelRequest tcp(std::uint16_t port) {
    protocol::TunnelRequest t;
    t.type = "tcp";
    t.remote_port = port;
    t.local = "localhost:5432";
    return t;
  }

  // Connects an agent with `token` asking for `tunnels` and waits for the AUTH reply.
  std::unique_ptr<TestAgent> connect(std::string token,
                                     std::vector<protocol::TunnelRequest> tunnels,
                                     bool serves_assignments = false) {
    auto agent = std::make_unique<TestAgent>();
    auto [accepted, dialer] = tcp_pair(io);
    asio::co_spawn(io, gateway->serve_plain(std::move(accepted)),
                   [a = agent.get()](std::exception_ptr) { a->served = true; });
    agent->conn = transport::make_tcp_conn(std::move(dialer));
    protocol::AuthRequest request;
    request.token = std::move(token);
    request.agent_id = "test";
    request.version = "test";
    request.protocol_versions = {protocol::kVersion2, protocol::kVersion1};
    request.tunnels = std::move(tunnels);
    if (serves_assignments) request.capabilities = {std::string(protocol::kAssignedTunnels)};
    std::vector<std::uint8_t> bytes;
    mux::append_frame(bytes, protocol::kVersion1, protocol::FrameType::kAuth, 0, 0,
                      mux::as_bytes(protocol::serialize(request)));
    asio::co_spawn(io, talk(agent.get(), std::move(bytes)), asio::detached);
    EXPECT_TRUE(run_until(
        io, [a = agent.get()] { return a->replied; }, 10s))
        << "no AUTH reply";
    return agent;
  }

  // The agent's side: AUTH out, the reply in, then reads until the core closes. (A coroutine's
  // state must be its parameters: a lambda's captures die with the lambda.)
  static asio::awaitable<void> talk(TestAgent* a, std::vector<std::uint8_t> bytes) {
    transport::error_code ec;
    co_await a->conn->write(asio::buffer(bytes), ec);
    mux::FrameReader reader(protocol::kVersion1);
    mux::Frame frame;
    if (!ec && co_await reader.next(*a->conn, frame, ec)) {
      auto parsed = protocol::parse_auth_response(mux::as_text(frame.payload));
      if (parsed) a->reply = parsed.value();
    }
    a->replied = true;
    // Then read the session's frames until the core closes.
    reader.set_version(a->reply.protocol_version == 2 ? protocol::kVersion2 : protocol::kVersion1);
    reader.set_max_payload(protocol::kMaxPayload);
    while (a->reply.success && co_await reader.next(*a->conn, frame, ec)) {
      if (frame.header.frame_type() == protocol::FrameType::kGoAway) a->go_away = true;
    }
    if (!a->reply.success) {  // a refusal: wait for the close
      std::vector<char> sink(4096);
      for (ec = {}; !ec;) co_await a->conn->read_some(asio::buffer(sink), ec);
    }
    a->closed = true;
  }

  // Runs the loop a little so that posted work (a session close) happens.
  void settle(TestAgent& agent, std::chrono::milliseconds limit = 300ms) {
    run_until(
        io, [&] { return agent.closed; }, limit);
  }

  void finish(TestAgent& agent) {
    agent.conn->close();
    EXPECT_TRUE(run_until(
        io, [&] { return agent.served; }, 10s))
        << "serve() did not end";
  }

  asio::io_context io;
  SimulatedTimeSource time;  // the core's clock: holds and throttling advance only by hand
  observability::Registry metrics;
  std::unique_ptr<CoreContext> context;
  std::unique_ptr<AgentGateway> gateway;
  store::SqliteBackend backend;
  std::unique_ptr<store::Store> db;
  std::unique_ptr<LiveControl> live;
  store::Id team_id = 0, agent_id = 0, app_tunnel = 0;
  std::string credential;
};

TEST_F(LiveControlTest, ARegisteredAgentServesWhatItsAccountReserves) {
  auto agent = connect(credential, {http("app")});
  ASSERT_TRUE(agent->reply.success) << agent->reply.error;
  EXPECT_EQ(agent->reply.agent_id, "laptop");
  ASSERT_EQ(agent->reply.tunnels.size(), 1u);
  EXPECT_EQ(agent->reply.tunnels[0].name, "app.example.test");
  // The API shows it live.
  const auto sessions = live->agent_sessions(agent_id);
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0].serving, std::vector<std::string>{"app.example.test"});
  EXPECT_EQ(sessions[0].protocol, 2);
  EXPECT_FALSE(sessions[0].address.empty());
  EXPECT_EQ(live->tunnel_sessions(app_tunnel), 1u);
  EXPECT_TRUE(live->agent_sessions(agent_id + 1).empty());
  finish(*agent);
}

TEST_F(LiveControlTest, AnAccountMadeThroughTheApiServesOnlyItsReservations) {
  auto agent = connect(credential, {http("elsewhere")});
  EXPECT_FALSE(agent->reply.success);
  EXPECT_EQ(agent->reply.code, protocol::refusal::kNotAllowed);
  EXPECT_NE(agent->reply.error.find("may not use the subdomain elsewhere"), std::string::npos)
      << agent->reply.error;
  finish(*agent);
}

TEST_F(LiveControlTest, AReservationBeatsAnotherAccountsPattern) {
  // acme's configuration allows "*": every name nobody else has, but not a reserved one.
  auto taken = connect("acme-secret-token-0123", {http("app")});
  EXPECT_FALSE(taken->reply.success);
  EXPECT_EQ(taken->reply.code, protocol::refusal::kNotAllowed);
  EXPECT_NE(taken->reply.error.find("app.example.test is reserved by another account"),
            std::string::npos)
      << taken->reply.error;
  EXPECT_EQ(taken->reply.error.find("team"), std::string::npos) << "names the other account";
  finish(*taken);
  auto free = connect("acme-secret-token-0123", {http("free")});
  EXPECT_TRUE(free->reply.success) << free->reply.error;
  finish(*free);
}

TEST_F(LiveControlTest, AReservedPortIsRefusedToOthersAndNeverChosenForThem) {
  port_tunnel(20050);
  live->store_changed();
  auto asked = connect("acme-secret-token-0123", {tcp(20050)});
  EXPECT_FALSE(asked->reply.success);
  EXPECT_NE(asked->reply.error.find("port 20050 is reserved by another account"), std::string::npos)
      << asked->reply.error;
  finish(*asked);
  // acme's range is 20050-20051: port 0 must get 20051, every time.
  auto chosen = connect("acme-secret-token-0123", {tcp(0)});
  ASSERT_TRUE(chosen->reply.success) << chosen->reply.error;
  EXPECT_EQ(chosen->reply.tunnels[0].name, "example.test:20051");
  // The owner may have it although it is outside any range of its own.
  auto owner = connect(credential, {tcp(20050)});
  EXPECT_TRUE(owner->reply.success) << owner->reply.error;
  finish(*owner);
  finish(*chosen);
}

TEST_F(LiveControlTest, ARemovedAgentIsDisconnectedAndRefusedAfter) {
  auto agent = connect(credential, {http("app")});
  ASSERT_TRUE(agent->reply.success) << agent->reply.error;
  settle(*agent);
  EXPECT_FALSE(agent->closed);
  auto removed = db->remove_agent(agent_id);
  ASSERT_TRUE(removed && removed.value());
  live->store_changed();
  EXPECT_TRUE(run_until(
      io, [&] { return agent->closed; }, 1s))
      << "still connected after 1 s";
  finish(*agent);
  auto again = connect(credential, {http("app")});
  EXPECT_FALSE(again->reply.success);
  EXPECT_EQ(again->reply.code, protocol::refusal::kBadToken);
  finish(*again);
}

TEST_F(LiveControlTest, ADeletedTunnelClosesTheSessionsServingIt) {
  auto agent = connect(credential, {http("app")});
  ASSERT_TRUE(agent->reply.success) << agent->reply.error;
  // An unrelated change leaves it alone.
  http_tunnel("web");
  live->store_changed();
  settle(*agent);
  EXPECT_FALSE(agent->closed);
  auto removed = db->remove_tunnel(app_tunnel);
  ASSERT_TRUE(removed && removed.value());
  live->store_changed();
  EXPECT_TRUE(run_until(
      io, [&] { return agent->closed; }, 1s))
      << "still connected after 1 s";
  finish(*agent);
}

TEST_F(LiveControlTest, ANameReservedForAnotherAccountClosesItsCurrentHolder) {
  auto holder = connect("acme-secret-token-0123", {http("shop")});
  ASSERT_TRUE(holder->reply.success) << holder->reply.error;
  http_tunnel("shop");
  live->store_changed();
  EXPECT_TRUE(run_until(
      io, [&] { return holder->closed; }, 1s))
      << "still connected after 1 s";
  finish(*holder);
}

TEST_F(LiveControlTest, AnAgentServesWhatTheStoreAssignsAndHearsOfChanges) {
  store::Tunnel t;
  t.account_id = team_id;
  t.type = store::TunnelType::kTcp;
  t.port = 20077;
  t.agent_id = agent_id;
  t.local = "127.0.0.1:5432";
  create_tunnel(t);
  live->store_changed();
  auto agent = connect(credential, {}, true);
  ASSERT_TRUE(agent->reply.success) << agent->reply.error;
  ASSERT_EQ(agent->reply.tunnels.size(), 1u);
  EXPECT_EQ(agent->reply.tunnels[0].type, "tcp");
  EXPECT_EQ(agent->reply.tunnels[0].name, "example.test:20077");
  EXPECT_EQ(agent->reply.tunnels[0].local, "127.0.0.1:5432");
  // A change that is not its assignment leaves it alone.
  http_tunnel("web");
  live->store_changed();
  settle(*agent);
  EXPECT_FALSE(agent->go_away);
  // A tunnel assigned to it: it is told to reconnect (GOAWAY), and gets both.
  t.type = store::TunnelType::kHttp;
  t.port = 0;
  t.name = "db-admin";
  t.local = "127.0.0.1:8080";
  create_tunnel(t);
  live->store_changed();
  EXPECT_TRUE(run_until(
      io, [&] { return agent->go_away; }, 1s))
      << "no GOAWAY within 1 s";
  finish(*agent);
  auto again = connect(credential, {}, true);
  ASSERT_TRUE(again->reply.success) << again->reply.error;
  ASSERT_EQ(again->reply.tunnels.size(), 2u);
  EXPECT_EQ(again->reply.tunnels[1].name, "db-admin.example.test");
  EXPECT_EQ(again->reply.tunnels[1].local, "127.0.0.1:8080");
  finish(*again);
}

TEST_F(LiveControlTest, AnAgentWithoutAssignmentsWaitsAndATokenCannotAskForThem) {
  auto waiting = connect(credential, {}, true);
  ASSERT_TRUE(waiting->reply.success) << waiting->reply.error;
  EXPECT_TRUE(waiting->reply.tunnels.empty());
  finish(*waiting);
  auto token = connect("acme-secret-token-0123", {}, true);
  EXPECT_FALSE(token->reply.success);
  EXPECT_EQ(token->reply.code, protocol::refusal::kBadRequest);
  EXPECT_NE(token->reply.error.find("not a registered agent's"), std::string::npos)
      << token->reply.error;
  finish(*token);
}

TEST_F(LiveControlTest, RoutesCountUsageThatIsWrittenToTheStoreInBatches) {
  auto agent = connect(credential, {http("app")});
  ASSERT_TRUE(agent->reply.success) << agent->reply.error;
  Route route;
  ASSERT_EQ(context->registry.lookup("app.example.test", route), LookupStatus::kFound);
  ASSERT_NE(route.usage, nullptr) << "a route of a store tunnel is not counted";
  EXPECT_EQ(route.usage, context->usage.counters(team_id, app_tunnel));
  route.usage->add(300, 4000, false);
  route.usage->add(200, 0, true);
  // acme's traffic through its own pattern counts for acme as a whole (tunnel 0).
  auto free = connect("acme-secret-token-0123", {http("free")});
  ASSERT_TRUE(free->reply.success) << free->reply.error;
  Route acme;
  ASSERT_EQ(context->registry.lookup("free.example.test", acme), LookupStatus::kFound);
  ASSERT_NE(acme.usage, nullptr);
  acme.usage->add(1, 2, false);

  const std::int64_t now = 1'765'100'000;
  ASSERT_TRUE(live->flush_usage(now, std::chrono::hours(24)));
  const std::int64_t hour = now / 3600;
  auto rows = db->list_usage(team_id, hour, hour + 1);
  ASSERT_TRUE(rows) << rows.error().message;
  ASSERT_EQ(rows.value().size(), 2u);  // the tunnel's row and the account's
  for (const auto& row : rows.value()) {
    EXPECT_EQ(row.requests, 2u);
    EXPECT_EQ(row.bytes_in, 500u);
    EXPECT_EQ(row.bytes_out, 4000u);
    EXPECT_EQ(row.errors, 1u);
  }
  EXPECT_EQ(rows.value()[0].tunnel_id + rows.value()[1].tunnel_id, app_tunnel);
  // A second flush adds to the bucket, never counts twice.
  route.usage->add(1, 1, false);
  ASSERT_TRUE(live->flush_usage(now + 10, std::chrono::hours(24)));
  ASSERT_TRUE(live->flush_usage(now + 20, std::chrono::hours(24)));
  rows = db->list_usage(team_id, hour, hour + 1);
  ASSERT_TRUE(rows);
  EXPECT_EQ(rows.value()[0].requests, 3u);
  const auto acme_id = db->find_account("acme");
  ASSERT_TRUE(acme_id && acme_id.value());
  auto acme_rows = db->list_usage(acme_id.value()->id, hour, hour + 1);
  ASSERT_TRUE(acme_rows);
  ASSERT_EQ(acme_rows.value().size(), 1u);
  EXPECT_EQ(acme_rows.value()[0].tunnel_id, 0);
  EXPECT_EQ(acme_rows.value()[0].bytes_out, 2u);
  // Buckets older than the retention go at the next hour's flush.
  ASSERT_TRUE(live->flush_usage(now + 3 * 3600, std::chrono::hours(2)));
  rows = db->list_usage(team_id, hour, hour + 1);
  ASSERT_TRUE(rows);
  EXPECT_TRUE(rows.value().empty());
  finish(*free);
  finish(*agent);
}

TEST_F(LiveControlTest, AQuotaChangedInTheStoreAppliesToTheRunningRoutesWithoutReconnecting) {
  auto agent = connect(credential, {http("app")});
  ASSERT_TRUE(agent->reply.success) << agent->reply.error;
  Route route;
  ASSERT_EQ(context->registry.lookup("app.example.test", route), LookupStatus::kFound);
  ASSERT_NE(route.quota, nullptr) << "a route of a core with a store has no quota";
  EXPECT_EQ(route.quota, context->quotas.find("team"));
  ASSERT_NE(route.throttle, nullptr);  // the account's bandwidth quota may come later
  EXPECT_FALSE(route.throttle->engaged());
  AccountQuota& quota = *route.quota;
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(quota.admit()) << "no quota set yet";
  const auto set = [&](store::Quota q) {
    q.account_id = team_id;
    ASSERT_TRUE(db->set_quota(q));
    live->store_changed();
  };
  // Lowered below the three open connections: new ones are refused, the open ones stay.
  set(store::Quota{.max_connections = 2});
  auto refused = quota.admit();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->quota, QuotaKind::kMaxConnections);
  EXPECT_EQ(refused->limit, 2u);
  EXPECT_EQ(quota.connections(), 3u);
  for (int i = 0; i < 3; ++i) quota.release(0);
  // Requests per second, and raised again.
  set(store::Quota{.max_requests_per_second = 1});
  ASSERT_FALSE(quota.admit());
  quota.release(0);
  refused = quota.admit();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->quota, QuotaKind::kMaxRequestsPerSecond);
  set(store::Quota{.max_requests_per_second = 1000});
  time.advance(std::chrono::milliseconds(2));
  EXPECT_FALSE(quota.admit());
  quota.release(0);
  // Bandwidth: the route's throttle takes from the account's quota from now on.
  set(store::Quota{.bandwidth = 100'000});
  EXPECT_TRUE(route.throttle->engaged());
  // Nothing of this closed or moved the agent.
  settle(*agent);
  EXPECT_FALSE(agent->closed);
  EXPECT_FALSE(agent->go_away);
  finish(*agent);
}

TEST_F(LiveControlTest, ADeletedAccountsQuotaIsForgotten) {
  store::Quota q;
  q.account_id = team_id;
  q.max_connections = 5;
  ASSERT_TRUE(db->set_quota(q));
  live->store_changed();
  ASSERT_NE(context->quotas.find("team"), nullptr);
  ASSERT_TRUE(db->remove_account(team_id).value());
  live->store_changed();
  EXPECT_EQ(context->quotas.find("team"), nullptr) << "a deleted account's quota stays in memory";
}

TEST_F(LiveControlTest, BytesPerMonthCountsWhatTheStoreHoldsForTheMonth) {
  auto agent = connect(credential, {http("app")});
  ASSERT_TRUE(agent->reply.success) << agent->reply.error;
  Route route;
  ASSERT_EQ(context->registry.lookup("app.example.test", route), LookupStatus::kFound);
  ASSERT_NE(route.quota, nullptr);
  AccountQuota& quota = *route.quota;
  // One request of 1000 bytes, counted as the filters and finish() do, written at a flush.
  const std::int64_t now = unix_seconds(time);  // the core's clock: January 2026
  const auto request = [&](std::uint64_t bytes) {
    if (quota.admit()) return false;
    route.usage->add(bytes, 0, false);
    quota.release(bytes);
    return true;
  };
  ASSERT_TRUE(request(1000));
  ASSERT_TRUE(live->flush_usage(now, std::chrono::hours(24 * 90)));
  // The quota set through the store counts the month's stored usage at once.
  store::Quota q{.account_id = team_id, .bytes_per_month = 1500};
  ASSERT_TRUE(db->set_quota(q));
  live->store_changed();
  EXPECT_EQ(quota.month_bytes(), 1000u);
  ASSERT_TRUE(request(600));
  auto refused = quota.admit();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->quota, QuotaKind::kBytesPerMonth);
  EXPECT_EQ(refused->limit, 1500u);
  ASSERT_TRUE(live->flush_usage(now + 10, std::chrono::hours(24 * 90)));
  EXPECT_EQ(quota.month_bytes(), 1600u);
  EXPECT_TRUE(quota.admit());
  // The next month's first flush: January's bytes no longer count.
  ASSERT_TRUE(live->flush_usage(next_month_start(now) + 10, std::chrono::hours(24 * 90)));
  EXPECT_EQ(quota.month_bytes(), 0u);
  EXPECT_FALSE(quota.admit());
  quota.release(0);
  finish(*agent);
}

TEST(ReservationPattern, MatchesLikeTheConfigurationsPatterns) {
  EXPECT_TRUE(reservation_pattern_matches("*.example.org", "a.example.org"));
  EXPECT_TRUE(reservation_pattern_matches("*.example.org", "a.b.example.org"));
  EXPECT_FALSE(reservation_pattern_matches("*.example.org", "example.org"));
  EXPECT_FALSE(reservation_pattern_matches("*.example.org", ".example.org"));
  EXPECT_TRUE(reservation_pattern_matches("app-*.example.com", "app-1.example.com"));
  EXPECT_FALSE(reservation_pattern_matches("app-*.example.com", "app-1.x.example.com"));
  EXPECT_FALSE(reservation_pattern_matches("app-*.example.com", "app-.example.com"));
  EXPECT_TRUE(reservation_pattern_matches("app.example.com", "app.example.com"));
  EXPECT_EQ(control_key_of("tcp://example.test:20050"), "tcp:20050");
  EXPECT_EQ(control_key_of("app.example.test"), "app.example.test");
}

}  // namespace
}  // namespace tunnel::core
