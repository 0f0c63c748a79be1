// The agent gateway's AUTH exchange without the real binaries: a test "agent" writes frames to a
// real AgentGateway over loopback TCP (serve_plain), with a real CoreContext built from a config
// string. Every refusal is checked by the AUTH reply's code and error, and by the registry
// holding nothing for the refused agent afterwards (no agent slot, tunnel slot, name or port).
#include "core/agents/agent_gateway.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <optional>

#include "core/control/jwt.hpp"
#include "mux/frame_io.hpp"
#include "mux/session_test_support.hpp"
#include "observability/metrics.hpp"
#include "protocol/frame.hpp"

namespace tunnel::core {
namespace {

using mux::test::run_until;
using mux::test::tcp_pair;
using namespace std::chrono_literals;

// A port "opened" by the gateway: nothing is bound; it remembers whether it was closed.
class FakePort final : public PortListener {
 public:
  void close() override { closed = true; }
  bool closed = false;
};

// What the test agent got back.
struct Reply {
  bool got_frame = false;       // an AUTH|ACK frame arrived
  protocol::AuthResponse auth;  // parsed from it
  std::string error;            // why no frame, or why it did not parse
  protocol::FrameType type{};   // of the frame that arrived
  std::uint8_t flags = 0;
};

constexpr std::string_view kConfig =
    "domain: example.test\n"
    "accounts:\n"
    "  - name: acme\n"
    "    tokens: [acme-secret-token]\n"
    "    subdomains: [app, web, api, \"tcp-*\"]\n"
    "    max_agents: 1\n"
    "    ports:\n"
    "      ranges: [\"20000-20099\"]\n"
    "  - name: other\n"
    "    tokens: [other-secret-token]\n"
    "limits:\n"
    "  max_tunnels_per_agent: 3\n";

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override { make(std::string(kConfig)); }

  void make(const std::string& yaml) {
    gateway.reset();
    context.reset();
    auto loaded = load_config_string(yaml);
    ASSERT_TRUE(loaded.ok()) << format_errors(loaded.errors, "config");
    context = std::make_unique<CoreContext>(std::move(loaded.config), metrics, time);
    const PortOpener opener =
        [this](PortProtocol, asio::any_io_executor,
               std::uint16_t port) -> common::Result<std::shared_ptr<PortListener>> {
      if (port == 20042) return common::fail("port 20042 is in use");
      auto p = std::make_shared<FakePort>();
      ports.push_back(p);
      return std::shared_ptr<PortListener>(p);
    };
    gateway = std::make_unique<AgentGateway>(*context, opener, nullptr);
  }

  // One v1 frame as an agent sends it before AUTH.
  static std::vector<std::uint8_t> frame(protocol::FrameType type, std::uint32_t stream,
                                         std::string_view payload) {
    std::vector<std::uint8_t> out;
    mux::append_frame(out, protocol::kVersion1, type, 0, stream, mux::as_bytes(payload));
    return out;
  }
  static std::vector<std::uint8_t> auth_frame(const protocol::AuthRequest& request) {
    return frame(protocol::FrameType::kAuth, 0, protocol::serialize(request));
  }

  static protocol::AuthRequest request_for(std::string token,
                                           std::vector<protocol::TunnelRequest> tunnels) {
    protocol::AuthRequest r;
    r.token = std::move(token);
    r.agent_id = "laptop";
    r.version = "test";
    r.protocol_versions = {protocol::kVersion2, protocol::kVersion1};
    r.tunnels = std::move(tunnels);
    return r;
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

  // Sends `bytes` as the agent and reads the core's reply. After a successful AUTH the
  // connection stays open while `while_connected` runs (the session is live then).
  Reply exchange(std::vector<std::uint8_t> bytes,
                 const std::function<void()>& while_connected = nullptr) {
    auto [accepted, dialer] = tcp_pair(io);
    bool served = false;
    asio::co_spawn(io, gateway->serve_plain(std::move(accepted)),
                   [&](std::exception_ptr) { served = true; });
    auto agent = transport::make_tcp_conn(std::move(dialer));
    Reply reply;
    bool replied = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          transport::error_code ec;
          co_await agent->write(asio::buffer(bytes), ec);
          if (ec) {
            reply.error = "write: " + ec.message();
            replied = true;
            co_return;
          }
          mux::FrameReader reader(protocol::kVersion1);
          mux::Frame frame;
          if (auto read = co_await reader.next(*agent, frame, ec); !read) {
            reply.error = read.error().message;
            replied = true;
            co_return;
          }
          reply.got_frame = true;
          reply.type = frame.header.frame_type();
          reply.flags = frame.header.flags;
          auto parsed = protocol::parse_auth_response(mux::as_text(frame.payload));
          if (parsed) {
            reply.auth = parsed.value();
          } else {
            reply.error = parsed.error().message;
          }
          replied = true;
        }(),
        asio::detached);
    EXPECT_TRUE(run_until(
        io, [&] { return replied; }, 10s))
        << "no reply within 10 s";
    if (reply.auth.success && while_connected) while_connected();
    agent->close();
    EXPECT_TRUE(run_until(
        io, [&] { return served; }, 10s))
        << "serve() did not end";
    return reply;
  }

