#include "core/control/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace tunnel::core {
namespace {

using std::chrono::milliseconds;

std::string all(const std::vector<ConfigError>& errors) {
  return format_errors(errors, "t");
}

// The error whose message starts with `path`, or a failure listing all of them.
ConfigError find(const LoadResult& result, std::string_view path) {
  for (const auto& error : result.errors) {
    if (error.message.starts_with(path)) return error;
  }
  ADD_FAILURE() << "no error for " << path << " in:\n" << all(result.errors);
  return {};
}

TEST(CoreConfig, EmptyFileGivesDefaults) {
  auto result = load_config_string("");
  ASSERT_TRUE(result.ok()) << all(result.errors);
  const Config& c = result.config;
  EXPECT_EQ(c.domain, "localhost");
  EXPECT_EQ(c.data_dir, "./tunnel-data");
  EXPECT_EQ(c.listen.agent, ":8443");
  EXPECT_EQ(c.listen.http, ":8080");
  EXPECT_EQ(c.listen.https, "");
  EXPECT_EQ(c.listen.admin, "127.0.0.1:9000");
  EXPECT_EQ(c.limits.max_header_bytes, 65536u);
  EXPECT_EQ(c.limits.header_timeout, milliseconds(10'000));
  EXPECT_EQ(c.limits.idle_timeout, milliseconds(75'000));
  EXPECT_EQ(c.heartbeat.timeout, milliseconds(30'000));
  EXPECT_EQ(c.log.format, "text");
  EXPECT_TRUE(c.accounts.empty());
  EXPECT_TRUE(validate(c).empty());
}

TEST(CoreConfig, ReadsEveryKey) {
  auto result = load_config_string(R"(
domain: tunnel.example.com
data_dir: /var/lib/tunnel
workers: 4
listen: {agent: "0.0.0.0:4443", http: ":80", https: ":443", admin: "[::1]:9100"}
auth:
  jwt_secret: "0123456789abcdef0123456789abcdef"
accounts:
  - name: default
    tokens: [token-one-0123456789, token-two-0123456789]
    subdomains: [app, "pr-*"]
    domains: [example.org, "*.example.org"]
    max_agents: 0
  - name: jwt-only
limits:
  max_header_bytes: 8192
  max_body_bytes: 1048576
  header_timeout: 5s
  response_timeout: 2m
  idle_timeout: 1h30m
  max_streams_per_agent: 50
  requests_per_second: 20
  shutdown_grace: 0
heartbeat: {interval: 250ms, timeout: 1s}
log: {format: json, level: debug}
)");
  ASSERT_TRUE(result.ok()) << all(result.errors);
  const Config& c = result.config;
  EXPECT_EQ(c.domain, "tunnel.example.com");
  EXPECT_EQ(c.workers, 4u);
  EXPECT_EQ(c.listen.admin, "[::1]:9100");
  ASSERT_EQ(c.accounts.size(), 2u);
  EXPECT_EQ(c.accounts[0].tokens,
            (std::vector<std::string>{"token-one-0123456789", "token-two-0123456789"}));
  EXPECT_EQ(c.accounts[0].subdomains, (std::vector<std::string>{"app", "pr-*"}));
  EXPECT_EQ(c.accounts[0].max_agents, 0u);
  EXPECT_EQ(c.accounts[1].subdomains, (std::vector<std::string>{"*"}));
  EXPECT_EQ(c.accounts[1].max_agents, 10u);
  EXPECT_EQ(c.limits.response_timeout, milliseconds(120'000));
  EXPECT_EQ(c.limits.idle_timeout, milliseconds(5'400'000));
  EXPECT_EQ(c.limits.shutdown_grace, milliseconds(0));
  EXPECT_EQ(c.limits.requests_per_second, 20u);
  EXPECT_EQ(c.heartbeat.interval, milliseconds(250));
  EXPECT_EQ(c.log.level, "debug");
}

TEST(CoreConfig, ReportsAllErrorsWithLinesAndPaths) {
  auto result = load_config_string(R"(domain: bad_domain
listn: {}
listen:
  http: ":99999"
accounts:
  - name: a
    tokens: [token-same-0123456789]
  - name: b
    tokens: [token-same-0123456789]
    max_agents: ten
  - name: c
limits:
  header_timeout: 10
heartbeat:
  timeout: 1s
log:
  format: xml
)");
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(find(result, "domain:").line, 1);
  auto unknown = find(result, "unknown key");
  EXPECT_EQ(unknown.line, 2);
  EXPECT_EQ(unknown.column, 1);
  EXPECT_EQ(unknown.message, "unknown key \"listn\" (did you mean \"listen\"?)");
  EXPECT_EQ(find(result, "listen.http:").line, 4);
  auto dup = find(result, "accounts[1].tokens[0]:");
  EXPECT_EQ(dup.line, 9);
  EXPECT_EQ(dup.message, "accounts[1].tokens[0]: token already used by account \"a\"");
  auto ten = find(result, "accounts[1].max_agents:");
  EXPECT_EQ(ten.line, 10);
  EXPECT_EQ(ten.message, "accounts[1].max_agents: expected a non-negative integer, got \"ten\"");
  EXPECT_EQ(find(result, "accounts[2].tokens:").line, 11);
  EXPECT_NE(find(result, "limits.header_timeout:").message.find("missing a unit"),
            std::string::npos);
  EXPECT_EQ(find(result, "heartbeat.timeout:").line, 15);
  EXPECT_EQ(find(result, "log.format:").line, 17);
  EXPECT_EQ(result.errors.size(), 9u) << all(result.errors);
  for (std::size_t i = 1; i < result.errors.size(); ++i) {
    EXPECT_LE(result.errors[i - 1].line, result.errors[i].line);
  }
}

TEST(CoreConfig, SyntaxErrorsHaveALineAndNeverThrow) {
  auto result = load_config_string("domain: a\naccounts:\n  - name: [unclosed\n");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_GE(result.errors[0].line, 3);
  EXPECT_NE(result.errors[0].message.find("YAML syntax error"), std::string::npos);
  EXPECT_FALSE(load_config_string("- a\n- b\n").ok());
  EXPECT_FALSE(load_config_string("listen: [1, 2]\n").ok());
  EXPECT_FALSE(load_config_string("\t\x01: \xff\n").ok());
}

TEST(CoreConfig, ValidatesNamesPatternsAndFiles) {
  auto result = load_config_string(R"(
listen: {agent: ":8080", admin: ""}
tls:
  cert: /nonexistent/agent.crt
  certificates:
    - hostnames: ["*.ok.example", "bad host"]
      cert: /nonexistent/pub.crt
auth: {jwt_secret: short, jwt_secret_file: /nonexistent/secret}
accounts:
  - name: a
    tokens: ["xxxxxxx.yyyyyyy.zzzzzzz", ""]
    subdomains: ["ok", "pr-*", "*x", "bad.label"]
    domains: ["example.org", "*.*.bad"]
  - name: a
    tokens: [token-t-0123456789]
    domains: ["EXAMPLE.org"]
)");
  for (const char* path :
       {"listen.http: port 8080 is also used by listen.agent", "tls.key:", "tls.cert: cannot read",
        "tls.certificates[0].hostnames[1]:", "tls.certificates[0].key:",
        "tls.certificates[0].cert: cannot read", "auth: set jwt_secret or jwt_secret_file",
        "accounts[0].tokens[0]: a plain token must not look like a JWT",
        "accounts[0].tokens[1]: account \"a\": the token is empty; tokens must be at least 16 ",
        "accounts[0].subdomains[2]:", "accounts[0].subdomains[3]:", "accounts[0].domains[1]:",
        "accounts[1].name: duplicate",
        "accounts[1].domains[0]: \"example.org\" is also claimed by account \"a\""}) {
    find(result, path);
  }
  EXPECT_EQ(result.errors.size(), 14u) << all(result.errors);
  EXPECT_NE(all(result.errors).find("No such file or directory"), std::string::npos);
}

// Issue 25: one account owning "*.example" while another owns "bob.example" was accepted, and
// the wildcard owner could then take bob's name.
TEST(CoreConfig, RefusesNamesThatTwoAccountsCouldOwn) {
  auto result = load_config_string(R"(
domain: tunnel.example.com
accounts:
  - name: alice
    tokens: [token-a-0123456789]
    subdomains: ["*", "app-*", "shop", "api"]
    domains: ["*.alice.test", "www.shared.test", "bob.tunnel.example.com"]
  - name: bob
    tokens: [token-b-0123456789]
    subdomains: ["app-bob", "ap*", "shop", "apix"]
    domains: ["*.shared.test", "x.y.alice.test", "*.example.com"]
  - name: carol
    tokens: [token-c-0123456789]
    subdomains: ["*", "carol", "carol-*"]
    domains: ["carol.test"]
)");
  for (
      const char* error : {
          R"(accounts[1].subdomains[0]: "app-bob" of account "bob" overlaps "app-*" of account "alice" (accounts[0].subdomains[1]))",
          R"(accounts[1].subdomains[1]: "ap*" of account "bob" overlaps "app-*" of account "alice")",
          R"(accounts[1].subdomains[1]: "ap*" of account "bob" overlaps "api" of account "alice")",
          R"(accounts[1].subdomains[2]: "shop" of account "bob" overlaps "shop" of account "alice")",
          R"(accounts[1].domains[0]: "*.shared.test" of account "bob" overlaps "www.shared.test" of account "alice" (accounts[0].domains[1]))",
          R"(accounts[1].domains[1]: "x.y.alice.test" of account "bob" overlaps "*.alice.test")",
          R"(accounts[0].domains[2]: "bob.tunnel.example.com" covers names under the base domain tunnel.example.com)",
          R"(accounts[1].domains[2]: "*.example.com" covers names under the base domain)",
          R"(accounts[1].domains[2]: "*.example.com" of account "bob" overlaps "bob.tunnel.example.com" of account "alice")",
      }) {
    find(result, error);
  }
  // "apix" overlaps nothing exact of alice ("api" is not a prefix glob); "*" overlaps nothing
  // (explicit names win over it when claimed); carol's names are her own.
  EXPECT_EQ(result.errors.size(), 9u) << all(result.errors);
}

TEST(CoreConfig, JwtSecretRules) {
  auto short_secret = load_config_string("auth: {jwt_secret: short}\n");
  EXPECT_NE(find(short_secret, "auth.jwt_secret:").message.find("at least 32 bytes"),
            std::string::npos);
  // With JWT on, an account may have no tokens.
  EXPECT_TRUE(load_config_string("auth: {jwt_secret: 0123456789abcdef0123456789abcdef}\n"
                                 "accounts: [{name: ci}]\n")
                  .ok());
  const auto file =
      std::filesystem::temp_directory_path() / ("jwt_secret_" + std::to_string(::getpid()));
  std::ofstream(file) << "0123456789abcdef0123456789abcdef\n";
  AuthConfig auth;
  auth.jwt_secret_file = file.string();
  const auto secret = read_jwt_secret(auth);
  ASSERT_TRUE(secret) << secret.error().message;
  EXPECT_EQ(secret.value(), "0123456789abcdef0123456789abcdef");
  std::filesystem::remove(file);
}

TEST(CoreConfig, JwtIssuerAndAudience) {
  auto ok = load_config_string(
      "auth: {jwt_secret: 0123456789abcdef0123456789abcdef, jwt_issuer: idp, "
      "jwt_audience: core}\naccounts: [{name: ci}]\n");
  ASSERT_TRUE(ok.ok()) << all(ok.errors);
  EXPECT_EQ(ok.config.auth.jwt_issuer, "idp");
  EXPECT_EQ(ok.config.auth.jwt_audience, "core");
  auto without_secret = load_config_string("auth: {jwt_audience: core}\n");
  EXPECT_NE(find(without_secret, "auth.jwt_audience:").message.find("needs auth.jwt_secret"),
            std::string::npos);
}

TEST(CoreConfig, MissingFileIsAnError) {
  auto result = load_config_file("/nonexistent/core.yaml");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(format_errors(result.errors, "core.yaml"),
            "core.yaml: cannot read \"/nonexistent/core.yaml\": No such file or directory\n");
}

TEST(CoreConfig, FormatErrorsPrintsFileLineColumn) {
  auto result = load_config_string("domain: x\nlimits:\n  idle_timeout: soon\n");
  EXPECT_EQ(format_errors(result.errors, "core.yaml"),
            "core.yaml:3:17: limits.idle_timeout: invalid duration \"soon\": expected a number at "
            "position 1 (write e.g. \"10s\", \"1h30m\")\n");
}

TEST(CoreConfig, EnvironmentOverrides) {
  std::map<std::string, std::string> env = {
      {"TUNNEL_DOMAIN", "t.example.com"},
      {"TUNNEL_DATA_DIR", "/data"},
      {"TUNNEL_AGENT_ADDR", ":7000"},
      {"TUNNEL_HTTP_ADDR", ":7080"},
      {"TUNNEL_HTTPS_ADDR", ":7443"},
      {"TUNNEL_ADMIN_ADDR", "127.0.0.1:7900"},
      {"TUNNEL_TOKEN", " token-a-0123456789, token-b-0123456789 ,,token-a-0123456789"},
      {"TUNNEL_LOG_FORMAT", "json"},
      {"TUNNEL_LOG_LEVEL", "warn"},
      {"TUNNEL_WORKERS", "3"}};
  auto getenv = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  Config config;
  EXPECT_TRUE(apply_env(config, getenv).empty());
  EXPECT_EQ(config.domain, "t.example.com");
  EXPECT_EQ(config.data_dir, "/data");
  EXPECT_EQ(config.listen.agent, ":7000");
  EXPECT_EQ(config.listen.http, ":7080");
  EXPECT_EQ(config.listen.https, ":7443");
  EXPECT_EQ(config.listen.admin, "127.0.0.1:7900");
  EXPECT_EQ(config.log.format, "json");
  EXPECT_EQ(config.log.level, "warn");
  EXPECT_EQ(config.workers, 3u);
  ASSERT_EQ(config.accounts.size(), 1u);
  EXPECT_EQ(config.accounts[0].name, "default");
  EXPECT_EQ(config.accounts[0].tokens,
            (std::vector<std::string>{"token-a-0123456789", "token-b-0123456789"}));
  EXPECT_EQ(config.accounts[0].subdomains, (std::vector<std::string>{"*"}));
  EXPECT_TRUE(validate(config).empty()) << all(validate(config));

  env = {{"TUNNEL_WORKERS", "many"}, {"TUNNEL_TOKEN", " , "}};
  auto errors = apply_env(config, getenv);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[1].message, "TUNNEL_WORKERS: expected an integer from 0 to 1024, got \"many\"");
  EXPECT_EQ(errors[1].line, 0);
  EXPECT_EQ(config.workers, 3u);
}

TEST(CoreConfig, EnvTokenJoinsAnExistingDefaultAccount) {
  auto result = load_config_string(
      "accounts: [{name: default, tokens: [token-a-0123456789], subdomains: [x]}]\n");
  ASSERT_TRUE(result.ok());
  apply_env(result.config, [](const char* name) -> const char* {
    return std::string_view(name) == "TUNNEL_TOKEN" ? "token-b-0123456789,token-a-0123456789"
                                                    : nullptr;
  });
  ASSERT_EQ(result.config.accounts.size(), 1u);
  EXPECT_EQ(result.config.accounts[0].tokens,
            (std::vector<std::string>{"token-a-0123456789", "token-b-0123456789"}));
  EXPECT_EQ(result.config.accounts[0].subdomains, (std::vector<std::string>{"x"}));
}

// listen.api (the API over TLS), its certificate, and the agent address the API advertises.
TEST(CoreConfig, ApiListenerAndAdvertisedAgentAddress) {
  auto good = load_config_string(R"(
listen:
  api: ":9443"
  agent_public: "tunnel.example.org:443"
)");
  ASSERT_TRUE(good.ok()) << all(good.errors);
  EXPECT_EQ(good.config.listen.api, ":9443");
  EXPECT_EQ(good.config.listen.agent_public, "tunnel.example.org:443");
  EXPECT_TRUE(good.config.tls.api_cert.empty());

  auto bad = load_config_string(R"(
listen:
  api: ":8443"
  agent_public: "no-port"
tls:
  api_cert: /nonexistent/api.crt
)");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(find(bad, "listen.api").message.find("also used by listen.agent"), std::string::npos);
  EXPECT_NE(find(bad, "listen.agent_public").message.find("is not host:port"), std::string::npos);
  EXPECT_NE(find(bad, "tls.api_key").message.find("required when tls.api_cert is set"),
            std::string::npos);
}

TEST(CoreConfig, BandwidthPlainListenerAndTunnelLimits) {
  auto result = load_config_string(R"(
listen:
  agent: ":8443"
  agent_plain: "127.0.0.1:8444"
bandwidth:
  per_tunnel: 10MiB/s
  per_account: 100Mbit/s
accounts:
  - name: free
    tokens: [token-one-0123456789]
    bandwidth:
      per_tunnel: 1MiB/s
  - name: paid
    tokens: [token-two-0123456789]
limits:
  tunnel_idle_timeout: 0
  udp_max_datagram: 1400
  udp_socket_buffer: 1048576
  window_budget_per_agent: 0
  window_budget_total: 268435456
)");
  ASSERT_TRUE(result.ok()) << all(result.errors);
  const Config& c = result.config;
  EXPECT_EQ(c.listen.agent_plain, "127.0.0.1:8444");
  EXPECT_EQ(c.limits.tunnel_idle_timeout, milliseconds(0));
  EXPECT_EQ(c.limits.udp_max_datagram, 1400u);
  EXPECT_EQ(c.limits.udp_socket_buffer, 1u << 20);
  EXPECT_EQ(Config{}.limits.udp_socket_buffer, 4u << 20);
  EXPECT_EQ(c.limits.window_budget_per_agent, 0u);
  EXPECT_EQ(Config{}.limits.window_budget_per_agent, 32u << 20);
  EXPECT_EQ(c.limits.window_budget_total, 256u << 20);
  EXPECT_EQ(Config{}.limits.window_budget_total, 1u << 30);
  const BandwidthRules free = bandwidth_rules(c, c.accounts[0]);
  EXPECT_EQ(free.per_tunnel, 1u << 20);      // its own
  EXPECT_EQ(free.per_account, 12'500'000u);  // the top-level one
  const BandwidthRules paid = bandwidth_rules(c, c.accounts[1]);
  EXPECT_EQ(paid.per_tunnel, 10u << 20);
  EXPECT_EQ(bandwidth_rules(Config{}, Account{}).per_tunnel, 0u);  // none configured

  auto bad = load_config_string(R"(
listen:
  agent: ":8443"
  agent_plain: ":8443"
bandwidth:
  per_tunnel: lots
accounts:
  - name: a
    tokens: [token-t-0123456789]
    bandwidth:
      per_account: 5MBps
limits:
  udp_max_datagram: 70000
  udp_socket_buffer: 100
)");
  EXPECT_EQ(find(bad, "listen.agent_plain: port 8443 is also used by listen.agent").line, 4);
  find(bad, "bandwidth.per_tunnel: \"lots\": expected a number");
  find(bad, "accounts[0].bandwidth.per_account: \"5MBps\": unknown unit");
  find(bad, "limits.udp_max_datagram: must be 1-65507");
  find(bad, "limits.udp_socket_buffer: at least 4096 bytes, or 0 for the kernel's default");
  auto huge = load_config_string("limits:\n  udp_socket_buffer: 4294967296\n");
  EXPECT_FALSE(huge.ok());
  EXPECT_EQ(huge.errors.at(0).line, 2) << all(huge.errors);
  auto budget = load_config_string("limits:\n  window_budget_per_agent: 5000000000\n");
  find(budget,
       "limits.window_budget_per_agent: value 5000000000 is too large (at most 4294967296)");
  EXPECT_EQ(budget.errors.at(0).line, 2) << all(budget.errors);
  auto total = load_config_string("limits:\n  window_budget_total: 2TiB\n");
  find(total, "limits.window_budget_total: expected a non-negative integer, got \"2TiB\"");
}

// Issue 25 Low, tokens: "--token ' '" and short tokens were accepted.
TEST(CoreConfig, TokensMustBeStrong) {
  auto result = load_config_string(R"(
accounts:
  - name: bob
    tokens: ["0123456789abcde", "                  ", "0123456789abcdef"]
)");
  EXPECT_EQ(find(result, "accounts[0].tokens[0]:").message,
            "accounts[0].tokens[0]: account \"bob\": the token is shorter than 16 characters (it "
            "has 15); tokens must be at least 16 characters and not only whitespace (generate "
            "one with: openssl rand -base64 24)");
  EXPECT_EQ(find(result, "accounts[0].tokens[1]:").line, 4);
  EXPECT_NE(find(result, "accounts[0].tokens[1]:").message.find("the token is only whitespace"),
            std::string::npos);
  EXPECT_EQ(result.errors.size(), 2u) << all(result.errors);
  EXPECT_EQ(all(result.errors).find("0123456789abcde\""), std::string::npos)
      << "the token itself is never echoed";

  // --token and TUNNEL_TOKEN land in account "default" and are checked the same way.
  Config config;
  add_default_account_tokens(config, {"short"});
  const auto errors = validate(config);
  ASSERT_EQ(errors.size(), 1u) << all(errors);
  EXPECT_TRUE(errors[0].message.starts_with(
      "accounts[0].tokens[0]: account \"default\": the token is shorter than 16 characters"))
      << errors[0].message;
  EXPECT_TRUE(check_token_strength("0123456789abcdef"));
  EXPECT_EQ(check_token_strength(" \t ").error().message, "only whitespace");
  EXPECT_EQ(check_token_strength("").error().message, "empty");
}

TEST(CoreConfig, NamesHeldPerAccountAreFiniteByDefault) {
  EXPECT_EQ(Account{}.max_names, 1024u);
  auto result = load_config_string(
      "accounts:\n  - name: a\n    tokens: [token-a-0123456789]\n    max_names: 5\n"
      "  - name: b\n    tokens: [token-b-0123456789]\n    max_names: 0\n");
  ASSERT_TRUE(result.ok()) << all(result.errors);
  EXPECT_EQ(result.config.accounts[0].max_names, 5u);
  EXPECT_EQ(result.config.accounts[1].max_names, 0u);  // unlimited, as max_agents
}

TEST(CoreConfig, HandshakeCapsAreReadAndAlwaysFinite) {
  EXPECT_EQ(Config{}.limits.max_agent_handshakes, 512u);
  EXPECT_EQ(Config{}.limits.max_agent_handshakes_per_address, 16u);
  auto result = load_config_string(
      "limits:\n  max_agent_handshakes: 2000\n  max_agent_handshakes_per_address: 64\n");
  ASSERT_TRUE(result.ok()) << all(result.errors);
  EXPECT_EQ(result.config.limits.max_agent_handshakes, 2000u);
  EXPECT_EQ(result.config.limits.max_agent_handshakes_per_address, 64u);
  auto zero = load_config_string(
      "limits:\n  max_agent_handshakes: 0\n  max_agent_handshakes_per_address: 0\n");
  find(zero, "limits.max_agent_handshakes: at least 1 (connections before AUTH are always capped");
  find(zero, "limits.max_agent_handshakes_per_address: at least 1");
  auto above = load_config_string(
      "limits:\n  max_agent_handshakes: 10\n  max_agent_handshakes_per_address: 11\n");
  find(above,
       "limits.max_agent_handshakes_per_address: must not be above limits.max_agent_handshakes "
       "(10)");
}

TEST(CoreConfig, MetricsCapOnTunnels) {
  EXPECT_EQ(Config{}.metrics.max_tunnels, 200u);
  auto result = load_config_string("metrics:\n  max_tunnels: 5\n");
  ASSERT_TRUE(result.ok()) << all(result.errors);
  EXPECT_EQ(result.config.metrics.max_tunnels, 5u);
  auto typo = load_config_string("metrics:\n  max_tunnel: 5\n");
  EXPECT_FALSE(typo.ok());
}

TEST(CoreConfig, TracingEndpointAndSampleRatio) {
  EXPECT_EQ(Config{}.tracing.otlp_endpoint, "");
  EXPECT_EQ(Config{}.tracing.sample_ratio, 1.0);
  auto result = load_config_string(
      "tracing:\n  otlp_endpoint: http://127.0.0.1:4318\n  sample_ratio: 0.01\n");
  ASSERT_TRUE(result.ok()) << all(result.errors);
  EXPECT_EQ(result.config.tracing.otlp_endpoint, "http://127.0.0.1:4318");
  EXPECT_EQ(result.config.tracing.sample_ratio, 0.01);
  auto percent = load_config_string("tracing:\n  sample_ratio: 5%\n");
  ASSERT_TRUE(percent.ok()) << all(percent.errors);
  EXPECT_EQ(percent.config.tracing.sample_ratio, 0.05);
  find(load_config_string("tracing:\n  sample_ratio: 2\n"),
       "tracing.sample_ratio: \"2\" is not a ratio from 0 to 1");
  find(load_config_string("tracing:\n  otlp_endpoint: collector:4318\n"),
       "tracing.otlp_endpoint: the OTLP endpoint \"collector:4318\" is not an http:// or https:// "
       "URL");
}

// Issue 25: one client address could take a tcp/udp tunnel's whole budget.
TEST(CoreConfig, PerAddressCapsOfRawTunnelsAreReadAndFiniteByDefault) {
  EXPECT_EQ(Config{}.limits.max_connections_per_tcp_tunnel_per_address, 64u);
  EXPECT_EQ(Config{}.limits.max_clients_per_udp_tunnel_per_address, 32u);
  auto result = load_config_string(
      "limits:\n  max_connections_per_tcp_tunnel_per_address: 200\n"
      "  max_clients_per_udp_tunnel_per_address: 0\n");
  ASSERT_TRUE(result.ok()) << all(result.errors);
  EXPECT_EQ(result.config.limits.max_connections_per_tcp_tunnel_per_address, 200u);
  EXPECT_EQ(result.config.limits.max_clients_per_udp_tunnel_per_address, 0u);  // explicit: off
}

TEST(CoreConfig, ShippedExampleIsValid) {
  const auto path = std::filesystem::path(TUNNEL_SOURCE_DIR) / "docs/examples/core.yaml";
  auto result = load_config_file(path.string());
  EXPECT_TRUE(result.ok()) << format_errors(result.errors, path.string());
  EXPECT_FALSE(result.config.accounts.empty());
}

}  // namespace
}  // namespace tunnel::core

namespace tunnel::core {
namespace {

TEST(CoreConfig, ReadsTheStoreUrl) {
  EXPECT_EQ(load_config_string("").config.store.url, "");
  auto pg = load_config_string("store: {url: \"postgres://tunnel@db:5432/tunnel\"}\n");
  ASSERT_TRUE(pg.ok()) << all(pg.errors);
  EXPECT_EQ(pg.config.store.url, "postgres://tunnel@db:5432/tunnel");
  EXPECT_TRUE(load_config_string("store: {url: \"sqlite:/var/lib/t/store.db\"}\n").ok());
  auto bad = load_config_string("store: {url: \"mysql://root:secret@db/x\"}\n");
  ASSERT_FALSE(bad.ok());
  const auto e = find(bad, "store.url");
  EXPECT_NE(e.message.find("expected sqlite:PATH or postgres://"), std::string::npos) << e.message;
  EXPECT_EQ(e.message.find("secret"), std::string::npos);  // never quotes a password
  EXPECT_FALSE(load_config_string("store: {uri: x}\n").ok());
}

}  // namespace
}  // namespace tunnel::core
