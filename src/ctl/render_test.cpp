#include "ctl/render.hpp"

#include <gtest/gtest.h>

namespace tunnel::ctl {
namespace {

using nlohmann::json;

TEST(CtlRender, AListIsAnAlignedTableOfTheFieldsThatMatter) {
  const json doc = {{"items",
                     {{{"id", 1},
                       {"account", 1},
                       {"type", "http"},
                       {"name", "app"},
                       {"domain", nullptr},
                       {"port", nullptr},
                       {"url", "https://app.localhost"},
                       {"bandwidth", 0},
                       {"proxy_protocol", false},
                       {"agent", nullptr},
                       {"local", nullptr},
                       {"created_at", 1},
                       {"updated_at", 1}},
                      {{"id", 12},
                       {"account", 2},
                       {"type", "tcp"},
                       {"name", nullptr},
                       {"domain", nullptr},
                       {"port", 15432},
                       {"url", "tcp://localhost:15432"},
                       {"agent", 3},
                       {"local", "127.0.0.1:5432"}}}},
                    {"next_cursor", nullptr}};
  EXPECT_EQ(render_table(Kind::tunnel, doc),
            "ID  TYPE  NAME  DOMAIN  PORT   URL                    AGENT  LOCAL           ACCOUNT\n"
            "1   http  app   -       -      https://app.localhost  -      -               1\n"
            "12  tcp   -     -       15432  tcp://localhost:15432  3      127.0.0.1:5432  2\n");
  EXPECT_EQ(render_table(Kind::agent, json{{"items", json::array()}}),
            "ID  NAME  ACCOUNT  CREATED\n");
}

TEST(CtlRender, OneObjectIsFieldValueLinesWithTimesAndSessions) {
  const json agent = {{"id", 3},
                      {"name", "laptop"},
                      {"created_at", 1765112400},
                      {"connected", true},
                      {"sessions", {{{"session_id", 9}, {"address", "10.0.0.1:5000"}}}}};
  EXPECT_EQ(render_table(Kind::agent, agent),
            "id          3\n"
            "connected   yes\n"
            "created_at  2025-12-07T13:00:00Z\n"
            "name        laptop\n"
            "sessions    1\n"
            "\n"
            "sessions:\n"
            "address        session_id\n"
            "10.0.0.1:5000  9\n");
}

TEST(CtlRender, UsageBucketsAndTotal) {
  const json usage = {
      {"account", 2},
      {"buckets",
       {{{"start", 1765112400},
         {"tunnel", nullptr},
         {"requests", 5},
         {"bytes_in", 10},
         {"bytes_out", 20},
         {"errors", 0}}}},
      {"total", {{"requests", 5}, {"bytes_in", 10}, {"bytes_out", 20}, {"errors", 0}}}};
  EXPECT_EQ(render_table(Kind::usage, usage),
            "START                 TUNNEL  REQUESTS  BYTES_IN  BYTES_OUT  ERRORS\n"
            "2025-12-07T13:00:00Z  -       5         10        20         0\n"
            "total: bytes_in 10, bytes_out 20, errors 0, requests 5\n");
}

TEST(CtlRender, AProblemIsOneLinePerFieldAtFault) {
  const std::string body =
      R"({"type": "urn:tunnel:problem:invalid-fields", "title": "Unprocessable Content",
          "status": 422, "detail": "port: ...; name: ...",
          "errors": [{"field": "port", "problem": "port 80 is outside the allowed ranges"},
                     {"field": "name", "problem": "not a DNS label"}]})";
  EXPECT_EQ(render_problem(422, body, "--key"),
            "tunnelctl: 422 Unprocessable Content: port: port 80 is outside the allowed ranges\n"
            "tunnelctl: 422 Unprocessable Content: name: not a DNS label\n");
  EXPECT_EQ(render_problem(404, R"({"title": "Not Found", "status": 404, "detail": "no tunnel 7"})",
                           "--key"),
            "tunnelctl: 404 Not Found: no tunnel 7\n");
}

TEST(CtlRender, A401NamesTheKeySourceAndOtherBodiesAreQuoted) {
  EXPECT_EQ(
      render_problem(401, R"({"title": "Unauthorized", "status": 401, "detail": "no valid key"})",
                     "--key-file /etc/k"),
      "tunnelctl: 401 Unauthorized: no valid key\n"
      "tunnelctl: the key used: --key-file /etc/k\n");
  EXPECT_EQ(render_problem(502, "<html>\nbad gateway</html>", "--key"),
            "tunnelctl: 502: <html> bad gateway</html>\n");
  EXPECT_EQ(render_problem(500, "", "--key"), "tunnelctl: 500 (no body)\n");
  EXPECT_EQ(render_problem(400, std::string(1000, 'x'), "--key").size(),
            std::string("tunnelctl: 400: \n").size() + 200);
}

TEST(CtlRender, AgentCreatedShowsTheTokenAndTheCommand) {
  // A core that does not say where agents dial: the guess.
  auto text = render_agent_created(json{{"id", 3}, {"name", "laptop"}, {"token", "tna_x"}}, "",
                                   "core.example.org:8443");
  EXPECT_NE(text.find("TUNNEL_TOKEN=tna_x tunnel-agent start --server core.example.org:8443\n"),
            std::string::npos)
      << text;
  // The core's answer: its advertised agent address and certificate fingerprint.
  const json answer{{"id", 3},
                    {"name", "laptop"},
                    {"token", "tna_x"},
                    {"server", "tunnel.example.org:443"},
                    {"fingerprint", "ab:cd"}};
  text = render_agent_created(answer, "", "core.example.org:8443");
  EXPECT_NE(text.find("TUNNEL_TOKEN=tna_x tunnel-agent start --server tunnel.example.org:443 "
                      "--fingerprint ab:cd\n"),
            std::string::npos)
      << text;
  // --agent-server wins.
  text = render_agent_created(answer, "other:8443", "core.example.org:8443");
  EXPECT_NE(text.find("--server other:8443 --fingerprint ab:cd\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace tunnel::ctl
