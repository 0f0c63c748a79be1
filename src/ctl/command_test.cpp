#include "ctl/command.hpp"

#include <gtest/gtest.h>

#include <map>

namespace tunnel::ctl {
namespace {

using nlohmann::json;

struct FakeEnv {
  std::map<std::string, std::string> vars, files;
  bool terminal = false;
  Environment get() const {
    Environment env;
    env.getenv = [this](const std::string& n) -> std::optional<std::string> {
      auto it = vars.find(n);
      return it == vars.end() ? std::nullopt : std::optional(it->second);
    };
    env.read_file = [this](const std::string& p) -> std::optional<std::string> {
      auto it = files.find(p);
      return it == files.end() ? std::nullopt : std::optional(it->second);
    };
    env.stdout_is_terminal = terminal;
    return env;
  }
};

ParseResult parse(const std::vector<std::string>& args, const FakeEnv& env = {}) {
  return parse_command_line(args, env.get());
}

Invocation ok(const std::vector<std::string>& args, const FakeEnv& env = {}) {
  auto r = parse(args, env);
  EXPECT_TRUE(r.invocation) << r.err;
  return r.invocation.value_or(Invocation{});
}

TEST(CtlCommand, TunnelsCreateMapsEveryFlagToTheBody) {
  const auto inv = ok({"tunnels", "create", "--name", "web", "--type", "http", "--agent", "3",
                       "--local", "127.0.0.1:3000", "--account", "2", "--bandwidth", "10MiB/s",
                       "--proxy-protocol", "true"});
  EXPECT_EQ(inv.request.method, "POST");
  EXPECT_EQ(inv.request.path, "/tunnels");
  EXPECT_EQ(*inv.request.body, json({{"name", "web"},
                                     {"type", "http"},
                                     {"agent", 3},
                                     {"local", "127.0.0.1:3000"},
                                     {"account", 2},
                                     {"bandwidth", "10MiB/s"},
                                     {"proxy_protocol", true}}));
  const auto tcp =
      ok({"tunnels", "create", "--type", "tcp", "--port", "15432", "--bandwidth", "1000"});
  EXPECT_EQ(*tcp.request.body, json({{"type", "tcp"}, {"port", 15432}, {"bandwidth", 1000}}));
}

TEST(CtlCommand, TunnelsListFollowsPagesWithTheApiFilters) {
  const auto inv =
      ok({"tunnels", "list", "--type", "tcp", "--agent", "4", "--account", "2", "--limit", "5"});
  EXPECT_EQ(inv.request.method, "GET");
  EXPECT_EQ(inv.request.path, "/tunnels");
  EXPECT_TRUE(inv.request.paginate);
  EXPECT_EQ(inv.request.limit, 5);
  const std::vector<std::pair<std::string, std::string>> query = {
      {"type", "tcp"}, {"agent", "4"}, {"account", "2"}};
  EXPECT_EQ(inv.request.query, query);
  EXPECT_FALSE(inv.request.body);
}

TEST(CtlCommand, TunnelsUpdateSendsOnlyTheGivenFieldsAndNoneClears) {
  const auto inv = ok({"tunnels", "update", "7", "--agent", "none", "--local", "none", "--port",
                       "20000", "--if-match", "\"abc\""});
  EXPECT_EQ(inv.request.method, "PATCH");
  EXPECT_EQ(inv.request.path, "/tunnels/7");
  EXPECT_EQ(*inv.request.body, json({{"agent", nullptr}, {"local", nullptr}, {"port", 20000}}));
  EXPECT_EQ(inv.request.if_match, "\"abc\"");
  EXPECT_EQ(*ok({"tunnels", "update", "7", "--agent", "9"}).request.body, json({{"agent", 9}}));

  auto bad = parse({"tunnels", "update", "7", "--agent", "x"});
  EXPECT_FALSE(bad.invocation);
  EXPECT_EQ(bad.exit_code, kExitUsage);
  EXPECT_NE(bad.err.find("--agent"), std::string::npos) << bad.err;
  auto nothing = parse({"tunnels", "update", "7"});
  EXPECT_EQ(nothing.exit_code, kExitUsage);
  EXPECT_NE(nothing.err.find("nothing to change"), std::string::npos) << nothing.err;
}

TEST(CtlCommand, GetAndDeleteTakeAnId) {
  EXPECT_EQ(ok({"tunnels", "get", "3"}).request.path, "/tunnels/3");
  const auto del = ok({"tunnels", "delete", "3"});
  EXPECT_EQ(del.request.method, "DELETE");
  EXPECT_EQ(del.request.path, "/tunnels/3");
  const auto agent = ok({"agents", "delete", "4"});
  EXPECT_EQ(agent.request.method, "DELETE");
  EXPECT_EQ(agent.request.path, "/agents/4");
  EXPECT_EQ(agent.kind, Kind::agent);
  EXPECT_EQ(parse({"tunnels", "get"}).exit_code, kExitUsage);
  EXPECT_EQ(parse({"tunnels", "get", "abc"}).exit_code, kExitUsage);
  EXPECT_EQ(parse({"tunnels", "get", "0"}).exit_code, kExitUsage);
}

TEST(CtlCommand, AgentsKeysUsageAccountsQuota) {
  const auto agent = ok({"agents", "create", "--name", "laptop", "--account", "2"});
  EXPECT_EQ(agent.request.method, "POST");
  EXPECT_EQ(agent.request.path, "/agents");
  EXPECT_EQ(*agent.request.body, json({{"name", "laptop"}, {"account", 2}}));
  EXPECT_TRUE(agent.agent_create);
  EXPECT_EQ(agent.agent_server, "");  // the core's answer says
  EXPECT_EQ(agent.agent_server_guess, "127.0.0.1:8443");
  EXPECT_EQ(ok({"--server", "https://core.example.org", "agents", "create", "--name", "a"})
                .agent_server_guess,
            "core.example.org:8443");
  EXPECT_EQ(
      ok({"agents", "create", "--name", "a", "--agent-server", "t.example.org:443"}).agent_server,
      "t.example.org:443");

  const auto key = ok({"keys", "create", "--name", "ci", "--role", "member", "--expires-at",
                       "2027-06-30T00:00:00Z", "--user", "5"});
  EXPECT_EQ(*key.request.body, json({{"name", "ci"},
                                     {"role", "member"},
                                     {"expires_at", "2027-06-30T00:00:00Z"},
                                     {"user", 5}}));
  const auto revoke = ok({"keys", "revoke", "9"});
  EXPECT_EQ(revoke.request.method, "DELETE");
  EXPECT_EQ(revoke.request.path, "/keys/9");
  EXPECT_EQ(ok({"keys", "list", "--user", "5"}).request.query,
            (std::vector<std::pair<std::string, std::string>>{{"user", "5"}}));

  const auto usage =
      ok({"usage", "2", "--from", "2026-12-01T00:00:00Z", "--by", "day", "--tunnel", "4"});
  EXPECT_EQ(usage.request.path, "/accounts/2/usage");
  EXPECT_FALSE(usage.request.paginate);
  EXPECT_EQ(usage.request.query,
            (std::vector<std::pair<std::string, std::string>>{
                {"from", "2026-12-01T00:00:00Z"}, {"by", "day"}, {"tunnel", "4"}}));

  EXPECT_EQ(ok({"accounts", "get", "2"}).request.path, "/accounts/2");
  EXPECT_EQ(*ok({"accounts", "create", "--name", "acme"}).request.body, json({{"name", "acme"}}));
  EXPECT_EQ(ok({"quota", "get", "2"}).request.path, "/accounts/2/quota");
  const auto quota = ok({"quota", "set", "2", "--max-tunnels", "20", "--bandwidth", "50MiB/s"});
  EXPECT_EQ(quota.request.method, "POST");
  EXPECT_EQ(*quota.request.body, json({{"max_tunnels", 20}, {"bandwidth", "50MiB/s"}}));
  EXPECT_EQ(parse({"quota", "set", "2"}).exit_code, kExitUsage);
}

TEST(CtlCommand, BadFlagsAreUsageErrors) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{},
                                             {"tunnels"},
                                             {"tunnels", "list", "--bogus"},
                                             {"frobnicate"},
                                             {"--output", "yaml", "tunnels", "list"},
                                             {"--key", "a", "--key-file", "b", "tunnels", "list"},
                                             {"--server", "ftp://x", "tunnels", "list"},
                                             {"--server", "http://x:99999", "tunnels", "list"}}) {
    const auto r = parse(args);
    EXPECT_FALSE(r.invocation);
    EXPECT_EQ(r.exit_code, kExitUsage) << testing::PrintToString(args);
    EXPECT_FALSE(r.err.empty()) << testing::PrintToString(args);
  }
  const auto help = parse({"--help"});
  EXPECT_EQ(help.exit_code, kExitOk);
  EXPECT_NE(help.out.find("visible"), std::string::npos) << help.out;  // --key shows in ps
}

