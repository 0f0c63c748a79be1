// The agent's configuration: defaults, the YAML file, TUNNEL_* environment overrides.
//
// Loaded like the core's, through common/config_loader.hpp: every error reported with its
// line, unknown keys rejected with a suggestion; the CLI applies file, then env, then flags,
// then validate().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config_loader.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"

namespace tunnel::agent {

using common::ConfigError;
using common::format_errors;

struct TunnelConfig {
  std::string name;  // optional; for logs and the console
  std::string type = "http";
  std::string local;              // PORT | HOST:PORT | http://HOST:PORT (see parse_local_target)
  std::string subdomain;          // http: served as NAME.<domain of the core>
  std::string hostname;           // http: a custom domain the account owns
  std::uint16_t remote_port = 0;  // tcp/udp: port on the core; 0 lets the core choose
  // http/tcp: "v1" or "v2" sends a PROXY protocol header with the client's address to the
  // local app at the start of each connection; "" = none.
  std::string proxy_protocol;
  // A bandwidth limit for this tunnel, each direction, enforced by the core ("1MiB/s", see
  // common/byte_rate.hpp); "" or "0" = only the account's limits.
  std::string bandwidth;
  // Active health check of the local app (agent/health_check.hpp): "tcp", "http", "http:/path";
  // "" = none. An unhealthy tunnel is withdrawn from the cores until it recovers.
  std::string health_check;
  std::chrono::milliseconds health_interval{10'000};
  std::chrono::milliseconds health_timeout{2'000};
  std::uint32_t health_rise = 2;  // passed checks in a row that make it healthy again
  std::uint32_t health_fall = 3;  // failed checks in a row that make it unhealthy
  // Who may reach the tunnel, enforced by the core (docs/security.md): client addresses
  // allowed and denied (CIDR or one address, v4 or v6), and for http "user:password" (or
  // "user:$pbkdf2-sha256$..." hash) credentials: the agent sends only hashes.
  std::vector<std::string> cidr_allow;
  std::vector<std::string> cidr_deny;
  std::vector<std::string> basic_auth;
};

// A `basic_auth` entry: "user:password" (the password 8..128 characters) or "user:HASH";
// the error names the user, never the password.
common::Status check_basic_auth(std::string_view entry);

// What the core is sent for a `basic_auth` entry: "user:HASH" (a password is hashed here, with
// a new salt each time; a hash is kept).
std::string basic_auth_for_core(std::string_view entry);

// The most sessions the agent holds to one core (the core accepts kMaxSessionsPerAgent per agent,
// which leaves room for a GOAWAY handover or a rotation of every one).
inline constexpr std::uint32_t kMaxConnections = 8;

// The keep-alive connections to the local apps (agent/local_pool.hpp). A connection goes back
// to the pool only after a clean exchange: one that failed is never reused.
struct LocalPoolConfig {
  std::uint32_t max_idle_per_target = 256;  // 0 = no keep-alive: a new connection per request
  std::uint32_t max_idle = 1024;            // across targets; the oldest idle goes first
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds connect_timeout{10'000};
};

struct Config {
  // HOST:PORT, or HOST (port 8443); several cores separated by commas (in the file also a list):
  // the agent holds sessions to each and registers its tunnels on every one.
  std::string server = "localhost:8443";
  // Sessions per core (--connections); new streams are spread over all of them.
  std::uint32_t connections = 1;
  // The agent's name, which the core's routes send traffic to (docs/routing.md); "" = the
  // generated agent id. `group`: a group routes may name instead (several agents); "" = none.
  std::string name;
  std::string group;
  // Replace a session older than this (the new one first, then the old one drains); 0 = never.
  std::chrono::milliseconds session_max_age{0};
  LocalPoolConfig local_pool;
  std::string token;  // "" = TUNNEL_TOKEN, else <data_dir>/agent.token (see resolve_token)
  std::string data_dir = "./tunnel-data";
  std::string ca;           // PEM file to verify the core; "" = <data_dir>/tls.crt if present
  std::string fingerprint;  // or pin the core's certificate SHA-256
  bool insecure = false;    // skip verification (log a loud warning)
  bool plain = false;       // no TLS at all: the core's listen.agent_plain (loopback, benchmarks)
  std::string log_format = "text";
  std::string log_level = "info";
  // How far the receive windows of the streams from the core may grow in all beyond their
  // initial 256 KiB (auto-tuning for fast uploads); bounds what the agent buffers for apps that
  // read request bodies slowly. 0 = windows never grow.
  std::uint64_t window_budget = 32 * 1024 * 1024;
  // No tunnels: the agent serves what the core assigns to it (a registered agent, issue 17).
  std::vector<TunnelConfig> tunnels;
  // The local targets the core may assign (agent/allow_local.hpp); [] = loopback only.
  std::vector<std::string> allow_local;
  // HOST:PORT serving /metrics (Prometheus text); "" = off. A bare port (":9100" or "9100")
  // binds 127.0.0.1: another interface only when named.
  std::string metrics_addr;
  // The request inspector (docs/inspector.md): on by default, on loopback port 4040 (or the next
  // free one); inspect_db_size bounds what it keeps in all, inspect_body_cap each body.
  bool inspect = true;
  std::string inspect_addr = "127.0.0.1:4040";
  std::uint64_t inspect_db_size = 50 * 1024 * 1024;
  std::uint64_t inspect_body_cap = 10 * 1024 * 1024;
  // Needed to read the inspector (HTTP Basic with any user name, or Bearer); required when
  // inspect_addr is not a loopback address. "" = none (loopback only).
  std::string inspect_password;
  // Header fields the inspector shows as "[redacted]"; [] shows every value.
  std::vector<std::string> inspect_redact = {"Authorization", "Cookie", "Set-Cookie",
                                             "Proxy-Authorization"};
  // OpenTelemetry spans over OTLP/HTTP JSON ("http://collector:4318"); "" = tracing off.
  std::string otlp_endpoint;
  // The share of new traces kept: "0.01", "1%"; a request with a valid traceparent (from the
  // core) follows its sampled flag; errors are kept always.
  std::string trace_sample_ratio = "1";
};

using LoadResult = common::LoadResult<Config>;

// How the agent's configuration is read, checked and taken from the environment (the table
// of TUNNEL_* variables and the keys they set is in config.cpp); see common/config_loader.hpp.
const common::ConfigSchema<Config>& config_schema();

LoadResult load_config_file(const std::string& path);
LoadResult load_config_string(const std::string& text, std::string_view source_name = "config");

// TUNNEL_SERVER, TUNNEL_TOKEN, TUNNEL_DATA_DIR, TUNNEL_CA, TUNNEL_FINGERPRINT, TUNNEL_METRICS_ADDR,
// TUNNEL_INSECURE and TUNNEL_PLAIN (true/false/1/0), TUNNEL_LOG_FORMAT, TUNNEL_LOG_LEVEL. Unset or
// empty variables are ignored; errors (line 0) name the variable.
std::vector<ConfigError> apply_env(Config& config, const common::Getenv& getenv);

// The checks load_config_*() runs after reading; call again after env and flags.
std::vector<ConfigError> validate(const Config& config);

// Where a tunnel forwards to: "3000" -> localhost:3000, "host:port", "http://host[:port][/]".
// https:// targets are refused for now.
common::Result<common::NetAddress> parse_local_target(std::string_view text);

// The core's address from `server` (default port 8443).
common::Result<common::NetAddress> parse_server_address(std::string_view text);
// Every core of `server`: addresses separated by commas (spaces allowed around them); an empty
// entry or the same core twice is an error.
common::Result<std::vector<common::NetAddress>> parse_server_list(std::string_view text);

// The token to present: config.token, else the contents of <data_dir>/agent.token. An error
// naming what was tried if neither exists, or naming the file if it is empty.
common::Result<std::string> resolve_token(const Config& config);

// How the agent verifies the core, after defaults are applied.
struct TrustSettings {
  enum class Mode { kSystemCAs, kCaFile, kFingerprint, kInsecure };
  Mode mode = Mode::kSystemCAs;
  std::string ca_file;      // kCaFile
  std::string fingerprint;  // kFingerprint: 64 lower-case hex digits
};
// ca, fingerprint or insecure if set; else <data_dir>/tls.crt if it exists; else system CAs.
TrustSettings resolve_trust(const Config& config);

}  // namespace tunnel::agent
