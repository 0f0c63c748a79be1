// Connection inspection (core/inspect.hpp): the query, the JSON from session snapshots, its cuts,
// and the tables of `tunnel-core inspect`.
#include "core/inspect.hpp"

#include <gtest/gtest.h>

#include "core/agents/agent_gateway.hpp"

namespace tunnel::core {
namespace {

using namespace std::chrono_literals;

const MonotonicTime kNow = MonotonicTime{} + 10000s;
constexpr std::int64_t kNowUnix = 1765112400;

std::shared_ptr<AgentSession> agent(const std::string& id, std::vector<std::string> names,
                                    std::int64_t connected_ago = 60) {
  auto a = std::make_shared<AgentSession>();
  a->account = "default";
  a->agent_id = id;
  a->peer = "10.0.0.1:5000";
  a->version = "1.2.0";
  a->connected_at = kNowUnix - connected_ago;
  a->hostnames = std::move(names);
  return a;
}

mux::StreamInfo stream(std::uint32_t id, std::uint16_t tunnel, std::chrono::seconds age,
                       std::uint64_t sent, std::uint64_t received) {
  mux::StreamInfo s;
  s.id = id;
  s.tunnel_index = tunnel;
  s.opened_at = kNow - age;
  s.bytes_sent = sent;
  s.bytes_received = received;
  s.receive_window = 262144;
  s.send_credit = 262144 - static_cast<std::int64_t>(sent);
  return s;
}

SessionSnapshot snapshot(std::shared_ptr<AgentSession> a, std::vector<mux::StreamInfo> streams) {
  SessionSnapshot snap;
  snap.agent = std::move(a);
  snap.info.version = 2;
  snap.info.open = true;
  snap.info.rtt = 1500us;
  snap.info.bytes_sent = 5000;
  snap.info.bytes_received = 7000;
  snap.info.queued_bytes = 42;
  snap.info.peer_window = 262144;
  snap.info.streams = std::move(streams);
  return snap;
}

TEST(CoreInspect, ParsesTheQueryAndNamesWhatIsWrong) {
  auto q = parse_inspect_query("agent=a1&limit=5&oldest=2");
  ASSERT_TRUE(q);
  EXPECT_EQ(q.value().agent, "a1");
  EXPECT_EQ(q.value().limit, 5u);
  EXPECT_EQ(q.value().oldest, 2u);
  auto defaults = parse_inspect_query("");
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults.value().agent, "");
  EXPECT_EQ(defaults.value().limit, 100u);
  EXPECT_EQ(parse_inspect_query("limit=0").error().message,
            "limit: expected a number from 1 to 1000");
  EXPECT_EQ(parse_inspect_query("limit=100000").error().message,
            "limit: expected a number from 1 to 1000");
  EXPECT_EQ(parse_inspect_query("oldest=x").error().message,
            "oldest: expected a number from 0 to 50");
  EXPECT_EQ(parse_inspect_query("agent=").error().message,
            "agent: expected an agent id (1-200 characters)");
  EXPECT_EQ(parse_inspect_query("tunnel=x").error().message,
            "unknown parameter \"tunnel\" (expected agent, limit and oldest)");
}

TEST(CoreInspect, AgentMatchesByIdOrAccountSlashId) {
  auto a = agent("a1", {});
  EXPECT_TRUE(agent_matches(*a, ""));
  EXPECT_TRUE(agent_matches(*a, "a1"));
  EXPECT_TRUE(agent_matches(*a, "default/a1"));
  EXPECT_FALSE(agent_matches(*a, "other/a1"));
  EXPECT_FALSE(agent_matches(*a, "a2"));
}

TEST(CoreInspect, OverviewListsSessionsAndConnectionsPerTunnel) {
  std::vector<SessionSnapshot> sessions;
  sessions.push_back(
      snapshot(agent("a1", {"app.localhost", "api.localhost"}),
               {stream(1, 0, 30s, 100, 2000), stream(3, 1, 5s, 10, 0), stream(5, 0, 2s, 0, 0)}));
  sessions.push_back(snapshot(agent("a2", {"app.localhost"}), {stream(1, 0, 90s, 7, 8)}));
  InspectQuery query;
  query.oldest = 2;
  const auto doc = connections_json(sessions, query, false, kNow, kNowUnix, 9);
  EXPECT_EQ(doc["sessions"], 2);
  EXPECT_EQ(doc["public_connections"], 9);
  EXPECT_EQ(doc["truncated"], false);
  ASSERT_EQ(doc["agents"].size(), 2u);
  const auto& s = doc["agents"][0]["sessions"][0];
  EXPECT_EQ(doc["agents"][0]["agent_id"], "a1");
  EXPECT_EQ(s["streams"], 3);
  EXPECT_EQ(s["bytes_sent"], 5000);
  EXPECT_EQ(s["bytes_received"], 7000);
  EXPECT_EQ(s["queued_bytes"], 42);
  EXPECT_EQ(s["rtt_ms"], 1.5);
  EXPECT_EQ(s["age_seconds"], 60);
  EXPECT_EQ(s["connected_at"], "2025-12-07T12:59:00Z");
  EXPECT_FALSE(s.contains("stream_list"));  // streams only for one agent
  ASSERT_EQ(doc["tunnels"].size(), 2u);
  const auto& api = doc["tunnels"][0];
  EXPECT_EQ(api["tunnel"], "api.localhost");
  EXPECT_EQ(api["connections"], 1);
  const auto& app = doc["tunnels"][1];
  EXPECT_EQ(app["tunnel"], "app.localhost");
  EXPECT_EQ(app["agents"], 2);
  EXPECT_EQ(app["connections"], 3);
  EXPECT_EQ(app["bytes_sent"], 107);
  EXPECT_EQ(app["bytes_received"], 2008);
  ASSERT_EQ(app["oldest"].size(), 2u);  // the oldest two of three, oldest first
  EXPECT_EQ(app["oldest"][0]["agent_id"], "a2");
  EXPECT_EQ(app["oldest"][0]["age_seconds"], 90);
  EXPECT_EQ(app["oldest"][1]["agent_id"], "a1");
  EXPECT_EQ(app["oldest"][1]["age_seconds"], 30);
}

TEST(CoreInspect, OneAgentListsItsStreamsUpToTheLimit) {
  std::vector<SessionSnapshot> sessions;
  sessions.push_back(
      snapshot(agent("a1", {"app.localhost"}),
               {stream(1, 0, 30s, 100, 2000), stream(3, 0, 5s, 10, 0), stream(5, 7, 2s, 0, 0)}));
  InspectQuery query;
  query.agent = "a1";
  query.limit = 2;
  const auto doc = connections_json(sessions, query, false, kNow, kNowUnix, 1);
  EXPECT_EQ(doc["agent"], "a1");
  EXPECT_EQ(doc["truncated"], true);
  const auto& s = doc["agents"][0]["sessions"][0];
  EXPECT_EQ(s["streams"], 3);
  EXPECT_EQ(s["streams_truncated"], true);
  ASSERT_EQ(s["stream_list"].size(), 2u);
  const auto& first = s["stream_list"][0];
  EXPECT_EQ(first["id"], 1);
  EXPECT_EQ(first["tunnel"], "app.localhost");
  EXPECT_EQ(first["age_seconds"], 30);
  EXPECT_EQ(first["bytes_sent"], 100);
  EXPECT_EQ(first["bytes_received"], 2000);
  EXPECT_EQ(first["send_credit"], 262044);
  // A tunnel index the agent did not register still shows (as its number).
  query.limit = 10;
  const auto all = connections_json(sessions, query, false, kNow, kNowUnix, 1);
  EXPECT_EQ(all["agents"][0]["sessions"][0]["stream_list"][2]["tunnel"], "#7");
}

TEST(CoreInspect, OverviewCutsAtTheLimitButCountsEveryConnection) {
  std::vector<SessionSnapshot> sessions;
  sessions.reserve(5);
  for (int i = 0; i < 5; ++i) {
    sessions.push_back(
        snapshot(agent("a" + std::to_string(i), {"app.localhost"}), {stream(1, 0, 1s, 1, 1)}));
  }
  InspectQuery query;
  query.limit = 2;
  const auto doc = connections_json(sessions, query, false, kNow, kNowUnix, 0);
  EXPECT_EQ(doc["truncated"], true);
  EXPECT_EQ(doc["agents"].size(), 2u);
  EXPECT_EQ(doc["sessions"], 5);
  EXPECT_EQ(doc["tunnels"][0]["connections"], 5);
}

TEST(CoreInspect, RendersTables) {
  std::vector<SessionSnapshot> sessions;
  sessions.push_back(
      snapshot(agent("a1", {"app.localhost"}, 125), {stream(1, 0, 3700s, 100, 2000)}));
  InspectQuery query;
  query.agent = "a1";
  const std::string out =
      render_connections(connections_json(sessions, query, false, kNow, kNowUnix, 4));
  EXPECT_NE(out.find("AGENT  ACCOUNT  PEER           VERSION  AGE    RTT    STREAMS  SENT  "
                     "RECEIVED  QUEUED  STATE\n"
                     "a1     default  10.0.0.1:5000  1.2.0    2m05s  1.5ms  1        5000  "
                     "7000      42      open\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("a1     1       app.localhost  1h01m  100   2000"), std::string::npos) << out;
  EXPECT_NE(out.find("app.localhost  1       1            100   2000      1h01m (a1 stream 1)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("4 public connections open.\n"), std::string::npos) << out;
  EXPECT_EQ(render_connections(connections_json({}, InspectQuery{}, false, kNow, kNowUnix, 0)),
            "No agent is connected.\n\n0 public connections open.\n");
}

}  // namespace
}  // namespace tunnel::core
