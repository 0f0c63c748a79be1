#include "agent/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "agent/cli.hpp"
#include "common/password_hash.hpp"

namespace tunnel::agent {
namespace {

namespace fs = std::filesystem;

std::string all(const std::vector<ConfigError>& errors) {
  return format_errors(errors, "t");
}

ConfigError find(const std::vector<ConfigError>& errors, std::string_view prefix) {
  for (const auto& error : errors) {
    if (error.message.starts_with(prefix)) return error;
  }
  ADD_FAILURE() << "no error starting " << prefix << " in:\n" << all(errors);
  return {};
}

TEST(AgentConfig, DefaultsAndEveryKey) {
  auto empty = load_config_string("");
  ASSERT_TRUE(empty.ok()) << all(empty.errors);
  EXPECT_EQ(empty.config.server, "localhost:8443");
  EXPECT_EQ(empty.config.data_dir, "./tunnel-data");
  EXPECT_FALSE(empty.config.insecure);
  EXPECT_EQ(empty.config.window_budget, 32u << 20);
  EXPECT_TRUE(empty.config.tunnels.empty());

  auto result = load_config_string(R"(
server: tunnel.example.com
token: abc
data_dir: /var/lib/tunnel
fingerprint: "AB:cd"
log_format: json
log_level: debug
window_budget: 0
tunnels:
  - name: web
    local: 3000
    subdomain: app
  - type: http
    local: http://127.0.0.1:8000/
    hostname: docs.example.org
  - type: tcp
    local: "[::1]:22"
    remote_port: 2222
)");
  ASSERT_EQ(result.errors.size(), 1u) << all(result.errors);  // the short fingerprint
  EXPECT_EQ(result.errors[0].line, 5);
  const Config& c = result.config;
  EXPECT_EQ(c.server, "tunnel.example.com");
  EXPECT_EQ(parse_server_address(c.server).value().port, 8443);
  EXPECT_EQ(c.token, "abc");
  EXPECT_EQ(c.log_format, "json");
  EXPECT_EQ(c.window_budget, 0u);
  ASSERT_EQ(c.tunnels.size(), 3u);
  EXPECT_EQ(c.tunnels[0].name, "web");
  EXPECT_EQ(c.tunnels[0].type, "http");
  EXPECT_EQ(c.tunnels[0].subdomain, "app");
  EXPECT_EQ(c.tunnels[1].hostname, "docs.example.org");
  EXPECT_EQ(c.tunnels[2].remote_port, 2222);
}

TEST(AgentConfig, WindowBudgetReachesTheConnector) {
  Config config;
  config.token = "t";
  config.plain = true;
  config.window_budget = 1234;
  TunnelConfig web;
  web.local = "3000";
  web.subdomain = "app";
  config.tunnels.push_back(web);
  std::string warning;
  const auto options = make_connector_options(config, warning);
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options.value().window_growth_budget, 1234u);
}

// Issue 21: the agent's name and group (what the core's routes name) reach the connector, and a
// bad one is named with its line.
TEST(AgentConfig, NameAndGroupReachTheConnectorAndAreChecked) {
  auto loaded = load_config_string(R"(
token: t
plain: true
name: api-v2
group: api
tunnels:
  - local: 3000
    subdomain: app
)");
  ASSERT_TRUE(loaded.ok()) << all(loaded.errors);
  std::string warning;
  const auto options = make_connector_options(loaded.config, warning);
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options.value().name, "api-v2");
  EXPECT_EQ(options.value().group, "api");
  EXPECT_FALSE(options.value().agent_id.empty());