  // How many tunnel slots the account's agents hold (limits.max_tunnels_per_account).
  std::size_t tunnel_slots(const std::string& account) {
    std::size_t serving = 0;
    context->registry.add_tunnels(account, 0, 0, serving);
    return serving;
  }

  // The registry holds nothing for `account`: no agent, no tunnel slot, no name, no port.
  void expect_nothing_held(const std::string& account = "acme") {
    EXPECT_EQ(context->registry.agents_of(account), 0u);
    EXPECT_EQ(tunnel_slots(account), 0u);
    EXPECT_EQ(context->registry.ports_of(PortProtocol::kTcp, account), 0u);
    EXPECT_TRUE(context->registry.owned(0).empty());
    for (const auto& p : ports) EXPECT_TRUE(p->closed) << "a port opened for the AUTH stays open";
  }

  void expect_refused(const Reply& reply, std::string_view code, std::string_view error) {
    ASSERT_TRUE(reply.got_frame) << reply.error;
    EXPECT_EQ(reply.type, protocol::FrameType::kAuth);
    EXPECT_EQ(reply.flags & protocol::flags::kAck, protocol::flags::kAck);
    EXPECT_FALSE(reply.auth.success);
    EXPECT_EQ(reply.auth.code, code);
    EXPECT_NE(reply.auth.error.find(error), std::string::npos)
        << "error: " << reply.auth.error << "\nexpected to contain: " << error;
  }

  std::uint64_t auth_failures() const { return context->metrics.agent_auth_failures.value(); }

  // A refused AUTH: counted once as a failure, and the registry holds nothing for it.
  void expect_one_failure_and_nothing_held() {
    EXPECT_EQ(auth_failures(), 1u);
    expect_nothing_held();
  }

  asio::io_context io;
  SimulatedTimeSource time;  // the core's clock: holds and throttling advance only by hand
  observability::Registry metrics;
  std::unique_ptr<CoreContext> context;
  std::unique_ptr<AgentGateway> gateway;
  std::vector<std::shared_ptr<FakePort>> ports;
};

TEST_F(GatewayTest, AcceptsAnAgentAndReleasesItsNamesWhenItLeaves) {
  bool checked = false;
  const Reply reply =
      exchange(auth_frame(request_for("acme-secret-token", {http("app"), tcp(20001)})), [&] {
        Route route;
        EXPECT_EQ(context->registry.lookup("app.example.test", route), LookupStatus::kFound);
        EXPECT_EQ(context->registry.agents_of("acme"), 1u);
        EXPECT_EQ(tunnel_slots("acme"), 2u);
        EXPECT_EQ(context->registry.ports_of(PortProtocol::kTcp, "acme"), 1u);
        checked = true;
      });
  ASSERT_TRUE(reply.got_frame) << reply.error;
  EXPECT_TRUE(reply.auth.success) << reply.auth.error;
  EXPECT_EQ(reply.auth.code, "");
  EXPECT_EQ(reply.auth.protocol_version, protocol::kVersion2);
  EXPECT_EQ(reply.auth.agent_id, "laptop");
  ASSERT_EQ(reply.auth.tunnels.size(), 2u);
  EXPECT_EQ(reply.auth.tunnels[0].name, "app.example.test");
  EXPECT_EQ(reply.auth.tunnels[1].url, "tcp://example.test:20001");
  EXPECT_TRUE(checked);
  // Gone: the slots are free, the name and the port are held for the account (offline).
  EXPECT_EQ(context->registry.agents_of("acme"), 0u);
  EXPECT_EQ(tunnel_slots("acme"), 0u);
  Route route;
  EXPECT_EQ(context->registry.lookup("app.example.test", route), LookupStatus::kOffline);
  EXPECT_EQ(context->registry.owned(0).size(), 2u);
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_TRUE(ports[0]->closed);
  EXPECT_EQ(auth_failures(), 0u);
  EXPECT_EQ(context->metrics.agent_sessions.value(), 1u);
}

