// The core's configuration: defaults, the YAML file, TUNNEL_* environment overrides.
//
// The CLI applies, in order (common::load_layered with config_schema()): defaults, the file,
// the environment, flags; then validate(). Every error is
// reported, each with the line of the YAML node at fault. docs/configuration.md lists every key.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config_loader.hpp"
#include "common/result.hpp"

namespace tunnel::core {

using common::ConfigError;
using common::format_errors;

struct ListenConfig {
  std::string agent = ":8443";  // TLS listener for agents (required)
  // Plain-TCP listener for agents (no TLS): for loopback, a private network or a TLS-terminating
  // load balancer in front. "" = off. Tokens cross it in clear text.
  std::string agent_plain;
  std::string http = ":8080";            // "" = off
  std::string https;                     // "" = off
  std::string admin = "127.0.0.1:9000";  // "" = off
  // The REST API (/api/v1 only) over TLS, for remote use (tls.api_cert, else the agent
  // listener's certificate). "" = off.
  std::string api;
  // The address agents should dial, as they write it ("tunnel.example.com:443"): what the API
  // answers when an agent is registered. "" = <domain>:<the agent listener's port>.
  std::string agent_public;
  // Where tcp and udp tunnels bind their public ports (an IP address; "0.0.0.0" or "::" = all).
  std::string tunnels_host = "0.0.0.0";
};

// Ports "first-last" (inclusive) that tcp/udp tunnels may ask for.
struct PortRange {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  bool contains(std::uint16_t port) const { return port >= first && port <= last; }
  bool operator==(const PortRange&) const = default;
};

// "15000-15099" or "15000" (one port); ports 1-65535, first <= last.
common::Result<PortRange> parse_port_range(std::string_view text);

// The `ports:` block, at the top level (every account) or in an account (overrides the keys it
// sets). Ranges are kept as written and parsed by validate().
struct PortsConfig {
  std::optional<std::vector<std::string>> ranges;  // absent = 1024-65535
  std::optional<std::uint32_t> max_per_account;    // absent = 10; 0 = unlimited
};

// The effective port policy of one account.
struct PortRules {
  std::vector<PortRange> ranges;  // never empty
  std::uint32_t max_ports = 10;   // ports held at once (tcp and udp counted apart); 0 = unlimited
  // A port the core must not choose for this account (port 0) although free: reserved for
  // another account by the control plane's store. Unset = none.
  std::function<bool(std::uint16_t)> reserved_for_others;
  bool allows(std::uint16_t port) const;
  std::string describe_ranges() const;  // "10000-20000, 30000"
};

// The `bandwidth:` block, at the top level (every account) or in an account (overrides the keys
// it sets). Rates as written ("10MiB/s", common/byte_rate.hpp), parsed by validate(); each limit
// applies to each direction apart.
struct BandwidthConfig {
  std::optional<std::string> per_tunnel;   // each tunnel of the account; absent or "0" = none
  std::optional<std::string> per_account;  // all tunnels of the account together
};

// The effective limits of one account, bytes per second; 0 = unlimited.
struct BandwidthRules {
  std::uint64_t per_tunnel = 0;
  std::uint64_t per_account = 0;
};

// A certificate for public HTTPS, chosen by SNI among `hostnames` ("*.example.com" allowed).
struct CertificateConfig {
  std::vector<std::string> hostnames;
  std::string cert;  // PEM file
  std::string key;   // PEM file
};

struct TlsConfig {
  std::string cert;  // agent listener certificate; "" = <data_dir>/tls.crt, generated
  std::string key;
  std::vector<CertificateConfig> certificates;
  // The certificate of listen.api; "" = the agent listener's (cert/key above, or the
  // generated one).
  std::string api_cert;
  std::string api_key;
};

struct AuthConfig {
  std::string jwt_secret;       // HS256 key for agent JWTs (at least 32 bytes)
  std::string jwt_secret_file;  // or a file holding it (a trailing newline is ignored)
  std::string jwt_issuer;       // when set, a JWT's "iss" must equal it
  std::string jwt_audience;     // when set, a JWT's "aud" must name it
  bool jwt_enabled() const { return !jwt_secret.empty() || !jwt_secret_file.empty(); }
};

// Which client addresses may reach tunnels (docs/security.md): CIDR ranges or addresses, v4 or
// v6. For the whole core (`access:`) and per account (`accounts[].access`); a tunnel adds its
// own (`--cidr-allow`, `--cidr-deny`). A deny list refuses what it holds; a non-empty allow
// list refuses what it does not.
struct AccessConfig {
  std::vector<std::string> cidr_allow;
  std::vector<std::string> cidr_deny;
};

// A tenant: its tokens and the names it may serve. Names compare case-insensitively.
struct Account {
  std::string name;
  std::vector<std::string> tokens;
  // Exact DNS labels, "prefix-*" globs, or "*" (any free name).
  std::vector<std::string> subdomains = {"*"};
  // Custom domains it owns: "example.org" exactly, or "*.example.org" (one or more labels).
  std::vector<std::string> domains;
  std::uint32_t max_agents = 10;  // 0 = unlimited
  // Names and ports the account may hold in the registry at once: served, kept for it after its
  // agents left, restored after a core restart. Bounds the registry and the ownership file per
  // tenant. 0 = unlimited.
  std::uint32_t max_names = 1024;
  PortsConfig ports;          // overrides Config::ports for this account
  BandwidthConfig bandwidth;  // overrides Config::bandwidth for this account
  AccessConfig access;        // in addition to Config::access

