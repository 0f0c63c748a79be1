#include "agent/config.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "agent/allow_local.hpp"
#include "agent/health_check.hpp"
#include "common/byte_rate.hpp"
#include "common/cidr.hpp"
#include "common/fingerprint.hpp"
#include "common/password_hash.hpp"
#include "protocol/handshake.hpp"
#include "tracing/trace_context.hpp"
#include "tracing/tracer.hpp"

namespace tunnel::agent {
namespace {

using common::child;
using common::ConfigReader;
using common::element;

constexpr std::uint16_t kDefaultServerPort = 8443;

std::string in_quotes(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

void read_tunnels(ConfigReader& r, const ConfigReader::Fields& root, Config& out) {
  std::size_t index = 0;
  for (const auto& item : r.sequence(root, "tunnels", "")) {
    const auto path = element("tunnels", index++);
    TunnelConfig tunnel;
    if (auto f = r.fields(
            item, path,
            {"name", "type", "local", "subdomain", "hostname", "remote_port", "proxy_protocol",
             "bandwidth", "health_check", "health_interval", "health_timeout", "health_rise",
             "health_fall", "cidr_allow", "cidr_deny", "basic_auth"})) {
      r.read(*f, "cidr_allow", path, tunnel.cidr_allow);
      r.read(*f, "cidr_deny", path, tunnel.cidr_deny);
      r.read(*f, "basic_auth", path, tunnel.basic_auth);
      r.read(*f, "health_check", path, tunnel.health_check);
      r.read(*f, "health_interval", path, tunnel.health_interval);
      r.read(*f, "health_timeout", path, tunnel.health_timeout);
      r.read(*f, "health_rise", path, tunnel.health_rise);
      r.read(*f, "health_fall", path, tunnel.health_fall);
      r.read(*f, "name", path, tunnel.name);
      r.read(*f, "type", path, tunnel.type);
      r.read(*f, "local", path, tunnel.local);
      r.read(*f, "subdomain", path, tunnel.subdomain);
      r.read(*f, "hostname", path, tunnel.hostname);
      r.read(*f, "proxy_protocol", path, tunnel.proxy_protocol);
      r.read(*f, "bandwidth", path, tunnel.bandwidth);
      std::uint64_t port = 0;
      if (r.read(*f, "remote_port", path, port, 65535)) {
        tunnel.remote_port = static_cast<std::uint16_t>(port);
      }
    }
    out.tunnels.push_back(std::move(tunnel));
  }
}

// The largest window_budget accepted (as the core's limits.window_budget_per_agent).
constexpr std::uint64_t kMaxWindowBudget = 4ull * 1024 * 1024 * 1024;

// The largest inspect_db_size and inspect_body_cap accepted: the ring lives in memory.
constexpr std::uint64_t kMaxInspectBytes = 16ull * 1024 * 1024 * 1024;

void read_document(ConfigReader& r, const YAML::Node& root, Config& out) {
  auto f = r.fields(root, "",
                    {"server",
                     "token",
                     "data_dir",
                     "ca",
                     "fingerprint",
                     "insecure",
                     "plain",
                     "log_format",
                     "log_level",
                     "window_budget",
                     "tunnels",
                     "allow_local",
                     "metrics_addr",
                     "inspect",
                     "inspect_addr",
                     "inspect_db_size",
                     "inspect_body_cap",
                     "inspect_redact",
                     "inspect_password",
                     "otlp_endpoint",
                     "trace_sample_ratio",
                     "connections",
                     "name",
                     "group",
                     "session_max_age",
                     "local_pool"});
  if (!f) return;
  if (auto it = f->find("server"); it != f->end() && it->second.IsSequence()) {
    // A list of cores: kept as the comma-separated text the flag and TUNNEL_SERVER take.
    std::vector<std::string> servers;
    if (r.read(*f, "server", "", servers)) {
      out.server.clear();
      for (const auto& server : servers) out.server += (out.server.empty() ? "" : ",") + server;
    }
  } else {
    r.read(*f, "server", "", out.server);
  }
  r.read(*f, "connections", "", out.connections);
  r.read(*f, "name", "", out.name);
  r.read(*f, "group", "", out.group);
  r.read(*f, "session_max_age", "", out.session_max_age);
  if (auto it = f->find("local_pool"); it != f->end() && !it->second.IsNull()) {
    if (auto pool =
            r.fields(it->second, "local_pool",
                     {"max_idle_per_target", "max_idle", "idle_timeout", "connect_timeout"})) {
      r.read(*pool, "max_idle_per_target", "local_pool", out.local_pool.max_idle_per_target);
      r.read(*pool, "max_idle", "local_pool", out.local_pool.max_idle);
      r.read(*pool, "idle_timeout", "local_pool", out.local_pool.idle_timeout);
      r.read(*pool, "connect_timeout", "local_pool", out.local_pool.connect_timeout);
    }
  }
  r.read(*f, "token", "", out.token);
  r.read(*f, "data_dir", "", out.data_dir);
  r.read(*f, "ca", "", out.ca);
  r.read(*f, "fingerprint", "", out.fingerprint);
  r.read(*f, "insecure", "", out.insecure);
  r.read(*f, "plain", "", out.plain);
  r.read(*f, "log_format", "", out.log_format);
  r.read(*f, "log_level", "", out.log_level);
  r.read(*f, "window_budget", "", out.window_budget, kMaxWindowBudget);
  r.read(*f, "allow_local", "", out.allow_local);
  r.read(*f, "metrics_addr", "", out.metrics_addr);
  r.read(*f, "inspect", "", out.inspect);
  r.read(*f, "inspect_addr", "", out.inspect_addr);
  r.read(*f, "inspect_db_size", "", out.inspect_db_size, kMaxInspectBytes);
  r.read(*f, "inspect_body_cap", "", out.inspect_body_cap, kMaxInspectBytes);
  r.read(*f, "inspect_redact", "", out.inspect_redact);
  r.read(*f, "inspect_password", "", out.inspect_password);
  r.read(*f, "otlp_endpoint", "", out.otlp_endpoint);
  r.read(*f, "trace_sample_ratio", "", out.trace_sample_ratio);
  read_tunnels(r, *f, out);
}

void check_tunnel(ConfigReader& r, const TunnelConfig& tunnel, const std::string& path) {
  const bool http = tunnel.type == "http";
  if (!http && tunnel.type != "tcp" && tunnel.type != "udp") {
    r.error(child(path, "type"),
            "expected \"http\", \"tcp\" or \"udp\", got " + in_quotes(tunnel.type));
    return;
  }
  if (tunnel.local.empty()) {
    r.error(child(path, "local"), "required: the local address to forward to, e.g. 3000");
  } else if (auto target = parse_local_target(tunnel.local); !target) {
    r.error(child(path, "local"), target.error().message);
  }
  if (!tunnel.proxy_protocol.empty() && tunnel.proxy_protocol != "v1" &&
      tunnel.proxy_protocol != "v2") {
    r.error(child(path, "proxy_protocol"),
            "expected \"v1\" or \"v2\", got " + in_quotes(tunnel.proxy_protocol));
  } else if (!tunnel.proxy_protocol.empty() && tunnel.type == "udp") {
    r.error(child(path, "proxy_protocol"), "only http and tcp tunnels send a PROXY header");
  }
  if (!tunnel.bandwidth.empty()) {
    if (auto rate = common::parse_byte_rate(tunnel.bandwidth); !rate) {
      r.error(child(path, "bandwidth"), rate.error().message);
    }
  }
  for (const auto* list : {&tunnel.cidr_allow, &tunnel.cidr_deny}) {
    const char* key = list == &tunnel.cidr_allow ? "cidr_allow" : "cidr_deny";
    if (list->size() > protocol::kMaxAccessEntries) {
      r.error(child(path, key),
              "at most " + std::to_string(protocol::kMaxAccessEntries) + " entries");
    }
    for (std::size_t i = 0; i < list->size(); ++i) {
      if (auto cidr = common::Cidr::parse((*list)[i]); !cidr) {
        r.error(element(child(path, key), i), cidr.error().message);
      }
    }
  }
  if (!tunnel.basic_auth.empty() && !http) {
    r.error(child(path, "basic_auth"), "only http tunnels have basic auth");
  } else if (tunnel.basic_auth.size() > protocol::kMaxBasicAuthUsers) {
    r.error(child(path, "basic_auth"),
            "at most " + std::to_string(protocol::kMaxBasicAuthUsers) + " users");
  }
  for (std::size_t i = 0; i < tunnel.basic_auth.size(); ++i) {
    if (auto ok = check_basic_auth(tunnel.basic_auth[i]); !ok) {
      r.error(element(child(path, "basic_auth"), i), ok.error().message);
    }
  }
  if (auto health = parse_health_check(tunnel.health_check); !health) {
    r.error(child(path, "health_check"), health.error().message);
  } else if (health.value().enabled() && tunnel.type == "udp") {
    r.error(child(path, "health_check"), "udp tunnels have no health check (tcp and http do)");
  }
  if (tunnel.health_interval < std::chrono::milliseconds(100)) {
    r.error(child(path, "health_interval"), "at least 100ms");
  }
  if (tunnel.health_timeout < std::chrono::milliseconds(10) ||
      tunnel.health_timeout > tunnel.health_interval) {
    r.error(child(path, "health_timeout"), "at least 10ms and at most health_interval");
  }
  for (const auto& [key, value] : {std::pair{"health_rise", tunnel.health_rise},
                                   std::pair{"health_fall", tunnel.health_fall}}) {
    if (value < 1 || value > 100) r.error(child(path, key), "expected 1 to 100 checks");
  }
  if (!tunnel.name.empty() &&
      tunnel.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789_.-") != std::string::npos) {
    r.error(child(path, "name"), "use letters, digits, '_', '.' and '-' in tunnel names");
  }
  if (http) {
    if (!tunnel.subdomain.empty() && !common::is_valid_dns_label(tunnel.subdomain)) {
      r.error(child(path, "subdomain"),
              in_quotes(tunnel.subdomain) + " is not a DNS label (letters, digits, '-')");
    }
    if (!tunnel.hostname.empty() && !common::is_valid_hostname(tunnel.hostname)) {
      r.error(child(path, "hostname"), in_quotes(tunnel.hostname) + " is not a valid hostname");
    }
    if (tunnel.remote_port != 0) {
      r.error(child(path, "remote_port"), "only tcp and udp tunnels take a remote_port");
    }
  } else {
    if (!tunnel.subdomain.empty() || !tunnel.hostname.empty()) {
      r.error(child(path, tunnel.subdomain.empty() ? "hostname" : "subdomain"),
              "only http tunnels are routed by name; use remote_port");
    }
  }
}

void check(ConfigReader& r, const Config& config) {
  if (auto servers = parse_server_list(config.server); !servers) {
    r.error("server", servers.error().message);
  }
  if (!config.name.empty()) {
    if (auto ok = protocol::check_agent_name(config.name); !ok) {
      r.error("name", ok.error().message);
    }
  }
  if (!config.group.empty()) {
    if (auto ok = protocol::check_agent_name(config.group); !ok) {
      r.error("group", ok.error().message);
    }
  }
  if (config.connections < 1 || config.connections > kMaxConnections) {
    r.error("connections", "expected 1 to " + std::to_string(kMaxConnections) +
                               " sessions per core, got " + std::to_string(config.connections));
  }
  if (config.local_pool.idle_timeout < std::chrono::milliseconds(100)) {
    r.error("local_pool.idle_timeout", "at least 100ms");
  }
  if (config.local_pool.connect_timeout < std::chrono::milliseconds(100)) {
    r.error("local_pool.connect_timeout", "at least 100ms");
  }
  if (config.local_pool.max_idle < config.local_pool.max_idle_per_target) {
    r.error("local_pool.max_idle", "at least max_idle_per_target (" +
                                       std::to_string(config.local_pool.max_idle_per_target) + ")");
  }
  if (config.session_max_age.count() != 0 && config.session_max_age < std::chrono::seconds(10)) {
    r.error("session_max_age", "at least 10s (or 0: sessions are never rotated)");
  }
  if (config.data_dir.empty()) r.error("data_dir", "must not be empty");
  if (!config.token.empty() && config.token.find_first_not_of(" \t\r\n\f\v") == std::string::npos) {
    r.error("token",
            "only whitespace: give the account's token (or leave it out to use "
            "<data_dir>/agent.token)");
  }
  const int trust_settings =
      int{!config.ca.empty()} + int{!config.fingerprint.empty()} + int{config.insecure};
  if (trust_settings > 1) {
    r.error(!config.fingerprint.empty() ? "fingerprint" : "insecure",
            "set at most one of ca, fingerprint and insecure");
  }
  if (config.plain && trust_settings > 0) {
    r.error("plain", "a plain-TCP connection has no certificate to check; drop " +
                         std::string(!config.ca.empty()            ? "ca"
                                     : !config.fingerprint.empty() ? "fingerprint"
                                                                   : "insecure"));
  }
  if (!config.ca.empty() && ::access(config.ca.c_str(), R_OK) != 0) {
    r.error("ca", "cannot read " + in_quotes(config.ca) + ": " + std::strerror(errno));
  }
  if (!config.fingerprint.empty() && !common::normalize_fingerprint(config.fingerprint)) {
    r.error("fingerprint", "expected 64 hex digits (a SHA-256), colons allowed");
  }
  if (config.log_format != "text" && config.log_format != "json") {
    r.error("log_format", "expected \"text\" or \"json\", got " + in_quotes(config.log_format));
  }
  static constexpr std::string_view kLevels[] = {"trace", "debug",    "info", "warn",
                                                 "error", "critical", "off"};
  if (std::find(std::begin(kLevels), std::end(kLevels), config.log_level) == std::end(kLevels)) {
    r.error("log_level", "expected one of trace, debug, info, warn, error, critical, off; got " +
                             in_quotes(config.log_level));
  }
  if (!config.metrics_addr.empty()) {
    if (auto addr = common::parse_listen_address(config.metrics_addr); !addr) {
      r.error("metrics_addr", addr.error().message);
    }
  }
  if (!config.otlp_endpoint.empty()) {
    if (auto endpoint = tracing::check_endpoint(config.otlp_endpoint); !endpoint) {
      r.error("otlp_endpoint", endpoint.error().message);
    }
  }
  if (!tracing::parse_sample_ratio(config.trace_sample_ratio)) {
    r.error("trace_sample_ratio", in_quotes(config.trace_sample_ratio) +
                                      " is not a ratio from 0 to 1 (0.01) or a percentage (1%)");
  }
  for (std::size_t i = 0; i < config.allow_local.size(); ++i) {
    if (auto rule = parse_local_rule(config.allow_local[i]); !rule) {
      r.error(element("allow_local", i), rule.error().message);
    }
  }
  std::map<std::string, std::size_t> names;
  std::map<std::string, std::size_t> hosts;
  for (std::size_t i = 0; i < config.tunnels.size(); ++i) {
    const auto& tunnel = config.tunnels[i];
    const auto path = element("tunnels", i);
    check_tunnel(r, tunnel, path);
    if (!tunnel.name.empty()) {
      if (auto [it, fresh] = names.emplace(tunnel.name, i); !fresh) {
        r.error(child(path, "name"), "duplicate tunnel name " + in_quotes(tunnel.name) +
                                         " (also tunnels[" + std::to_string(it->second) + "])");
      }
    }
    for (const auto* host : {&tunnel.subdomain, &tunnel.hostname}) {
      if (host->empty()) continue;
      const auto key = (host == &tunnel.subdomain ? "sub:" : "host:") + common::ascii_lower(*host);
      if (auto [it, fresh] = hosts.emplace(key, i); !fresh) {
        r.error(
            child(path, host == &tunnel.subdomain ? "subdomain" : "hostname"),
            in_quotes(*host) + " is already used by tunnels[" + std::to_string(it->second) + "]");
      }
    }
  }
}

std::optional<std::string> read_trimmed(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return std::string();
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

}  // namespace

common::Status check_basic_auth(std::string_view entry) {
  const auto colon = entry.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return common::fail("expected USER:PASSWORD (or USER:HASH)");
  }
  const std::string user(entry.substr(0, colon));
  const std::string_view secret = entry.substr(colon + 1);
  if (common::looks_like_password_hash(secret)) {
    if (auto hash = common::parse_password_hash(secret); !hash) {
      return common::fail("user " + user + ": " + hash.error().message);
    }
  } else if (secret.size() < 8 || secret.size() > 128) {
    return common::fail("user " + user + ": the password must be 8 to 128 characters");
  }
  return common::success();
}

std::string basic_auth_for_core(std::string_view entry) {
  const auto colon = entry.find(':');
  const std::string_view secret = entry.substr(colon + 1);
  if (common::looks_like_password_hash(secret)) return std::string(entry);
  return std::string(entry.substr(0, colon + 1)) + common::hash_password(secret).to_string();
}

const common::ConfigSchema<Config>& config_schema() {
  static constexpr common::EnvVar<Config> kEnv[] = {
      {"TUNNEL_SERVER", "server", common::env_string<Config, &Config::server>},
      {"TUNNEL_TOKEN", "token", common::env_string<Config, &Config::token>},
      {"TUNNEL_DATA_DIR", "data_dir", common::env_string<Config, &Config::data_dir>},
      {"TUNNEL_CA", "ca", common::env_string<Config, &Config::ca>},
      {"TUNNEL_FINGERPRINT", "fingerprint", common::env_string<Config, &Config::fingerprint>},
      {"TUNNEL_LOG_FORMAT", "log_format", common::env_string<Config, &Config::log_format>},
      {"TUNNEL_LOG_LEVEL", "log_level", common::env_string<Config, &Config::log_level>},
      {"TUNNEL_METRICS_ADDR", "metrics_addr", common::env_string<Config, &Config::metrics_addr>},
      {"TUNNEL_OTLP_ENDPOINT", "otlp_endpoint", common::env_string<Config, &Config::otlp_endpoint>},
      {"TUNNEL_TRACE_SAMPLE_RATIO", "trace_sample_ratio",
       common::env_string<Config, &Config::trace_sample_ratio>},
      {"TUNNEL_INSECURE", "insecure", common::env_bool<Config, &Config::insecure>},
      {"TUNNEL_PLAIN", "plain", common::env_bool<Config, &Config::plain>},
  };
  static const common::ConfigSchema<Config> kSchema{read_document, check, kEnv};
  return kSchema;
}

LoadResult load_config_string(const std::string& text, std::string_view source_name) {
  return common::load_config_string(config_schema(), text, source_name);
}

LoadResult load_config_file(const std::string& path) {
  return common::load_config_file(config_schema(), path);
}

std::vector<ConfigError> validate(const Config& config) {
  return common::check_config(config_schema(), config);
}

std::vector<ConfigError> apply_env(Config& config, const common::Getenv& getenv) {
  return common::apply_env(config_schema(), config, getenv);
}

common::Result<common::NetAddress> parse_local_target(std::string_view text) {
  if (text.starts_with("https://")) {
    return common::fail("https:// local targets are not supported yet: " + in_quotes(text));
  }
  std::uint16_t default_port = 0;
  if (text.starts_with("http://")) {
    text.remove_prefix(7);
    if (!text.empty() && text.back() == '/') text.remove_suffix(1);
    if (text.find('/') != std::string_view::npos) {
      return common::fail("a local target is an address, not a URL with a path: " +
                          in_quotes(std::string("http://") + std::string(text)));
    }
    default_port = 80;
  } else if (text.find("://") != std::string_view::npos) {
    return common::fail("unsupported scheme in local target " + in_quotes(text) + " (use http://)");
  }
  return common::parse_dial_address(text, "localhost", default_port);
}

common::Result<common::NetAddress> parse_server_address(std::string_view text) {
  return common::parse_dial_address(text, "localhost", kDefaultServerPort);
}

common::Result<std::vector<common::NetAddress>> parse_server_list(std::string_view text) {
  std::vector<common::NetAddress> out;
  std::size_t index = 0;
  for (;;) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) {
      return common::fail(text.find(',') == std::string_view::npos && out.empty()
                              ? std::string("empty: give the core's address HOST:PORT")
                              : "core #" + std::to_string(index + 1) +
                                    " of the list is empty (addresses are separated by commas)");
    }
    auto address = parse_server_address(item);
    if (!address) return address.error();
    for (const auto& seen : out) {
      if (seen.host == address.value().host && seen.port == address.value().port) {
        return common::fail(address.value().to_string() + " is listed twice");
      }
    }
    out.push_back(std::move(address).value());
    ++index;
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

common::Result<std::string> resolve_token(const Config& config) {
  if (!config.token.empty()) return config.token;
  const auto path = (std::filesystem::path(config.data_dir) / "agent.token").string();
  auto token = read_trimmed(path);
  if (!token) {
    return common::fail(
        "no token: set token in the config, TUNNEL_TOKEN, or run a core that writes " + path +
        " (" + std::strerror(errno) + ")");
  }
  if (token->empty()) return common::fail(path + " is empty");
  return *token;
}

TrustSettings resolve_trust(const Config& config) {
  TrustSettings trust;
  if (config.insecure) {
    trust.mode = TrustSettings::Mode::kInsecure;
  } else if (!config.fingerprint.empty()) {
    trust.mode = TrustSettings::Mode::kFingerprint;
    trust.fingerprint = common::normalize_fingerprint(config.fingerprint).value_or("");
  } else if (!config.ca.empty()) {
    trust.mode = TrustSettings::Mode::kCaFile;
    trust.ca_file = config.ca;
  } else if (auto local = std::filesystem::path(config.data_dir) / "tls.crt";
             ::access(local.c_str(), R_OK) == 0) {
    trust.mode = TrustSettings::Mode::kCaFile;
    trust.ca_file = local.string();
  }
  return trust;
}

}  // namespace tunnel::agent