TEST_F(GatewayTest, ABadFrameHeaderClosesWithoutAReply) {
  // A header announcing more than an AUTH payload may carry: refused from the header alone,
  // before any of it is read. (The length field, big-endian, counts 9 header bytes + payload.)
  std::vector<std::uint8_t> bytes = frame(protocol::FrameType::kAuth, 0, "");
  const std::uint32_t length = protocol::kMinLength + protocol::kMaxAuthPayload + 1;
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<std::uint8_t>(length >> (8 * (3 - i)));
  const Reply reply = exchange(bytes);
  EXPECT_FALSE(reply.got_frame);
  expect_one_failure_and_nothing_held();
}

TEST_F(GatewayTest, RefusesAnAuthThatIsNotJson) {
  const Reply reply = exchange(frame(protocol::FrameType::kAuth, 0, "{not json"));
  expect_refused(reply, protocol::refusal::kBadRequest, "");
  EXPECT_FALSE(reply.auth.error.empty());
  expect_one_failure_and_nothing_held();
}

TEST_F(GatewayTest, RefusesAFrameThatIsNotAuth) {
  const Reply reply = exchange(frame(protocol::FrameType::kData, 7, "hello"));
  expect_refused(reply, protocol::refusal::kBadRequest,
                 "expected an AUTH frame on stream 0, got DATA on stream 7");
  expect_one_failure_and_nothing_held();
}

TEST_F(GatewayTest, RefusesABadToken) {
  const Reply reply = exchange(auth_frame(request_for("wrong-token", {http("app")})));
  expect_refused(reply, protocol::refusal::kBadToken, "authentication failed: ");
  expect_one_failure_and_nothing_held();
}

TEST_F(GatewayTest, RefusesWhileShuttingDown) {
  context->draining = true;
  const Reply reply = exchange(auth_frame(request_for("acme-secret-token", {http("app")})));
  expect_refused(reply, protocol::refusal::kShuttingDown, "the core is shutting down");
  expect_nothing_held();
}

TEST_F(GatewayTest, RefusesTooManyTunnelsForOneAgent) {
  const Reply reply = exchange(auth_frame(
      request_for("acme-secret-token", {http("app"), http("web"), http("api"), tcp(0)})));
  expect_refused(reply, protocol::refusal::kBadRequest,
                 "the agent asks for 4 tunnels; at most 3 per agent "
                 "(limits.max_tunnels_per_agent in the core's config)");
  expect_nothing_held();
}

TEST_F(GatewayTest, RefusesTunnelsBeyondTheAccountLimit) {
  make(std::string(kConfig) + "  max_tunnels_per_account: 1\n");
  const Reply reply =
      exchange(auth_frame(request_for("acme-secret-token", {http("app"), http("web")})));
  expect_refused(reply, protocol::refusal::kLimit,
                 "account acme already serves 0 tunnels; 2 more would pass 1 "
                 "(limits.max_tunnels_per_account in the core's config)");
  expect_nothing_held();
}

TEST_F(GatewayTest, RefusesAnAgentBeyondMaxAgents) {
  // The account's one agent is connected; a second is refused and takes nothing.
  Reply second;
  const Reply first = exchange(auth_frame(request_for("acme-secret-token", {http("app")})), [&] {
    auto other = request_for("acme-secret-token", {http("web")});
    other.agent_id = "phone";  // another agent: a second session of "laptop" would be let in
    second = exchange(auth_frame(other));
    EXPECT_EQ(context->registry.agents_of("acme"), 1u) << "the first agent keeps its slot";
    EXPECT_EQ(tunnel_slots("acme"), 1u);
    Route route;
    EXPECT_EQ(context->registry.lookup("web.example.test", route), LookupStatus::kUnknown);
  });
  EXPECT_TRUE(first.auth.success) << first.auth.error;
  expect_refused(second, protocol::refusal::kLimit,
                 "account acme already has 1 agents connected (max_agents");
  EXPECT_EQ(auth_failures(), 1u);
}

