#include "ctl/cli.hpp"

#include <gtest/gtest.h>

namespace tunnel::ctl {
namespace {

using nlohmann::json;

Invocation list_invocation() {
  Invocation inv;
  inv.server = "http://127.0.0.1:9000/base/";
  inv.key = "tnk_k";
  inv.key_source = "--key";
  inv.request.path = "/tunnels";
  inv.request.query = {{"type", "http"}};
  inv.request.paginate = true;
  return inv;
}

TEST(CtlExecute, AListFollowsNextCursorToTheEnd) {
  std::vector<HttpRequest> seen;
  const Send send = [&](const HttpRequest& req) -> common::Result<HttpResponse> {
    seen.push_back(req);
    HttpResponse res;
    res.status = 200;
    res.body = seen.size() == 1 ? R"({"items": [{"id": 1}, {"id": 2}], "next_cursor": "2"})"
                                : R"({"items": [{"id": 3}], "next_cursor": null})";
    return res;
  };
  std::string out, err;
  EXPECT_EQ(execute(list_invocation(), send, out, err), kExitOk) << err;
  ASSERT_EQ(seen.size(), 2U);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].target, "/base/api/v1/tunnels?type=http&limit=1000");
  EXPECT_EQ(seen[1].target, "/base/api/v1/tunnels?type=http&limit=1000&cursor=2");
  EXPECT_EQ(seen[0].headers,
            (std::vector<std::pair<std::string, std::string>>{{"Authorization", "Bearer tnk_k"}}));
  EXPECT_EQ(json::parse(out), json::parse(R"({"items": [{"id": 1}, {"id": 2}, {"id": 3}],
                                             "next_cursor": null})"));
}

TEST(CtlExecute, LimitStopsEarlyAndAsksForNoMoreThanNeeded) {
  auto inv = list_invocation();
  inv.request.limit = 2;
  std::vector<std::string> targets;
  const Send send = [&](const HttpRequest& req) -> common::Result<HttpResponse> {
    targets.push_back(req.target);
    HttpResponse res;
    res.status = 200;
    res.body = R"({"items": [{"id": 1}, {"id": 2}], "next_cursor": "2"})";
    return res;
  };
  std::string out, err;
  EXPECT_EQ(execute(inv, send, out, err), kExitOk);
  EXPECT_EQ(targets, std::vector<std::string>{"/base/api/v1/tunnels?type=http&limit=2"});
  EXPECT_EQ(json::parse(out)["next_cursor"], "2");
}

TEST(CtlExecute, ProblemsAndUnreachableServersExitOne) {
  Invocation inv;
  inv.server = "http://127.0.0.1:9000";
  inv.key_source = "none: ...";
  inv.request.method = "POST";
  inv.request.path = "/tunnels";
  inv.request.body = json{{"port", 80}};
  inv.request.if_match = "\"e\"";
  HttpRequest sent;
  std::string out, err;
  EXPECT_EQ(execute(
                inv,
                [&](const HttpRequest& req) -> common::Result<HttpResponse> {
                  sent = req;
                  return HttpResponse{401,
                                      "application/problem+json",
                                      "",
                                      R"({"title": "Unauthorized", "detail": "no valid key"})",
                                      {}};
                },
                out, err),
            kExitFailed);
  EXPECT_EQ(sent.body, R"({"port":80})");
  EXPECT_EQ(sent.headers,
            (std::vector<std::pair<std::string, std::string>>{{"If-Match", "\"e\""}}));
  EXPECT_EQ(out, "");
  EXPECT_EQ(err, "tunnelctl: 401 Unauthorized: no valid key\ntunnelctl: the key used: none: ...\n");

  err.clear();
  EXPECT_EQ(execute(
                inv,
                [](const HttpRequest&) -> common::Result<HttpResponse> {
                  return common::fail("connecting: Connection refused");
                },
                out, err),
            kExitFailed);
  EXPECT_EQ(err, "tunnelctl: cannot reach http://127.0.0.1:9000: connecting: Connection refused\n");
}

TEST(CtlExecute, JsonIsTheApisAsIsAndAgentCreateAddsTheCommandOnStderr) {
  Invocation inv;
  inv.server = "http://127.0.0.1:9000";
  inv.request.method = "POST";
  inv.request.path = "/agents";
  inv.agent_create = true;
  inv.agent_server = "h:8443";
  inv.kind = Kind::agent;
  const std::string body = R"({"id": 3, "name": "laptop", "token": "tna_t"})";
  const Send send = [&](const HttpRequest&) -> common::Result<HttpResponse> {
    return HttpResponse{201, "application/json", "", body, {}};
  };
  std::string out, err;
  EXPECT_EQ(execute(inv, send, out, err), kExitOk);
  EXPECT_EQ(out, body + "\n");
  EXPECT_NE(err.find("TUNNEL_TOKEN=tna_t tunnel-agent start --server h:8443"), std::string::npos);

  inv.output = Output::table;
  out.clear();
  err.clear();
  EXPECT_EQ(execute(inv, send, out, err), kExitOk);
  EXPECT_NE(out.find("TUNNEL_TOKEN=tna_t tunnel-agent start --server h:8443"), std::string::npos);
  EXPECT_EQ(err, "");
}

TEST(CtlUrl, ParsesHostPortAndBasePath) {
  auto u = parse_url("http://127.0.0.1:9000").value();
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 9000);
  EXPECT_EQ(u.base_path, "");
  u = parse_url("https://core.example.org/").value();
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.port, 443);
  EXPECT_EQ(u.base_path, "");
  u = parse_url("http://[::1]:9100/admin/").value();
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.host_for_address(), "[::1]:9100");
  EXPECT_EQ(u.base_path, "/admin");
  for (const char* bad : {"127.0.0.1:9000", "http://", "http://h:0", "http://h:x", "http://[::1",
                          "http://u@h/", "http://h/?q"}) {
    EXPECT_FALSE(parse_url(bad)) << bad;
  }
}

}  // namespace
}  // namespace tunnel::ctl