TEST(CtlCommand, ServerKeyAndOutputDefaults) {
  FakeEnv env;
  env.files["./tunnel-data/admin.key"] = "tnk_default\n";
  auto inv = ok({"tunnels", "list"}, env);
  EXPECT_EQ(inv.server, "http://127.0.0.1:9000");
  EXPECT_EQ(inv.key, "tnk_default");
  EXPECT_NE(inv.key_source.find("./tunnel-data/admin.key"), std::string::npos);
  EXPECT_EQ(inv.output, Output::json);  // not a terminal: scripts get JSON
  EXPECT_EQ(inv.timeout_seconds, 10);

  env.terminal = true;
  env.files["/srv/core/admin.key"] = "tnk_dir";
  inv = ok({"--data-dir", "/srv/core/", "tunnels", "list"}, env);
  EXPECT_EQ(inv.key, "tnk_dir");
  EXPECT_EQ(inv.output, Output::table);
  EXPECT_EQ(ok({"-o", "json", "tunnels", "list"}, env).output, Output::json);

  env.vars["TUNNEL_API_KEY"] = "tnk_env";
  env.vars["TUNNEL_API_URL"] = "https://core.example.org:9443";
  inv = ok({"tunnels", "list"}, env);
  EXPECT_EQ(inv.key, "tnk_env");
  EXPECT_EQ(inv.key_source, "TUNNEL_API_KEY");
  EXPECT_EQ(inv.server, "https://core.example.org:9443");

  env.files["k"] = "tnk_file\n";
  inv = ok({"--key-file", "k", "--server", "http://h:1", "tunnels", "list"}, env);
  EXPECT_EQ(inv.key, "tnk_file");
  EXPECT_EQ(inv.key_source, "--key-file k");
  EXPECT_EQ(inv.server, "http://h:1");
  inv = ok({"--key", "tnk_flag", "tunnels", "list"}, env);
  EXPECT_EQ(inv.key, "tnk_flag");
  EXPECT_EQ(inv.key_source, "--key");

  const auto missing = parse({"--key-file", "nope", "tunnels", "list"}, env);
  EXPECT_EQ(missing.exit_code, kExitUsage);
  EXPECT_NE(missing.err.find("--key-file: cannot read nope"), std::string::npos) << missing.err;

  // No key anywhere: the request goes without one (the API answers 401) and says why.
  inv = ok({"--data-dir", "/empty", "tunnels", "list"});
  EXPECT_EQ(inv.key, "");
  EXPECT_NE(inv.key_source.find("/empty/admin.key"), std::string::npos) << inv.key_source;
}

}  // namespace
}  // namespace tunnel::ctl