// One tunnel refused refuses the AUTH: the tunnels claimed before it are rolled back, held by
// nobody (a refused AUTH reserves nothing), and the ports opened for it are closed.
TEST_F(GatewayTest, ATunnelRefusedRollsBackTheOthers) {
  const struct {
    std::vector<protocol::TunnelRequest> tunnels;
    std::string_view code;
    std::string error;
  } cases[] = {
      {{http("app"), tcp(20001), http("forbidden")},
       protocol::refusal::kNotAllowed,
       "account acme may not use the subdomain forbidden"},
      {{http("app"), tcp(80)},
       protocol::refusal::kNotAllowed,
       "port 80 is outside the ranges allowed for account acme (20000-20099)"},
      {{tcp(20001), tcp(20042)}, protocol::refusal::kUnavailable, "port 20042 is in use"},
      {{http("app"), http("bad label!")},
       protocol::refusal::kBadRequest,
       "subdomain \"bad label!\" is not a valid DNS label"},
      {{http("app"),
        [] {
          auto t = http("web");
          t.type = "smtp";
          return t;
        }()},
       protocol::refusal::kBadRequest,
       "tunnel type \"smtp\" is not supported"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.error);
    make(std::string(kConfig));
    ports.clear();
    const Reply reply = exchange(auth_frame(request_for("acme-secret-token", c.tunnels)));
    expect_refused(reply, c.code, c.error);
    EXPECT_TRUE(reply.auth.tunnels.empty());
    Route route;
    EXPECT_EQ(context->registry.lookup("app.example.test", route), LookupStatus::kUnknown);
    expect_nothing_held();
  }
}

TEST_F(GatewayTest, ANameHeldByAnotherAccountIsRefusedAndLeftToIt) {
  // acme holds tcp-1 through its pattern "tcp-*"; other (subdomains "*") asks for it too.
  const Reply holder = exchange(auth_frame(request_for("acme-secret-token", {http("tcp-1")})), [&] {
    const Reply refused =
        exchange(auth_frame(request_for("other-secret-token", {http("web"), http("tcp-1")})));
    expect_refused(refused, protocol::refusal::kNameTaken, "tcp-1.example.test");
    Route route;
    EXPECT_EQ(context->registry.lookup("web.example.test", route), LookupStatus::kUnknown)
        << "a name claimed before the refused one is rolled back";
    EXPECT_EQ(context->registry.lookup("tcp-1.example.test", route), LookupStatus::kFound);
    EXPECT_EQ(route.agent->account, "acme") << "the holder keeps its name";
    EXPECT_EQ(context->registry.agents_of("other"), 0u);
    EXPECT_EQ(tunnel_slots("other"), 0u);
  });
  EXPECT_TRUE(holder.auth.success) << holder.auth.error;
}

TEST_F(GatewayTest, RefusesPortTunnelsToAVersion1Agent) {
  auto request = request_for("acme-secret-token", {http("app"), tcp(20001)});
  request.protocol_versions = {protocol::kVersion1};
  const Reply reply = exchange(auth_frame(request));
  expect_refused(reply, protocol::refusal::kBadRequest,
                 "tcp tunnels need protocol version 2 (the agent offered only 1)");
  expect_nothing_held();
}

TEST_F(GatewayTest, ThrottlesAnAddressAfterRepeatedFailures) {
  Reply reply;
  for (int i = 0; i < 20 && reply.auth.code != protocol::refusal::kThrottled; ++i) {
    reply = exchange(auth_frame(request_for("wrong-token", {http("app")})));
    ASSERT_TRUE(reply.got_frame) << reply.error;
  }
  expect_refused(reply, protocol::refusal::kThrottled,
                 "too many failed authentications from this address; retry in ");
  // Even the right token is refused from there now, before it is looked at.
  const Reply right = exchange(auth_frame(request_for("acme-secret-token", {http("app")})));
  expect_refused(right, protocol::refusal::kThrottled, "too many failed authentications");
  expect_nothing_held();
}

// A JWT's expiry is judged by the core's clock (CoreContext::time), as everything else by time
// is: accepted until exactly `exp` + the 30 s leeway, refused one second later.
TEST_F(GatewayTest, AJwtExpiresByTheCoresClock) {
  constexpr std::string_view kSecret = "0123456789abcdef0123456789abcdef-gateway";
  make(std::string(kConfig) + "auth:\n  jwt_secret: " + std::string(kSecret) + "\n");
  const std::int64_t exp = SimulatedTimeSource::kStartSinceEpoch.count() + 60;
  const std::string jwt =
      sign_hs256(R"({"account_id":"acme","exp":)" + std::to_string(exp) + "}", kSecret);
  time.advance(90s);
  const Reply in_time = exchange(auth_frame(request_for(jwt, {http("app")})));
  ASSERT_TRUE(in_time.got_frame) << in_time.error;
  EXPECT_TRUE(in_time.auth.success) << in_time.auth.error;
  time.advance(1s);
  const Reply late = exchange(auth_frame(request_for(jwt, {http("app")})));
  expect_refused(late, protocol::refusal::kBadToken, "authentication failed: JWT has expired");
}

}  // namespace
}  // namespace tunnel::core