  // True if the account may serve NAME.<base-domain>; `name` is one DNS label.
  // Whether the name is free is the registry's business, not this function's.
  bool may_use_subdomain(std::string_view name) const;
  // True if the account may serve the custom domain `host` (no port).
  bool may_use_domain(std::string_view host) const;
};

// How many streams of one agent its tcp and udp tunnels may hold together: max_streams minus
// the reserve for http tunnels (at most half of max_streams is reserved).
struct LimitsConfig;
std::uint32_t raw_stream_budget(const LimitsConfig& limits);

struct LimitsConfig {
  std::uint64_t max_header_bytes = 64 * 1024;
  std::uint64_t max_body_bytes = 0;                    // 0 = unlimited
  std::chrono::milliseconds header_timeout{10'000};    // whole request head must arrive
  std::chrono::milliseconds response_timeout{60'000};  // agent must send the response head
  // How long the app may take before the core watches for the visitor leaving (then its
  // stream is cancelled at once, logged 499); before that nobody reads the client, so fast
  // answers pay nothing for it.
  std::chrono::milliseconds client_watch_delay{500};
  std::chrono::milliseconds idle_timeout{75'000};  // keep-alive idle, public connections
  std::uint32_t max_streams_per_agent = 1000;
  // Agent connections in the handshake state (TLS handshake, then waiting for AUTH) at once:
  // in all, and from one source address (IPv4 address or IPv6 /64). One more is closed at
  // once, before its TLS handshake. Agents are in this state for a round trip or two.
  std::uint32_t max_agent_handshakes = 512;
  std::uint32_t max_agent_handshakes_per_address = 16;
  // Tunnels one agent may ask for in its AUTH, and all agents of one account may serve at once.
  // 0 = unlimited. Each tunnel is a registry entry, a hostname or an open port.
  std::uint32_t max_tunnels_per_agent = 32;
  std::uint32_t max_tunnels_per_account = 256;
  // New tcp/udp ports are refused while fewer file descriptors than this are free (of
  // RLIMIT_NOFILE; at most a quarter of it counts), so listeners cannot starve visitors'
  // connections of descriptors. 0 = no check.
  std::uint32_t fd_reserve = 256;
  // Streams of raw tunnels: each tcp tunnel's connections and each udp tunnel's client
  // addresses have their own budget (on a udp tunnel the least recently active client is
  // evicted for a new one), and all tcp/udp streams of one agent leave this many of
  // max_streams_per_agent to its http tunnels (at most half of it is reserved).
  std::uint32_t max_connections_per_tcp_tunnel = 500;
  std::uint32_t max_clients_per_udp_tunnel = 256;
  // The same from one client address (an IPv4 address or an IPv6 /64), per tunnel, so that one
  // address cannot take a tunnel's whole budget: a tcp connection over it is closed at once; a
  // new udp client over it evicts the least recently active client of that address. 0 = no cap.
  std::uint32_t max_connections_per_tcp_tunnel_per_address = 64;
  std::uint32_t max_clients_per_udp_tunnel_per_address = 32;
  std::uint32_t streams_reserved_for_http = 100;
  // How far the receive windows of one agent connection's streams may grow in all beyond their
  // initial 256 KiB (auto-tuning for fast transfers); bounds the bytes the core buffers for
  // public clients that read fast and then stall. 0 = windows never grow.
  std::uint64_t window_budget_per_agent = 32 * 1024 * 1024;
  // The same for all agent connections together: what such clients can make the whole core
  // buffer beyond the initial windows. 0 = windows never grow.
  std::uint64_t window_budget_total = 1024 * 1024 * 1024;
  std::uint32_t requests_per_second = 0;  // per account; 0 = unlimited; burst = 2x
  std::chrono::milliseconds shutdown_grace{30'000};
  std::chrono::milliseconds udp_idle_timeout{60'000};  // a udp client's session expires
  // A tcp tunnel connection or an upgraded (WebSocket) HTTP connection with no byte in either
  // direction for this long is closed; 0 = never (as HAProxy's "timeout tunnel").
  std::chrono::milliseconds tunnel_idle_timeout{3'600'000};
  std::uint32_t udp_max_datagram = 65507;  // larger datagrams are dropped (and counted)
  // Receive and send buffer each public udp port asks the kernel for (capped by
  // net.core.rmem_max / wmem_max); 0 = the kernel's default. See transport/udp.hpp.
  std::uint64_t udp_socket_buffer = 4 * 1024 * 1024;
};

struct HeartbeatConfig {
  std::chrono::milliseconds interval{10'000};
  std::chrono::milliseconds timeout{30'000};
};

struct LogConfig {
  std::string format = "text";  // text | json
  std::string level = "info";   // trace | debug | info | warn | error | critical | off
};

// The control plane's store (core/control/store): "" = SQLite at <data_dir>/store.db;
// "sqlite:PATH"; "postgres://user@host:port/database" (libpq's URL form).
struct StoreConfig {
  std::string url;
  // How often the usage counted on the data path is written to the store (one transaction).
  std::chrono::milliseconds usage_flush_interval{10'000};
  // How long hourly usage buckets are kept (90 days).
  std::chrono::milliseconds usage_retention{std::chrono::hours(24 * 90)};
};

// Metrics on the admin listener (docs/observability.md).
struct MetricsConfig {
  // Tunnels (hostname and account) with their own per-tunnel series; the ones after share
  // tunnel="_other" and are counted in tunnel_metrics_overflow_total.
  std::uint32_t max_tunnels = 200;
};

// OpenTelemetry tracing (docs/observability.md#tracing): off while otlp_endpoint is "".
struct TracingConfig {
  // Where spans go over OTLP/HTTP JSON: "http://collector:4318" (POST /v1/traces) or a URL
  // with its path; https:// verifies the server with the system's CAs.
  std::string otlp_endpoint;
  // The share of new traces kept (0..1, or "1%" in the file); a request with a valid
  // traceparent follows its sampled flag; errors (5xx, refused) are kept always.
  double sample_ratio = 1.0;
};

// Recording of a tunnel's exchanges to files (docs/inspector.md#recording-on-the-core): the
// tunnels whose hostname matches one of `hosts`.
struct RecordingRule {
  // Hostname patterns: "app.example.com", "*.example.com" (any name under it), "*" (all).
  std::vector<std::string> hosts;
  std::uint64_t max_file_size = 64ull * 1024 * 1024;  // the current file rotates at this size
  std::chrono::milliseconds max_file_age{std::chrono::hours(1)};  // ... or at this age
  std::uint32_t max_files = 8;  // rotated files kept per tunnel (the oldest go first)
  std::chrono::milliseconds max_age{std::chrono::hours(24 * 7)};  // older files are deleted
  std::uint64_t body_cap = 64 * 1024;  // bytes of each body kept (the cut is flagged); 0 = none
  // Header fields whose values are written as "[redacted]" (case-insensitive).
  std::vector<std::string> redact_headers = {"Authorization", "Cookie", "Set-Cookie",
                                             "Proxy-Authorization"};
};

struct RecordingConfig {
  // Exchanges waiting for the writer thread, all tunnels together; past it they are skipped
  // (tunnel_recording_skipped_total) so that a slow disk never slows the traffic.
  std::uint32_t queue = 1024;
  std::vector<RecordingRule> tunnels;
  // The first rule whose hosts match `host`, or nullptr.
  const RecordingRule* rule_for(std::string_view host) const;
};

struct Config {
  std::string domain = "localhost";  // tunnels are served as NAME.<domain>
  std::string data_dir = "./tunnel-data";
  std::uint32_t workers = 0;  // 0 = one per CPU core
  ListenConfig listen;
  // Proxies in front of the public listeners whose forwarding fields (X-Forwarded-For,
  // X-Real-IP, Forwarded, X-Request-Id...) the core believes: CIDR ranges or addresses. Empty
  // (the default): the core is the edge; it drops what visitors send in these fields and sets
  // its own.
  std::vector<std::string> trusted_proxies;
  AccessConfig access;  // every tunnel's visitors (accounts and tunnels add their own)
  TlsConfig tls;
  AuthConfig auth;
  std::vector<Account> accounts;
  PortsConfig ports;
  BandwidthConfig bandwidth;
  LimitsConfig limits;
  HeartbeatConfig heartbeat;
  LogConfig log;
  StoreConfig store;
  MetricsConfig metrics;
  TracingConfig tracing;
  RecordingConfig recording;
};

using LoadResult = common::LoadResult<Config>;

// How the core's configuration is read, checked and taken from the environment (the table of
// TUNNEL_* variables and the keys they set is in config.cpp); see common/config_loader.hpp.
const common::ConfigSchema<Config>& config_schema();

LoadResult load_config_file(const std::string& path);
// `source_name` is used only in messages about the document as a whole.
LoadResult load_config_string(const std::string& text, std::string_view source_name = "config");

// Overrides from the environment: TUNNEL_DOMAIN, TUNNEL_DATA_DIR, TUNNEL_AGENT_ADDR,
// TUNNEL_AGENT_PLAIN_ADDR,
// TUNNEL_HTTP_ADDR, TUNNEL_HTTPS_ADDR, TUNNEL_ADMIN_ADDR, TUNNEL_TUNNELS_HOST, TUNNEL_TOKEN
// (comma-separated, added to account "default"), TUNNEL_LOG_FORMAT, TUNNEL_LOG_LEVEL,
// TUNNEL_WORKERS, TUNNEL_OTLP_ENDPOINT, TUNNEL_TRACE_SAMPLE_RATIO. Unset or empty variables are
// ignored. Errors (line 0) name the variable.
std::vector<ConfigError> apply_env(Config& config, const common::Getenv& getenv);

// The checks load_config_*() runs after reading: syntax of addresses, names and patterns,
// duplicate tokens, accounts without tokens (allowed with JWT), cert without key, files that
// do not exist. Errors carry no line; call it after env and flags changed the config.
std::vector<ConfigError> validate(const Config& config);

// The shortest plain agent token accepted (accounts[].tokens, --token, TUNNEL_TOKEN, the data
// dir's agent.token): 16 characters, so that a token cannot be guessed by trying names.
inline constexpr std::size_t kMinTokenLength = 16;
// Success when `token` is acceptable as a plain agent token, else the rule it breaks ("shorter
// than 16 characters (it has 9)", "only whitespace"), for a message that names where it came
// from.
common::Status check_token_strength(std::string_view token);

// The account named "default", created (subdomains ["*"]) if missing. Adds `tokens` not
// already present. Used for TUNNEL_TOKEN and for the generated <data_dir>/agent.token.
Account& add_default_account_tokens(Config& config, const std::vector<std::string>& tokens);

// The HS256 key: auth.jwt_secret, or the contents of auth.jwt_secret_file without trailing
// newlines; "" if JWT is off. An error if the file cannot be read or is empty.
common::Result<std::string> read_jwt_secret(const AuthConfig& auth);

// The port policy for `account`: its own `ports` keys, else the top-level ones, else any port
// from 1024 up, unlimited. Ranges that do not parse are skipped (validate() reports them).
PortRules port_rules(const Config& config, const Account& account);

// The bandwidth limits for `account`: its own `bandwidth` keys, else the top-level ones.
BandwidthRules bandwidth_rules(const Config& config, const Account& account);

// The ownership rules of check-config, shared with the store (core/control/store): whether
// two subdomain patterns ("app", "dev-*"; lower case, "*" left out) can name the same label,
// whether two custom-domain patterns ("example.org", "*.example.org") can match the same host,
// and whether `host` is `suffix` or under it.
bool subdomains_overlap(std::string_view a, std::string_view b);
bool domains_overlap(std::string_view a, std::string_view b);
bool at_or_under(std::string_view host, std::string_view suffix);

}  // namespace tunnel::core