  auto bad = load_config_string("token: t\nname: \"api v2\"\ngroup: -x\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(find(bad.errors, "name").line, 2);
  EXPECT_EQ(find(bad.errors, "group").line, 3);
}

// Issue 19: several cores (a list in the file, commas in the flag and TUNNEL_SERVER), sessions
// per core, rotation and the local pool's settings all reach the connector.
TEST(AgentConfig, CoresConnectionsRotationAndPoolReachTheConnector) {
  auto loaded = load_config_string(R"(
server: ["core-a.example:8443", core-b.example]
token: t
plain: true
connections: 4
session_max_age: 1h
local_pool: {max_idle_per_target: 8, max_idle: 64, idle_timeout: 15s, connect_timeout: 2s}
tunnels:
  - {local: 3000, subdomain: app}
)");
  ASSERT_TRUE(loaded.ok()) << all(loaded.errors);
  EXPECT_EQ(loaded.config.server, "core-a.example:8443,core-b.example");
  std::string warning;
  const auto options = make_connector_options(loaded.config, warning);
  ASSERT_TRUE(options) << options.error().message;
  const ConnectorOptions& o = options.value();
  ASSERT_EQ(o.servers.size(), 2u);
  EXPECT_EQ(o.servers[0].to_string(), "core-a.example:8443");
  EXPECT_EQ(o.servers[1].to_string(), "core-b.example:8443");
  EXPECT_EQ(o.connections, 4u);
  EXPECT_EQ(o.session_max_age, std::chrono::hours(1));
  EXPECT_EQ(o.pool.max_idle_per_target, 8u);
  EXPECT_EQ(o.pool.max_idle_total, 64u);
  EXPECT_EQ(o.pool.idle_timeout, std::chrono::seconds(15));
  EXPECT_EQ(o.pool.connect_timeout, std::chrono::seconds(2));

  auto list = parse_server_list(" a:1 , b ");
  ASSERT_TRUE(list) << list.error().message;
  EXPECT_EQ(list.value().size(), 2u);
  EXPECT_EQ(list.value()[1].to_string(), "b:8443");
  EXPECT_EQ(parse_server_list("a:1,,b").error().message,
            "core #2 of the list is empty (addresses are separated by commas)");
  EXPECT_EQ(parse_server_list("a:1,a:1").error().message, "a:1 is listed twice");

  auto bad = load_config_string(R"(
connections: 9
session_max_age: 2s
local_pool: {idle_timeout: 0s, max_idle: 1, max_idle_per_target: 2, extra: 1}
server: "a,"
)");
  EXPECT_EQ(find(bad.errors, "connections:").message,
            "connections: expected 1 to 8 sessions per core, got 9");
  EXPECT_EQ(find(bad.errors, "session_max_age:").message,
            "session_max_age: at least 10s (or 0: sessions are never rotated)");
  find(bad.errors, "local_pool.idle_timeout:");
  find(bad.errors, "local_pool.max_idle:");
  find(bad.errors, "server:");
  EXPECT_FALSE(load_config_string("connections: 0\n").ok());
}

// Issue 19: a tunnel's health check, from the file to the connector, and its checks.
TEST(AgentConfig, HealthChecksReachTheConnector) {
  auto loaded = load_config_string(R"(
token: t
plain: true
tunnels:
  - {local: 3000, subdomain: app, health_check: "http:/healthz", health_interval: 5s,
     health_timeout: 1s, health_rise: 1, health_fall: 4}
  - {type: tcp, local: 22, health_check: tcp}
  - {local: 3001, subdomain: plain}
)");
  ASSERT_TRUE(loaded.ok()) << all(loaded.errors);
  std::string warning;
  const auto options = make_connector_options(loaded.config, warning);
  ASSERT_TRUE(options) << options.error().message;
  const auto& tunnels = options.value().tunnels;
  ASSERT_EQ(tunnels.size(), 3u);
  EXPECT_EQ(tunnels[0].health.describe(), "http GET /healthz");
  EXPECT_EQ(tunnels[0].health.interval, std::chrono::seconds(5));
  EXPECT_EQ(tunnels[0].health.timeout, std::chrono::seconds(1));
  EXPECT_EQ(tunnels[0].health.rise, 1u);
  EXPECT_EQ(tunnels[0].health.fall, 4u);
  EXPECT_EQ(tunnels[1].health.describe(), "tcp");
  EXPECT_EQ(tunnels[1].health.interval, std::chrono::seconds(10)) << "the defaults";
  EXPECT_FALSE(tunnels[2].health.enabled());

  auto bad = load_config_string(R"(
tunnels:
  - {local: 3000, health_check: "https:/x", health_interval: 50ms, health_rise: 0}
  - {type: udp, local: 53, health_check: tcp, health_timeout: 20s}
)");
  EXPECT_EQ(find(bad.errors, "tunnels[0].health_check:").message,
            "tunnels[0].health_check: expected tcp, http or http:/PATH, got \"https:/x\"");
  find(bad.errors, "tunnels[0].health_interval:");
  find(bad.errors, "tunnels[0].health_rise:");
  EXPECT_EQ(find(bad.errors, "tunnels[1].health_check:").message,
            "tunnels[1].health_check: udp tunnels have no health check (tcp and http do)");
  find(bad.errors, "tunnels[1].health_timeout:");
}

TEST(AgentConfig, MetricsAddressIsOffByDefaultAndChecked) {
  EXPECT_EQ(Config{}.metrics_addr, "");
  auto result = load_config_string("metrics_addr: \"127.0.0.1:9100\"\n");
  ASSERT_TRUE(result.ok()) << all(result.errors);
  EXPECT_EQ(result.config.metrics_addr, "127.0.0.1:9100");
  auto bad = load_config_string("metrics_addr: \"127.0.0.1:99999\"\n");
  EXPECT_EQ(find(bad.errors, "metrics_addr:").line, 1);
  std::map<std::string, std::string> env{{"TUNNEL_METRICS_ADDR", ":9100"}};
  Config config;
  EXPECT_TRUE(apply_env(config, [&](const char* name) -> const char* {
                auto it = env.find(name);
                return it == env.end() ? nullptr : it->second.c_str();
              }).empty());
  EXPECT_EQ(config.metrics_addr, ":9100");
}

TEST(AgentConfig, InspectorKeys) {
  auto defaults = load_config_string("");
  ASSERT_TRUE(defaults.ok()) << all(defaults.errors);
  EXPECT_TRUE(defaults.config.inspect);
  EXPECT_EQ(defaults.config.inspect_addr, "127.0.0.1:4040");
  EXPECT_EQ(defaults.config.inspect_db_size, 50u << 20);
  EXPECT_EQ(defaults.config.inspect_body_cap, 10u << 20);
  EXPECT_EQ(defaults.config.inspect_redact.size(), 4u);
  auto set = load_config_string(R"(
inspect: false
inspect_addr: "127.0.0.1:5050"
inspect_db_size: 1000
inspect_body_cap: 10
inspect_redact: [X-Secret]
inspect_password: s3cret
)");
  ASSERT_TRUE(set.ok()) << all(set.errors);
  EXPECT_FALSE(set.config.inspect);
  EXPECT_EQ(set.config.inspect_addr, "127.0.0.1:5050");
  EXPECT_EQ(set.config.inspect_db_size, 1000u);
  EXPECT_EQ(set.config.inspect_body_cap, 10u);
  EXPECT_EQ(set.config.inspect_redact, std::vector<std::string>{"X-Secret"});
  EXPECT_EQ(set.config.inspect_password, "s3cret");
  EXPECT_EQ(defaults.config.inspect_password, "");
}

TEST(AgentConfig, ReportsAllErrorsWithLines) {
  auto result = load_config_string(R"(server: "host:99999"
tunels: []
insecure: yes please
ca: /nonexistent/ca.pem
fingerprint: 5a778579dbe643463962140934 0692e9d7b02baab188f41eb07e5565b195e8d4
tunnels:
  - local: https://localhost:3000
    subdomain: bad_name
  - name: web
    type: ftp
  - type: tcp
    local: 22
    subdomain: ssh
  - local: "3000"
    subdomain: App
  - local: 3001
    subdomain: app
    remote_port: 80
window_budget: 5000000000
)");
  EXPECT_EQ(find(result.errors, "server:").line, 1);
  EXPECT_EQ(find(result.errors, "unknown key \"tunels\" (did you mean \"tunnels\"?)").line, 2);
  EXPECT_EQ(find(result.errors, "insecure: expected true or false").line, 3);
  EXPECT_EQ(find(result.errors, "ca: cannot read").line, 4);
  EXPECT_EQ(find(result.errors, "fingerprint: expected 64 hex digits").line, 5);
  EXPECT_EQ(find(result.errors, "fingerprint: set at most one of").line, 5);
  EXPECT_NE(find(result.errors, "tunnels[0].local:").message.find("not supported yet"),
            std::string::npos);
  EXPECT_EQ(find(result.errors, "tunnels[0].subdomain:").line, 8);
  EXPECT_EQ(find(result.errors, "tunnels[1].type:").line, 10);
  EXPECT_EQ(find(result.errors, "tunnels[2].subdomain: only http").line, 13);
  EXPECT_EQ(find(result.errors, "tunnels[4].subdomain: \"app\" is already used by tunnels[3]").line,
            17);
  EXPECT_EQ(find(result.errors, "tunnels[4].remote_port:").line, 18);
  EXPECT_EQ(
      find(result.errors, "window_budget: value 5000000000 is too large (at most 4294967296)").line,
      19);
  EXPECT_EQ(result.errors.size(), 13u) << all(result.errors);
}

// Issue 25 Low, tokens: a token of only whitespace was sent as it was.
TEST(AgentConfig, AWhitespaceTokenIsRefused) {
  auto result = load_config_string("token: \"   \"\ntunnels:\n  - local: 3000\n");
  EXPECT_TRUE(find(result.errors, "token: only whitespace")
                  .message.starts_with("token: only whitespace: give the account's token"));
  EXPECT_EQ(result.errors.size(), 1u) << all(result.errors);
}

TEST(AgentConfig, LocalTargets) {
  auto expect = [](std::string_view text, std::string host, std::uint16_t port) {
    auto result = parse_local_target(text);
    ASSERT_TRUE(result) << text << ": " << result.error().message;
    EXPECT_EQ(result.value().host, host) << text;
    EXPECT_EQ(result.value().port, port) << text;
  };
  expect("3000", "localhost", 3000);
  expect("127.0.0.1:8080", "127.0.0.1", 8080);
  expect("[::1]:8080", "::1", 8080);
  expect("http://app.internal:9000", "app.internal", 9000);
  expect("http://app.internal/", "app.internal", 80);
  EXPECT_FALSE(parse_local_target("app.internal"));  // no port
  EXPECT_FALSE(parse_local_target("http://a:1/path"));
  EXPECT_FALSE(parse_local_target("ftp://a:1"));
  EXPECT_FALSE(parse_local_target("70000"));
  EXPECT_FALSE(parse_local_target("0"));
  EXPECT_EQ(parse_local_target("https://a:1").error().message,
            "https:// local targets are not supported yet: \"https://a:1\"");
}

TEST(AgentConfig, EnvironmentOverrides) {
  std::map<std::string, std::string> env = {{"TUNNEL_SERVER", "core.example:9443"},
                                            {"TUNNEL_TOKEN", "tok"},
                                            {"TUNNEL_DATA_DIR", "/d"},
                                            {"TUNNEL_CA", "/d/ca.pem"},
                                            {"TUNNEL_FINGERPRINT", "ab"},
                                            {"TUNNEL_INSECURE", "1"},
                                            {"TUNNEL_LOG_FORMAT", "json"},
                                            {"TUNNEL_LOG_LEVEL", "trace"}};
  auto getenv = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  Config config;
  EXPECT_TRUE(apply_env(config, getenv).empty());
  EXPECT_EQ(config.server, "core.example:9443");
  EXPECT_EQ(config.token, "tok");
  EXPECT_EQ(config.data_dir, "/d");
  EXPECT_EQ(config.ca, "/d/ca.pem");
  EXPECT_EQ(config.fingerprint, "ab");
  EXPECT_TRUE(config.insecure);
  EXPECT_EQ(config.log_format, "json");
  EXPECT_EQ(config.log_level, "trace");
  EXPECT_FALSE(validate(config).empty());  // ca + fingerprint + insecure together

  env = {{"TUNNEL_INSECURE", "maybe"}};
  auto errors = apply_env(config, getenv);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "TUNNEL_INSECURE: expected true, false, 1 or 0, got \"maybe\"");
}

class AgentDataDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("agent_config_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(AgentDataDir, TokenAndTrustFallBackToTheLocalCore) {
  Config config;
  config.data_dir = dir_.string();
  const auto missing = resolve_token(config);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find((dir_ / "agent.token").string()), std::string::npos);
  EXPECT_EQ(resolve_trust(config).mode, TrustSettings::Mode::kSystemCAs);

  std::ofstream(dir_ / "agent.token") << "local-token\n";
  std::ofstream(dir_ / "tls.crt") << "pem";
  const auto local = resolve_token(config);
  ASSERT_TRUE(local) << local.error().message;
  EXPECT_EQ(local.value(), "local-token");
  auto trust = resolve_trust(config);
  EXPECT_EQ(trust.mode, TrustSettings::Mode::kCaFile);
  EXPECT_EQ(trust.ca_file, (dir_ / "tls.crt").string());

  config.token = "explicit";
  EXPECT_EQ(resolve_token(config).value(), "explicit");
  config.fingerprint =
      "5A:77:85:79:DB:E6:43:46:39:62:14:09:34:06:92:E9:D7:B0:2B:AA:B1:88:F4:1E:"
      "B0:7E:55:65:B1:95:E8:D4";
  trust = resolve_trust(config);
  EXPECT_EQ(trust.mode, TrustSettings::Mode::kFingerprint);
  EXPECT_EQ(trust.fingerprint,
            "5a778579dbe643463962140934"
            "0692e9d7b02baab188f41eb07e5565b195e8d4");
  config.fingerprint.clear();
  config.insecure = true;
  EXPECT_EQ(resolve_trust(config).mode, TrustSettings::Mode::kInsecure);
}

