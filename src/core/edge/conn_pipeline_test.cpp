// The connection pipeline of tcp and udp tunnels: decide_connection() and the filter chains
// without sockets, then a real tcp port and udp port (over loopback, with a real mux session to
// a test agent) showing that a refusing filter closes a connection before any stream reaches the
// agent, and drops a datagram from a refused source (counted).
#include "core/edge/conn_pipeline.hpp"

#include <gtest/gtest.h>

#include <boost/asio/ip/udp.hpp>
#include <boost/asio/read.hpp>

#include "common/result_testing.hpp"
#include "core/agents/agent_gateway.hpp"
#include "core/edge/tcp_tunnel.hpp"
#include "core/edge/udp_tunnel.hpp"
#include "mux/session_test_support.hpp"
#include "observability/metrics.hpp"
#include "protocol/proxy_header.hpp"
#include "protocol/udp_record.hpp"

namespace tunnel::core {
namespace {

using namespace std::chrono_literals;

// ---- decide_connection()

struct PortTable {
  LookupStatus status = LookupStatus::kFound;
  int asked = 0;
  PortLookup lookup() {
    return [this](Route& out) {
      ++asked;
      if (status == LookupStatus::kFound) {
        out.agent = std::make_shared<AgentSession>();
        out.agent->account = "acme";
        out.tunnel_index = 3;
      }
      return status;
    };
  }
};

LimitsConfig small_limits() {
  LimitsConfig limits;
  limits.max_connections_per_tcp_tunnel = 2;
  limits.max_clients_per_udp_tunnel = 2;
  return limits;
}

TEST(DecideConnection, ForwardsToTheAgentOfThePortWithBothAddresses) {
  PortTable table;
  for (const PortProtocol protocol : {PortProtocol::kTcp, PortProtocol::kUdp}) {
    const ConnectionFacts facts{protocol, 15432, "198.51.100.7:40000", "192.0.2.1:15432", 1};
    const ConnectionDecision d = decide_connection(facts, small_limits(), table.lookup());
    EXPECT_EQ(d.refusal, "");
    ASSERT_TRUE(d.route.agent);
    EXPECT_EQ(d.route.agent->account, "acme");
    EXPECT_EQ(d.route.tunnel_index, 3);
    EXPECT_EQ(d.evict, UdpEviction::kNone);
    // Always the addresses: the agent writes a PROXY header from them when its tunnel asks.
    EXPECT_EQ(d.open_payload, protocol::format_addresses("198.51.100.7:40000", "192.0.2.1:15432"));
    const auto parsed = protocol::parse_addresses(d.open_payload);
    EXPECT_EQ(parsed.client, "198.51.100.7:40000");
  }
}

TEST(DecideConnection, RefusesWhenNoAgentServesThePort) {
  for (const LookupStatus status : {LookupStatus::kUnknown, LookupStatus::kOffline}) {
    PortTable table{status};
    const ConnectionFacts facts{PortProtocol::kTcp, 15432, "198.51.100.7:1", "192.0.2.1:15432"};
    const ConnectionDecision d = decide_connection(facts, small_limits(), table.lookup());
    EXPECT_EQ(d.refusal, "no agent serves the port");
    EXPECT_FALSE(d.route.agent);
    EXPECT_TRUE(d.open_payload.empty());
  }
}

TEST(DecideConnection, RefusesATcpConnectionAtTheTunnelsLimit) {
  PortTable table;
  const ConnectionFacts facts{PortProtocol::kTcp, 15432, "198.51.100.7:1", "192.0.2.1:15432", 2};
  const ConnectionDecision d = decide_connection(facts, small_limits(), table.lookup());
  EXPECT_EQ(d.refusal, "the tunnel has 2 connections open (limits.max_connections_per_tcp_tunnel)");
  EXPECT_FALSE(d.route.agent) << "a refused connection holds no route";
}

TEST(DecideConnection, ANewUdpClientAtTheLimitEvictsTheOldest) {
  PortTable table;
  ConnectionFacts facts{PortProtocol::kUdp, 5353, "198.51.100.7:1", "192.0.2.1:5353", 2};
  ConnectionDecision d = decide_connection(facts, small_limits(), table.lookup());
  EXPECT_EQ(d.refusal, "");
  EXPECT_EQ(d.evict, UdpEviction::kOldest);
  facts.open = 1;
  d = decide_connection(facts, small_limits(), table.lookup());
  EXPECT_EQ(d.evict, UdpEviction::kNone);
}

// Issue 25: one client address could take a tcp tunnel's whole connection budget (and so, with
// the stream budget, lock out every other visitor of the tunnel).
TEST(DecideConnection, RefusesATcpConnectionAtItsAddressesLimit) {
  PortTable table;
  LimitsConfig limits = small_limits();
  limits.max_connections_per_tcp_tunnel = 10;
  limits.max_connections_per_tcp_tunnel_per_address = 3;
  ConnectionFacts facts{PortProtocol::kTcp, 15432, "198.51.100.7:1", "192.0.2.1:15432", 5, 3};
  ConnectionDecision d = decide_connection(facts, limits, table.lookup());
  EXPECT_EQ(d.refusal,
            "the client's address has 3 connections open to the tunnel "
            "(limits.max_connections_per_tcp_tunnel_per_address)");
  EXPECT_EQ(d.refusal_reason, "address_limit");
  EXPECT_FALSE(d.route.agent) << "a refused connection holds no route";
  facts.open_from_source = 2;
  d = decide_connection(facts, limits, table.lookup());
  EXPECT_EQ(d.refusal, "");
  EXPECT_TRUE(d.route.agent);
  // The tunnel's own limit still holds for an address under its cap.
  facts.open = 10;
  d = decide_connection(facts, limits, table.lookup());
  EXPECT_EQ(d.refusal_reason, "tunnel_limit");
  // 0 = no per-address cap.
  limits.max_connections_per_tcp_tunnel_per_address = 0;
  facts.open = 5;
  facts.open_from_source = 9;
  d = decide_connection(facts, limits, table.lookup());
  EXPECT_EQ(d.refusal, "");
}

// An address at its cap evicts its own least recently active client: churning through source
// ports cannot push another address's clients out (the tunnel-wide eviction could).
TEST(DecideConnection, ANewUdpClientAtItsAddressesLimitEvictsOneOfThatAddress) {
  PortTable table;
  LimitsConfig limits = small_limits();
  limits.max_clients_per_udp_tunnel = 10;
  limits.max_clients_per_udp_tunnel_per_address = 3;
  ConnectionFacts facts{PortProtocol::kUdp, 5353, "198.51.100.7:1", "192.0.2.1:5353", 4, 3};
  ConnectionDecision d = decide_connection(facts, limits, table.lookup());
  EXPECT_EQ(d.refusal, "");
  EXPECT_EQ(d.evict, UdpEviction::kOldestOfSource);
  // Also when the tunnel is full: evicting one of the address makes room in both counts.
  facts.open = 10;
  d = decide_connection(facts, limits, table.lookup());
  EXPECT_EQ(d.evict, UdpEviction::kOldestOfSource);
  facts.open_from_source = 2;
  d = decide_connection(facts, limits, table.lookup());
  EXPECT_EQ(d.evict, UdpEviction::kOldest);
  limits.max_clients_per_udp_tunnel_per_address = 0;
  facts.open = 4;
  facts.open_from_source = 9;
  d = decide_connection(facts, limits, table.lookup());
  EXPECT_EQ(d.evict, UdpEviction::kNone);
}

TEST(DecideConnection, PerAddressCapsAreOnByDefault) {
  const LimitsConfig limits;
  EXPECT_EQ(limits.max_connections_per_tcp_tunnel_per_address, 64u);
  EXPECT_EQ(limits.max_clients_per_udp_tunnel_per_address, 32u);
}

// ---- sources

SourceKey key_of(std::string_view ip) {
  return source_key(asio::ip::make_address(std::string(ip)));
}

TEST(SourceKey, IsTheIpv4AddressOrTheIpv6Slash64) {
  EXPECT_EQ(to_string(key_of("192.0.2.7")), "192.0.2.7");
  EXPECT_FALSE(key_of("192.0.2.7") == key_of("192.0.2.8"));
  // An IPv4 client on a dual-stack listener arrives IPv4-mapped: the same source.
  EXPECT_EQ(key_of("::ffff:192.0.2.7"), key_of("192.0.2.7"));
  // One host usually holds a whole /64.
  EXPECT_EQ(key_of("2001:db8:1:2::1"), key_of("2001:db8:1:2:ffff:ffff:ffff:ffff"));
  EXPECT_FALSE(key_of("2001:db8:1:2::1") == key_of("2001:db8:1:3::1"));
  EXPECT_EQ(to_string(key_of("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
  // An IPv6 /64 whose bits equal an IPv4 address is still another source.
  EXPECT_FALSE(key_of("0:0:c000:207::1") == key_of("192.0.2.7"));
}

TEST(SourceCounts, CountsPerSourceAndKeepsOnlySourcesWithConnections) {
  SourceCounts counts;
  const SourceKey a = key_of("192.0.2.7");
  const SourceKey b = key_of("2001:db8::1");
  counts.add(a);
  counts.add(a);
  counts.add(b);
  EXPECT_EQ(counts.count(a), 2u);
  EXPECT_EQ(counts.count(b), 1u);
  EXPECT_EQ(counts.count(key_of("192.0.2.8")), 0u);
  EXPECT_EQ(counts.sources(), 2u);
  counts.remove(a);
  counts.remove(b);
  counts.remove(b);  // not counted: ignored
  EXPECT_EQ(counts.count(a), 1u);
  EXPECT_EQ(counts.count(b), 0u);
  EXPECT_EQ(counts.sources(), 1u);
  counts.remove(a);
  EXPECT_EQ(counts.sources(), 0u) << "a source with nothing open is forgotten";
}

// ---- filter chains

// Records its calls; refuses when told to.
class Probe final : public ConnectionFilter {
 public:
  Probe(std::string name, unsigned hooks, std::string refusal = "")
      : name_(std::move(name)), hooks_(hooks), refusal_(std::move(refusal)) {}
  std::string_view name() const override { return name_; }
  unsigned hooks() const override { return hooks_; }
  ConnectionVerdict on_accept(const ConnectionInfo& c) override {
    calls.push_back("accept " + std::string(c.peer));
    return refusal_.empty() ? ConnectionVerdict::next() : ConnectionVerdict::refuse(refusal_);
  }
  ConnectionVerdict on_new_source(const ConnectionInfo& c) override {
    calls.push_back("new_source " + std::string(c.peer));
    return refusal_.empty() ? ConnectionVerdict::next() : ConnectionVerdict::refuse(refusal_);
  }
  void on_complete(const ConnectionInfo&, const ConnectionSummary& s) override {
    std::lock_guard lock(mutex);
    calls.push_back("complete " + std::string(end_name(s.end)));
    summaries.push_back(s);
    outcomes.emplace_back(s.outcome);
  }
  // Whether a connection or udp session completed.
  bool completed() {
    std::lock_guard lock(mutex);
    return !summaries.empty();
  }
  std::mutex mutex;
  std::vector<std::string> calls;
  std::vector<ConnectionSummary> summaries;
  std::vector<std::string> outcomes;

 private:
  std::string name_;
  unsigned hooks_;
  std::string refusal_;
};

std::shared_ptr<const ConnectionFilterChain> chain_of(
    std::vector<std::shared_ptr<ConnectionFilter>> filters) {
  return std::make_shared<const ConnectionFilterChain>(std::move(filters));
}

TEST(ConnectionFilterChain, CallsOnlyTheHooksItsFiltersDeclareInOrder) {
  auto a = std::make_shared<Probe>("a", conn_hook::kAccept | conn_hook::kComplete);
  auto b = std::make_shared<Probe>("b", conn_hook::kNewSource);
  auto chain = chain_of({a, b});
  EXPECT_TRUE(chain->wants(conn_hook::kAccept));
  EXPECT_TRUE(chain->wants(conn_hook::kNewSource));
  Route route;
  const ConnectionInfo info{PortProtocol::kTcp, 1, "peer", "local", route};
  EXPECT_TRUE(chain->accept(info).proceed());
  EXPECT_TRUE(chain->new_source(info).proceed());
  chain->complete(info, ConnectionSummary{});
  EXPECT_EQ(a->calls, (std::vector<std::string>{"accept peer", "complete closed"}));
  EXPECT_EQ(b->calls, (std::vector<std::string>{"new_source peer"}));
  EXPECT_TRUE(ConnectionFilterChain{}.empty());
  EXPECT_FALSE(ConnectionFilterChain{}.wants(conn_hook::kAccept | conn_hook::kComplete));
}

TEST(ConnectionFilterChain, TheFirstRefusalStopsTheChainAndNamesTheFilter) {
  auto listener_probe = std::make_shared<Probe>("listener", conn_hook::kAccept);
  auto deny = std::make_shared<Probe>("deny", conn_hook::kAccept, "198.51.100.0/24 is denied");
  auto after = std::make_shared<Probe>("after", conn_hook::kAccept);
  auto listener = chain_of({listener_probe});
  auto tunnel = chain_of({deny, after});
  Route route;
  const ConnectionInfo info{PortProtocol::kTcp, 1, "198.51.100.7:1", "local", route};
  const ConnectionVerdict v = admit(listener.get(), tunnel.get(), conn_hook::kAccept, info);
  EXPECT_FALSE(v.proceed());
  EXPECT_EQ(v.refusal, "198.51.100.0/24 is denied");
  EXPECT_EQ(v.by, "deny");
  EXPECT_EQ(listener_probe->calls.size(), 1u) << "the listener's chain runs first";
  EXPECT_TRUE(after->calls.empty()) << "filters after a refusal do not run";
  // Null chains (nothing configured) pass.
  EXPECT_TRUE(admit(nullptr, nullptr, conn_hook::kNewSource, info).proceed());
  complete(nullptr, nullptr, info, ConnectionSummary{});
}

TEST(ConnectionFilterChain, CompleteRunsOnBothChains) {
  auto l = std::make_shared<Probe>("l", conn_hook::kComplete);
  auto t = std::make_shared<Probe>("t", conn_hook::kComplete);
  Route route;
  const ConnectionInfo info{PortProtocol::kUdp, 1, "peer", "local", route};
  ConnectionSummary summary;
  summary.end = ConnectionEnd::kIdle;
  complete(chain_of({l}).get(), chain_of({t}).get(), info, summary);
  EXPECT_EQ(l->calls, (std::vector<std::string>{"complete idle"}));
  EXPECT_EQ(t->calls, (std::vector<std::string>{"complete idle"}));
}

// ---- real ports

// A core session and a test agent over loopback, a CoreContext, and one tcp or udp port claimed
// for the agent with the given chains.
class PortTest : public ::testing::Test {
 protected:
  PortTest() : pair(protocol::kVersion2) {
    auto loaded = load_config_string("listen:\n  tunnels_host: 127.0.0.1\n");
    EXPECT_TRUE(loaded.ok());
    context = std::make_unique<CoreContext>(std::move(loaded.config), metrics, time);
    agent = std::make_shared<AgentSession>();
    agent->account = "acme";
    agent->session = pair.core;
    // The test agent: records every stream, answers each with "hi" and its end.
    asio::co_spawn(pair.io, accept_streams(), asio::detached);
  }

  ~PortTest() override {
    context->registry.release_agent(agent.get());
    agent->session.reset();  // the pair checks that nothing else keeps its sessions
    pair.finish();
  }

  asio::awaitable<void> accept_streams() {
    for (;;) {
      auto stream = co_await pair.agent->accept();
      if (!stream) co_return;
      payloads.push_back(stream->open_payload());
      asio::co_spawn(pair.io, keep_open ? mux::test::echo_stream(stream) : answer(stream),
                     asio::detached);
    }
  }
  static asio::awaitable<void> answer(std::shared_ptr<mux::Stream> stream) {
    transport::error_code ec;
    std::vector<std::uint8_t> buf(4096);
    const std::size_t n = co_await stream->read_some(asio::buffer(buf), ec);
    if (ec) co_return;
    // The first bytes echoed with END_STREAM (tcp: "hello"; udp: the first record).
    co_await stream->write({buf.data(), n}, ec, true);
  }

  std::uint16_t claim(PortProtocol protocol, std::shared_ptr<const ConnectionFilterChain> listener,
                      std::shared_ptr<const ConnectionFilterChain> tunnel,
                      std::shared_ptr<UsageCounters> usage = nullptr) {
    PortRules rules;
    rules.ranges = {{30000, 60000}};
    rules.max_ports = 0;
    Route route{agent, 0, "localhost:5432", nullptr, nullptr, std::move(tunnel), std::move(usage)};
    const OpenPort open = [&](std::uint16_t port) {
      return protocol == PortProtocol::kTcp
                 ? open_tcp_port(*context, pair.io.get_executor(), "127.0.0.1", port, listener)
                 : open_udp_port(*context, pair.io.get_executor(), "127.0.0.1", port, listener);
    };
    const auto port =
        context->registry.claim_port(protocol, 0, "acme", rules, std::move(route), open);
    EXPECT_TRUE(common::is_ok(port));
    return port ? port.value() : 0;
  }

  std::uint64_t counter(std::string_view name, const observability::Labels& labels = {}) {
    return metrics.counter(name, "", labels).value();
  }
  std::uint64_t refused_count(std::string reason) {
    return counter("tunnel_tcp_connections_refused_total", {{"reason", std::move(reason)}});
  }

  SimulatedTimeSource time;  // the core's clock (registry, limits)
  observability::Registry metrics;
  std::unique_ptr<CoreContext> context;
  mux::test::SessionPair pair;
  std::shared_ptr<AgentSession> agent;
  std::vector<std::string> payloads;  // OPEN_STREAM payloads the agent got
  bool keep_open = false;             // the test agent echoes each stream until it ends
};

// Connects to the port, sends "hello", and reads until the core closes: what came back.
asio::awaitable<std::string> tcp_client(std::uint16_t port, boost::system::error_code& end) {
  asio::ip::tcp::socket s(co_await asio::this_coro::executor);
  const asio::ip::tcp::endpoint to(asio::ip::make_address("127.0.0.1"), port);
  auto [cec] = co_await s.async_connect(to, asio::as_tuple(asio::use_awaitable));
  if (cec) {
    end = cec;
    co_return "";
  }
  co_await asio::async_write(s, asio::buffer(std::string_view("hello")),
                             asio::as_tuple(asio::use_awaitable));
  std::string got;
  char buf[256];
  for (;;) {
    auto [ec, n] =
        co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    got.append(buf, n);
    if (ec) {
      end = ec;
      co_return got;
    }
  }
}

// A udp socket on `ip` (any port), and 127.0.0.1:`port`, where the tests' tunnel ports listen.
asio::ip::udp::socket loopback_udp(const asio::any_io_executor& executor,
                                   const char* ip = "127.0.0.1") {
  return asio::ip::udp::socket(executor, asio::ip::udp::endpoint(asio::ip::make_address(ip), 0));
}
asio::ip::udp::endpoint loopback(std::uint16_t port) {
  return {asio::ip::make_address("127.0.0.1"), port};
}

TEST_F(PortTest, ARefusingFilterClosesATcpConnectionBeforeAnyStreamIsOpened) {
  auto deny = std::make_shared<Probe>("deny", conn_hook::kAccept | conn_hook::kComplete,
                                      "127.0.0.1 is denied");
  const std::uint16_t port = claim(PortProtocol::kTcp, nullptr, chain_of({deny}));
  ASSERT_NE(port, 0);
  const std::uint64_t refused = refused_count("filter");
  pair.run([&]() -> asio::awaitable<void> {
    boost::system::error_code end;
    const std::string got = co_await tcp_client(port, end);
    EXPECT_EQ(got, "");
    EXPECT_TRUE(end == asio::error::eof || end == asio::error::connection_reset) << end.message();
    co_await mux::test::sleep_for(50ms);  // anything sent to the agent would have arrived
  });
  EXPECT_TRUE(payloads.empty()) << "a stream reached the agent";
  EXPECT_EQ(pair.core->stream_count(), 0u);
  EXPECT_EQ(agent->raw_streams, 0u);
  ASSERT_EQ(deny->calls.size(), 1u);
  EXPECT_TRUE(deny->calls[0].starts_with("accept 127.0.0.1:")) << deny->calls[0];
  EXPECT_EQ(refused_count("filter"), refused + 1);
}

TEST_F(PortTest, AnAcceptedTcpConnectionIsRelayedAndCompleted) {
  auto probe = std::make_shared<Probe>("probe", conn_hook::kAccept | conn_hook::kComplete);
  const std::uint16_t port = claim(PortProtocol::kTcp, chain_of({probe}), nullptr);
  ASSERT_NE(port, 0);
  pair.run([&]() -> asio::awaitable<void> {
    boost::system::error_code end;
    const std::string got = co_await tcp_client(port, end);
    EXPECT_EQ(got, "hello");  // echoed by the agent, then its END_STREAM
    EXPECT_EQ(end, asio::error::eof) << end.message();
    CO_ASSERT_TRUE(co_await mux::test::wait_until([&] { return probe->completed(); }, 5s));
  });
  ASSERT_EQ(payloads.size(), 1u);
  EXPECT_TRUE(payloads[0].starts_with("127.0.0.1:")) << payloads[0];
  std::lock_guard lock(probe->mutex);
  ASSERT_EQ(probe->calls.size(), 2u);
  EXPECT_TRUE(probe->calls[0].starts_with("accept 127.0.0.1:"));
  EXPECT_EQ(probe->calls[1], "complete closed");
  EXPECT_EQ(probe->summaries[0].bytes_in, 5u);
  EXPECT_EQ(probe->summaries[0].bytes_out, 5u);
  EXPECT_EQ(probe->outcomes[0], "");
  EXPECT_GT(probe->summaries[0].seconds, 0.0);
}

TEST_F(PortTest, ARefusedUdpSourceHasItsDatagramsDroppedAndCounted) {
  auto deny = std::make_shared<Probe>("deny", conn_hook::kNewSource, "127.0.0.1 is denied");
  const std::uint16_t port = claim(PortProtocol::kUdp, chain_of({deny}), nullptr);
  ASSERT_NE(port, 0);
  const std::uint64_t dropped = counter("tunnel_udp_datagrams_dropped_total");
  pair.run([&]() -> asio::awaitable<void> {
    auto s = loopback_udp(co_await asio::this_coro::executor);
    const asio::ip::udp::endpoint to = loopback(port);
    for (int i = 0; i < 2; ++i) {
      co_await s.async_send_to(asio::buffer(std::string_view("ping")), to,
                               asio::as_tuple(asio::use_awaitable));
    }
    CO_ASSERT_TRUE(co_await mux::test::wait_until(
        [&] { return counter("tunnel_udp_datagrams_dropped_total") == dropped + 2; }, 5s));
    co_await mux::test::sleep_for(50ms);
  });
  EXPECT_TRUE(payloads.empty()) << "a stream reached the agent";
  EXPECT_EQ(pair.core->stream_count(), 0u);
  // No session is kept for a refused source: each datagram from it asks again.
  EXPECT_EQ(deny->calls.size(), 2u);
  EXPECT_EQ(counter("tunnel_udp_datagrams_dropped_total"), dropped + 2);
  EXPECT_EQ(counter("tunnel_udp_sessions_total"), 0u);
}

TEST_F(PortTest, AnAcceptedUdpSourceGetsASession) {
  auto probe = std::make_shared<Probe>("probe", conn_hook::kNewSource | conn_hook::kComplete);
  const std::uint16_t port = claim(PortProtocol::kUdp, nullptr, chain_of({probe}));
  ASSERT_NE(port, 0);
  pair.run([&]() -> asio::awaitable<void> {
    auto s = loopback_udp(co_await asio::this_coro::executor);
    const asio::ip::udp::endpoint to = loopback(port);
    co_await s.async_send_to(asio::buffer(std::string_view("ping")), to,
                             asio::as_tuple(asio::use_awaitable));
    char buf[64];
    asio::ip::udp::endpoint from;
    auto [ec, n] =
        co_await s.async_receive_from(asio::buffer(buf), from, asio::as_tuple(asio::use_awaitable));
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(std::string_view(buf, n), "ping");  // the agent echoed the record
    // The agent ended the stream after its answer: the session closes and completes.
    CO_ASSERT_TRUE(co_await mux::test::wait_until([&] { return probe->completed(); }, 5s));
  });
  ASSERT_EQ(payloads.size(), 1u);
  std::lock_guard lock(probe->mutex);
  ASSERT_EQ(probe->calls.size(), 2u);
  EXPECT_TRUE(probe->calls[0].starts_with("new_source 127.0.0.1:"));
  EXPECT_EQ(probe->calls[1], "complete closed");
  EXPECT_EQ(probe->summaries[0].datagrams_in, 1u);
  EXPECT_EQ(probe->summaries[0].datagrams_out, 1u);
  EXPECT_EQ(probe->summaries[0].bytes_in, 4u);
  EXPECT_EQ(probe->summaries[0].bytes_out, 4u);
}

TEST_F(PortTest, AUdpClientFlowCountsAsOneRequestWithItsBytesInTheUsage) {
  auto usage = std::make_shared<UsageCounters>();
  auto probe = std::make_shared<Probe>("probe", conn_hook::kNewSource | conn_hook::kComplete);
  const std::uint16_t port = claim(PortProtocol::kUdp, nullptr, chain_of({probe}), usage);
  ASSERT_NE(port, 0);
  pair.run([&]() -> asio::awaitable<void> {
    asio::ip::udp::socket s(co_await asio::this_coro::executor,
                            asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const asio::ip::udp::endpoint to(asio::ip::make_address("127.0.0.1"), port);
    co_await s.async_send_to(asio::buffer(std::string_view("ping!")), to,
                             asio::as_tuple(asio::use_awaitable));
    CO_ASSERT_TRUE(co_await mux::test::wait_until(
        [&] {
          std::lock_guard lock(probe->mutex);
          return !probe->summaries.empty();
        },
        5s));
  });
  EXPECT_EQ(usage->requests.load(), 1u);
  EXPECT_EQ(usage->bytes_in.load(), 5u);
  EXPECT_EQ(usage->bytes_out.load(), 5u);
  EXPECT_EQ(usage->errors.load(), 0u);
}

TEST_F(PortTest, TheAccountsMaxConnectionsQuotaClosesANewTcpConnectionAtOnce) {
  auto quota = context->quotas.get("acme");
  const auto chain = tunnel_connection_filters(protocol::TunnelRequest{}, quota).value();
  ASSERT_NE(chain, nullptr);
  const std::uint16_t port = claim(PortProtocol::kTcp, nullptr, chain);
  ASSERT_NE(port, 0);
  ASSERT_FALSE(quota->admit());  // another connection of the account (an http request, say)
  quota->set_limits(QuotaLimits{.max_connections = 1});
  const std::uint64_t refused = refused_count("filter");
  pair.run([&]() -> asio::awaitable<void> {
    boost::system::error_code end;
    EXPECT_EQ(co_await tcp_client(port, end), "");
    EXPECT_TRUE(end == asio::error::eof || end == asio::error::connection_reset) << end.message();
    quota->release(0);  // the other one ended: room for one
    EXPECT_EQ(co_await tcp_client(port, end), "hello");
    CO_ASSERT_TRUE(co_await mux::test::wait_until([&] { return quota->connections() == 0; }, 5s));
  });
  EXPECT_EQ(payloads.size(), 1u) << "the refused connection reached the agent";
  EXPECT_EQ(refused_count("filter"), refused + 1);
  EXPECT_EQ(counter("tunnel_quota_refusals_total", {{"quota", "max_connections"}}), 1u);
  EXPECT_EQ(quota->month_bytes(), 10u);  // the relayed connection's 5 bytes each way
}

TEST_F(PortTest, TheAccountsRequestQuotaDropsTheDatagramsOfANewUdpClient) {
  auto quota = context->quotas.get("acme");
  quota->set_limits(QuotaLimits{.max_requests_per_second = 1});
  ASSERT_FALSE(quota->admit());  // the second's one request went elsewhere (http, say)
  quota->release(0);
  const std::uint16_t port =
      claim(PortProtocol::kUdp, nullptr,
            tunnel_connection_filters(protocol::TunnelRequest{}, quota).value());
  ASSERT_NE(port, 0);
  const std::uint64_t dropped = counter("tunnel_udp_datagrams_dropped_total");
  pair.run([&]() -> asio::awaitable<void> {
    asio::ip::udp::socket s(co_await asio::this_coro::executor,
                            asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const asio::ip::udp::endpoint to(asio::ip::make_address("127.0.0.1"), port);
    for (int i = 0; i < 2; ++i) {
      co_await s.async_send_to(asio::buffer(std::string_view("ping")), to,
                               asio::as_tuple(asio::use_awaitable));
    }
    CO_ASSERT_TRUE(co_await mux::test::wait_until(
        [&] { return counter("tunnel_udp_datagrams_dropped_total") == dropped + 2; }, 5s));
  });
  EXPECT_TRUE(payloads.empty()) << "a stream reached the agent";
  EXPECT_EQ(counter("tunnel_quota_refusals_total", {{"quota", "max_requests_per_second"}}), 2u);
  EXPECT_EQ(quota->connections(), 0u);
}

// Opens a tcp connection to the port from `source` that sends nothing (the test agent keeps its
// stream open while it waits for bytes).
asio::awaitable<asio::ip::tcp::socket> hold(std::uint16_t port, std::string_view source) {
  asio::ip::tcp::socket s(co_await asio::this_coro::executor);
  s.open(asio::ip::tcp::v4());
  s.bind(asio::ip::tcp::endpoint(asio::ip::make_address(std::string(source)), 0));
  co_await s.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                           asio::use_awaitable);
  co_return s;
}

// Sends "hello" from `source` and reads until the core or the agent ends: what came back (""
// when the core closed the connection at once).
asio::awaitable<std::string> hello_from(std::uint16_t port, std::string_view source) {
  asio::ip::tcp::socket s = co_await hold(port, source);
  co_await asio::async_write(s, asio::buffer(std::string_view("hello")),
                             asio::as_tuple(asio::use_awaitable));
  char buf[16];
  auto [ec, n] =
      co_await asio::async_read(s, asio::buffer(buf, 5), asio::as_tuple(asio::use_awaitable));
  co_return std::string(buf, n);
}

// Issue 25: one address's connections are capped per tunnel; another address still gets in, and
// a closed connection gives its place back.
TEST_F(PortTest, ATcpConnectionOverItsAddressesCapIsClosedAtOnce) {
  context->config.limits.max_connections_per_tcp_tunnel_per_address = 2;
  keep_open = true;
  const std::uint16_t port = claim(PortProtocol::kTcp, nullptr, nullptr);
  ASSERT_NE(port, 0);
  const std::uint64_t refused = refused_count("address_limit");
  pair.run([&]() -> asio::awaitable<void> {
    std::vector<asio::ip::tcp::socket> held;
    held.push_back(co_await hold(port, "127.0.0.1"));
    held.push_back(co_await hold(port, "127.0.0.1"));
    CO_ASSERT_TRUE(co_await mux::test::wait_until([&] { return payloads.size() == 2; }, 5s));
    EXPECT_EQ(co_await hello_from(port, "127.0.0.1"), "") << "a third from one address got in";
    EXPECT_EQ(refused_count("address_limit"), refused + 1);
    EXPECT_EQ(co_await hello_from(port, "127.0.0.2"), "hello") << "another address was refused";
    CO_ASSERT_TRUE(co_await mux::test::wait_until([&] { return agent->raw_streams == 2; }, 5s));
    held[0].close();
    CO_ASSERT_TRUE(co_await mux::test::wait_until([&] { return agent->raw_streams == 1; }, 5s));
    EXPECT_EQ(co_await hello_from(port, "127.0.0.1"), "hello") << "a closed one kept its place";
  });
  EXPECT_EQ(refused_count("address_limit"), refused + 1);
  EXPECT_EQ(payloads.size(), 4u) << "the refused connection opened no stream";
}

// Sends `text` from `socket` until an answer comes back (the first datagrams of a new source
// may race its session's start).
asio::awaitable<bool> udp_echo(asio::ip::udp::socket& socket, std::uint16_t port,
                               std::string_view text) {
  const asio::ip::udp::endpoint to = loopback(port);
  co_await socket.async_send_to(asio::buffer(text), to, asio::as_tuple(asio::use_awaitable));
  char buf[64];
  asio::ip::udp::endpoint from;
  auto [ec, n] = co_await socket.async_receive_from(asio::buffer(buf), from,
                                                    asio::as_tuple(asio::use_awaitable));
  co_return !ec && std::string_view(buf, n) == text;
}

// Issue 25: an address at its cap of udp clients evicts its own least recently active one, never
// another address's.
TEST_F(PortTest, AUdpAddressAtItsCapEvictsItsOwnOldestClient) {
  context->config.limits.max_clients_per_udp_tunnel_per_address = 2;
  keep_open = true;
  const std::uint16_t port = claim(PortProtocol::kUdp, nullptr, nullptr);
  ASSERT_NE(port, 0);
  const std::uint64_t by_address =
      counter("tunnel_udp_sessions_evicted_total", {{"cap", "address"}});
  const std::uint64_t by_tunnel = counter("tunnel_udp_sessions_evicted_total", {{"cap", "tunnel"}});
  pair.run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto from = [&](const char* ip) { return loopback_udp(ex, ip); };
    auto other = from("127.0.0.2");
    auto first = from("127.0.0.1");
    auto second = from("127.0.0.1");
    auto third = from("127.0.0.1");
    EXPECT_TRUE(co_await udp_echo(other, port, "o"));
    EXPECT_TRUE(co_await udp_echo(first, port, "1"));
    EXPECT_TRUE(co_await udp_echo(second, port, "2"));
    CO_ASSERT_TRUE(co_await mux::test::wait_until([&] { return agent->raw_streams == 3; }, 5s));
    EXPECT_TRUE(co_await udp_echo(third, port, "3"));
    // `first` (127.0.0.1's least recently active) made room; 127.0.0.2's client stayed.
    CO_ASSERT_TRUE(co_await mux::test::wait_until(
        [&] {
          return counter("tunnel_udp_sessions_evicted_total", {{"cap", "address"}}) ==
                 by_address + 1;
        },
        5s));
    CO_ASSERT_TRUE(co_await mux::test::wait_until([&] { return agent->raw_streams == 3; }, 5s));
    EXPECT_TRUE(co_await udp_echo(other, port, "o2"));
    EXPECT_TRUE(co_await udp_echo(second, port, "22"));
  });
  EXPECT_EQ(payloads.size(), 4u) << "127.0.0.2 and 127.0.0.1's second kept their sessions";
  EXPECT_EQ(counter("tunnel_udp_sessions_evicted_total", {{"cap", "tunnel"}}), by_tunnel);
}

}  // namespace
}  // namespace tunnel::core