TEST(AgentConfig, ShippedExampleIsValid) {
  const auto path = fs::path(TUNNEL_SOURCE_DIR) / "docs/examples/agent.yaml";
  auto result = load_config_file(path.string());
  EXPECT_TRUE(result.ok()) << format_errors(result.errors, path.string());
  EXPECT_EQ(result.config.tunnels.size(), 3u);
  EXPECT_EQ(result.config.tunnels[2].type, "tcp");
}

}  // namespace
}  // namespace tunnel::agent

namespace tunnel::agent {
namespace {

TEST(AgentConfig, ProxyProtocolBandwidthAndPlain) {
  auto ok = load_config_string(R"(
plain: true
tunnels:
  - local: 3000
    proxy_protocol: v2
    bandwidth: 1MiB/s
  - type: tcp
    local: 22
    proxy_protocol: v1
  - type: udp
    local: 53
    bandwidth: 100Mbit/s
)");
  ASSERT_TRUE(ok.ok()) << all(ok.errors);
  EXPECT_TRUE(ok.config.plain);
  EXPECT_EQ(ok.config.tunnels[0].proxy_protocol, "v2");
  EXPECT_EQ(ok.config.tunnels[0].bandwidth, "1MiB/s");

  auto bad = load_config_string(R"(
plain: true
insecure: true
tunnels:
  - local: 3000
    proxy_protocol: v3
  - type: udp
    local: 53
    proxy_protocol: v1
  - local: 3001
    bandwidth: fast
)");
  EXPECT_EQ(find(bad.errors, "tunnels[0].proxy_protocol: expected \"v1\" or \"v2\"").line, 6);
  EXPECT_EQ(find(bad.errors, "tunnels[1].proxy_protocol: only http and tcp").line, 9);
  EXPECT_EQ(find(bad.errors, "tunnels[2].bandwidth: \"fast\": expected a number").line, 11);
  find(bad.errors, "plain: a plain-TCP connection has no certificate to check; drop insecure");
}

TEST(AgentConfig, AccessKeysAreCheckedAndPasswordsLeaveOnlyAsHashes) {
  auto ok = load_config_string(R"(
tunnels:
  - local: 3000
    basic_auth: ["ann:a-long-password"]
    cidr_allow: [10.0.0.0/8, "2001:db8::/32"]
    cidr_deny: [10.9.9.9]
  - type: tcp
    local: 22
    cidr_deny: [192.0.2.0/24]
)");
  ASSERT_TRUE(ok.ok()) << all(ok.errors);
  EXPECT_EQ(ok.config.tunnels[0].cidr_allow,
            (std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32"}));
  EXPECT_EQ(ok.config.tunnels[1].cidr_deny, std::vector<std::string>{"192.0.2.0/24"});
  const std::string sent = basic_auth_for_core(ok.config.tunnels[0].basic_auth[0]);
  ASSERT_TRUE(sent.starts_with("ann:$pbkdf2-sha256$4096$")) << sent;
  EXPECT_EQ(sent.find("a-long-password"), std::string::npos);
  auto hash = common::parse_password_hash(sent.substr(4));
  ASSERT_TRUE(hash) << hash.error().message;
  EXPECT_TRUE(common::verify_password(hash.value(), "a-long-password"));
  EXPECT_EQ(basic_auth_for_core(sent), sent);  // a hash is sent as it is

  auto bad = load_config_string(R"(
tunnels:
  - local: 3000
    basic_auth: ["ann:short", "nouser"]
    cidr_allow: [10.0.0.0/8, 10.0.0.0/99]
  - type: udp
    local: 53
    basic_auth: ["ann:a-long-password"]
)");
  EXPECT_EQ(
      find(bad.errors, "tunnels[0].basic_auth[0]: user ann: the password must be 8 to 128").line,
      4);
  find(bad.errors, "tunnels[0].basic_auth[1]: expected USER:PASSWORD (or USER:HASH)");
  EXPECT_EQ(
      find(bad.errors, "tunnels[0].cidr_allow[1]: \"10.0.0.0/99\": prefix length above 32").line,
      5);
  EXPECT_EQ(find(bad.errors, "tunnels[1].basic_auth: only http tunnels have basic auth").line, 8);
}

TEST(AgentConfig, PlainFromEnvironment) {
  Config config;
  std::map<std::string, std::string> env = {{"TUNNEL_PLAIN", "true"}};
  const auto getenv = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  EXPECT_TRUE(apply_env(config, getenv).empty());
  EXPECT_TRUE(config.plain);
  env = {{"TUNNEL_PLAIN", "yes"}};
  auto errors = apply_env(config, getenv);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "TUNNEL_PLAIN: expected true, false, 1 or 0, got \"yes\"");
}

}  // namespace
}  // namespace tunnel::agent
