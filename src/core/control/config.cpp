#include "core/control/config.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "common/byte_rate.hpp"
#include "common/cidr.hpp"
#include "common/net_address.hpp"
#include "tracing/trace_context.hpp"
#include "tracing/tracer.hpp"

namespace tunnel::core {
namespace {

using common::child;
using common::ConfigReader;
using common::element;

std::string in_quotes(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

// ---- reading -------------------------------------------------------------------------------

void read_listen(ConfigReader& r, const YAML::Node& node, ListenConfig& out) {
  auto f = r.fields(
      node, "listen",
      {"agent", "agent_plain", "http", "https", "admin", "api", "agent_public", "tunnels_host"});
  if (!f) return;
  r.read(*f, "tunnels_host", "listen", out.tunnels_host);
  r.read(*f, "agent", "listen", out.agent);
  r.read(*f, "agent_plain", "listen", out.agent_plain);
  r.read(*f, "http", "listen", out.http);
  r.read(*f, "https", "listen", out.https);
  r.read(*f, "admin", "listen", out.admin);
  r.read(*f, "api", "listen", out.api);
  r.read(*f, "agent_public", "listen", out.agent_public);
}

void read_tls(ConfigReader& r, const YAML::Node& node, TlsConfig& out) {
  auto f = r.fields(node, "tls", {"cert", "key", "certificates", "api_cert", "api_key"});
  if (!f) return;
  r.read(*f, "cert", "tls", out.cert);
  r.read(*f, "key", "tls", out.key);
  r.read(*f, "api_cert", "tls", out.api_cert);
  r.read(*f, "api_key", "tls", out.api_key);
  std::size_t index = 0;
  for (const auto& item : r.sequence(*f, "certificates", "tls")) {
    const auto path = element("tls.certificates", index++);
    CertificateConfig cert;
    if (auto cf = r.fields(item, path, {"hostnames", "cert", "key"})) {
      r.read(*cf, "hostnames", path, cert.hostnames);
      r.read(*cf, "cert", path, cert.cert);
      r.read(*cf, "key", path, cert.key);
    }
    out.certificates.push_back(std::move(cert));
  }
}

void read_ports(ConfigReader& r, const YAML::Node& node, const std::string& path,
                PortsConfig& out) {
  auto f = r.fields(node, path, {"ranges", "max_per_account"});
  if (!f) return;
  if (f->contains("ranges")) {
    std::vector<std::string> ranges;
    if (r.read(*f, "ranges", path, ranges)) out.ranges = std::move(ranges);
  }
  if (f->contains("max_per_account")) {
    std::uint32_t max = 0;
    if (r.read(*f, "max_per_account", path, max)) out.max_per_account = max;
  }
}

void read_bandwidth(ConfigReader& r, const YAML::Node& node, const std::string& path,
                    BandwidthConfig& out) {
  auto f = r.fields(node, path, {"per_tunnel", "per_account"});
  if (!f) return;
  for (auto [key, field] :
       {std::pair{"per_tunnel", &out.per_tunnel}, std::pair{"per_account", &out.per_account}}) {
    if (!f->contains(key)) continue;
    std::string text;
    if (r.read(*f, key, path, text)) *field = std::move(text);
  }
}

void read_access(ConfigReader& r, const YAML::Node& node, const std::string& path,
                 AccessConfig& out) {
  auto f = r.fields(node, path, {"cidr_allow", "cidr_deny"});
  if (!f) return;
  r.read(*f, "cidr_allow", path, out.cidr_allow);
  r.read(*f, "cidr_deny", path, out.cidr_deny);
  for (const auto* list : {&out.cidr_allow, &out.cidr_deny}) {
    const char* key = list == &out.cidr_allow ? "cidr_allow" : "cidr_deny";
    for (std::size_t i = 0; i < list->size(); ++i) {
      if (auto cidr = common::Cidr::parse((*list)[i]); !cidr) {
        r.error_at(node[key][i], element(child(path, key), i), cidr.error().message);
      }
    }
  }
}

void read_accounts(ConfigReader& r, const ConfigReader::Fields& root, Config& out) {
  std::size_t index = 0;
  for (const auto& item : r.sequence(root, "accounts", "")) {
    const auto path = element("accounts", index++);
    Account account;
    if (auto f = r.fields(item, path,
                          {"name", "tokens", "subdomains", "domains", "max_agents", "max_names",
                           "ports", "bandwidth", "access"})) {
      r.read(*f, "name", path, account.name);
      r.read(*f, "tokens", path, account.tokens);
      r.read(*f, "subdomains", path, account.subdomains);
      r.read(*f, "domains", path, account.domains);
      r.read(*f, "max_agents", path, account.max_agents);
      r.read(*f, "max_names", path, account.max_names);
      if (f->contains("ports")) read_ports(r, f->at("ports"), child(path, "ports"), account.ports);
      if (f->contains("bandwidth")) {
        read_bandwidth(r, f->at("bandwidth"), child(path, "bandwidth"), account.bandwidth);
      }
      if (f->contains("access"))
        read_access(r, f->at("access"), child(path, "access"), account.access);
    }
    out.accounts.push_back(std::move(account));
  }
}

// The largest limits.udp_socket_buffer accepted (the kernel takes an int, and doubles it).
constexpr std::uint64_t kMaxUdpSocketBuffer = 1024 * 1024 * 1024;

// The largest limits.window_budget_per_agent and limits.window_budget_total accepted.
constexpr std::uint64_t kMaxWindowBudget = 4ull * 1024 * 1024 * 1024;
constexpr std::uint64_t kMaxWindowBudgetTotal = 1024ull * 1024 * 1024 * 1024;

void read_limits(ConfigReader& r, const YAML::Node& node, LimitsConfig& out) {
  auto f = r.fields(node, "limits",
                    {"max_header_bytes",
                     "max_body_bytes",
                     "header_timeout",
                     "response_timeout",
                     "client_watch_delay",
                     "idle_timeout",
                     "max_streams_per_agent",
                     "max_agent_handshakes",
                     "max_agent_handshakes_per_address",
                     "requests_per_second",
                     "shutdown_grace",
                     "udp_idle_timeout",
                     "tunnel_idle_timeout",
                     "udp_max_datagram",
                     "udp_socket_buffer",
                     "window_budget_per_agent",
                     "window_budget_total",
                     "max_tunnels_per_agent",
                     "max_tunnels_per_account",
                     "fd_reserve",
                     "max_connections_per_tcp_tunnel",
                     "max_clients_per_udp_tunnel",
                     "max_connections_per_tcp_tunnel_per_address",
                     "max_clients_per_udp_tunnel_per_address",
                     "streams_reserved_for_http"});
  if (!f) return;
  r.read(*f, "max_header_bytes", "limits", out.max_header_bytes, 16 * 1024 * 1024);
  r.read(*f, "max_body_bytes", "limits", out.max_body_bytes, UINT64_MAX);
  r.read(*f, "header_timeout", "limits", out.header_timeout);
  r.read(*f, "response_timeout", "limits", out.response_timeout);
  r.read(*f, "client_watch_delay", "limits", out.client_watch_delay);
  r.read(*f, "idle_timeout", "limits", out.idle_timeout);
  r.read(*f, "max_streams_per_agent", "limits", out.max_streams_per_agent);
  r.read(*f, "max_agent_handshakes", "limits", out.max_agent_handshakes);
  r.read(*f, "max_agent_handshakes_per_address", "limits", out.max_agent_handshakes_per_address);
  r.read(*f, "requests_per_second", "limits", out.requests_per_second);
  r.read(*f, "shutdown_grace", "limits", out.shutdown_grace);
  r.read(*f, "udp_idle_timeout", "limits", out.udp_idle_timeout);
  r.read(*f, "tunnel_idle_timeout", "limits", out.tunnel_idle_timeout);
  r.read(*f, "udp_max_datagram", "limits", out.udp_max_datagram);
  r.read(*f, "udp_socket_buffer", "limits", out.udp_socket_buffer, kMaxUdpSocketBuffer);
  r.read(*f, "window_budget_per_agent", "limits", out.window_budget_per_agent, kMaxWindowBudget);
  r.read(*f, "window_budget_total", "limits", out.window_budget_total, kMaxWindowBudgetTotal);
  r.read(*f, "max_tunnels_per_agent", "limits", out.max_tunnels_per_agent);
  r.read(*f, "max_tunnels_per_account", "limits", out.max_tunnels_per_account);
  r.read(*f, "fd_reserve", "limits", out.fd_reserve);
  r.read(*f, "max_connections_per_tcp_tunnel", "limits", out.max_connections_per_tcp_tunnel);
  r.read(*f, "max_clients_per_udp_tunnel", "limits", out.max_clients_per_udp_tunnel);
  r.read(*f, "max_connections_per_tcp_tunnel_per_address", "limits",
         out.max_connections_per_tcp_tunnel_per_address);
  r.read(*f, "max_clients_per_udp_tunnel_per_address", "limits",
         out.max_clients_per_udp_tunnel_per_address);
  r.read(*f, "streams_reserved_for_http", "limits", out.streams_reserved_for_http);
}

// A byte size read as text ("64MiB", "512KiB", "1000"): the units of byte rates, without "/s".
void read_size(ConfigReader& r, const ConfigReader::Fields& f, std::string_view key,
               const std::string& path, std::uint64_t& out) {
  std::string text;
  if (!r.read(f, key, path, text) || !f.contains(key)) return;
  if (text.ends_with("/s")) {
    r.error(child(path, key), "\"" + text + "\" is a rate; give a size such as \"64MiB\"");
    return;
  }
  if (auto parsed = common::parse_byte_rate(text)) {
    out = parsed.value();
  } else {
    r.error(child(path, key), parsed.error().message);
  }
}

void read_recording(ConfigReader& r, const YAML::Node& node, RecordingConfig& out) {
  auto f = r.fields(node, "recording", {"queue", "tunnels"});
  if (!f) return;
  r.read(*f, "queue", "recording", out.queue);
  std::size_t index = 0;
  for (const auto& item : r.sequence(*f, "tunnels", "recording")) {
    const auto path = element("recording.tunnels", index++);
    RecordingRule rule;
    if (auto rf = r.fields(item, path,
                           {"hosts", "max_file_size", "max_file_age", "max_files", "max_age",
                            "body_cap", "redact_headers"})) {
      r.read(*rf, "hosts", path, rule.hosts);
      read_size(r, *rf, "max_file_size", path, rule.max_file_size);
      r.read(*rf, "max_file_age", path, rule.max_file_age);
      r.read(*rf, "max_files", path, rule.max_files);
      r.read(*rf, "max_age", path, rule.max_age);
      read_size(r, *rf, "body_cap", path, rule.body_cap);
      r.read(*rf, "redact_headers", path, rule.redact_headers);
    }
    out.tunnels.push_back(std::move(rule));
  }
}

void check_recording(ConfigReader& r, const RecordingConfig& recording) {
  if (recording.queue == 0) r.error("recording.queue", "must be at least 1");
  for (std::size_t i = 0; i < recording.tunnels.size(); ++i) {
    const RecordingRule& rule = recording.tunnels[i];
    const auto path = element("recording.tunnels", i);
    if (rule.hosts.empty()) r.error(child(path, "hosts"), "name at least one hostname pattern");
    for (std::size_t k = 0; k < rule.hosts.size(); ++k) {
      const std::string& h = rule.hosts[k];
      const std::string_view name = h.starts_with("*.") ? std::string_view(h).substr(2) : h;
      if (h != "*" && !common::is_valid_hostname(name)) {
        r.error(element(child(path, "hosts"), k),
                in_quotes(h) + " is not a hostname, \"*.\" and a hostname, or \"*\"");
      }
    }
    if (rule.max_file_size < 1024) r.error(child(path, "max_file_size"), "at least 1KiB");
    if (rule.max_files == 0) r.error(child(path, "max_files"), "must be at least 1");
    if (rule.max_file_age.count() <= 0) r.error(child(path, "max_file_age"), "must be positive");
    if (rule.max_age.count() <= 0) r.error(child(path, "max_age"), "must be positive");
    if (rule.body_cap > 64ull * 1024 * 1024) r.error(child(path, "body_cap"), "at most 64MiB");
  }
}

void read_document(ConfigReader& r, const YAML::Node& root, Config& out) {
  auto f = r.fields(root, "",
                    {"domain", "data_dir", "workers", "listen", "trusted_proxies", "tls", "auth",
                     "accounts", "ports", "bandwidth", "limits", "heartbeat", "log", "store",
                     "metrics", "tracing", "access", "recording"});
  if (!f) return;
  r.read(*f, "domain", "", out.domain);
  r.read(*f, "data_dir", "", out.data_dir);
  std::uint64_t workers = out.workers;
  if (r.read(*f, "workers", "", workers, 1024)) out.workers = static_cast<std::uint32_t>(workers);
  if (f->contains("listen")) read_listen(r, f->at("listen"), out.listen);
  r.read(*f, "trusted_proxies", "", out.trusted_proxies);
  if (f->contains("access")) read_access(r, f->at("access"), "access", out.access);
  if (f->contains("tls")) read_tls(r, f->at("tls"), out.tls);
  if (f->contains("auth")) {
    if (auto af = r.fields(f->at("auth"), "auth",
                           {"jwt_secret", "jwt_secret_file", "jwt_issuer", "jwt_audience"})) {
      r.read(*af, "jwt_secret", "auth", out.auth.jwt_secret);
      r.read(*af, "jwt_secret_file", "auth", out.auth.jwt_secret_file);
      r.read(*af, "jwt_issuer", "auth", out.auth.jwt_issuer);
      r.read(*af, "jwt_audience", "auth", out.auth.jwt_audience);
    }
  }
  read_accounts(r, *f, out);
  if (f->contains("ports")) read_ports(r, f->at("ports"), "ports", out.ports);
  if (f->contains("bandwidth")) read_bandwidth(r, f->at("bandwidth"), "bandwidth", out.bandwidth);
  if (f->contains("limits")) read_limits(r, f->at("limits"), out.limits);
  if (f->contains("heartbeat")) {
    if (auto hf = r.fields(f->at("heartbeat"), "heartbeat", {"interval", "timeout"})) {
      r.read(*hf, "interval", "heartbeat", out.heartbeat.interval);
      r.read(*hf, "timeout", "heartbeat", out.heartbeat.timeout);
    }
  }
  if (f->contains("log")) {
    if (auto lf = r.fields(f->at("log"), "log", {"format", "level"})) {
      r.read(*lf, "format", "log", out.log.format);
      r.read(*lf, "level", "log", out.log.level);
    }
  }
  if (f->contains("store")) {
    if (auto sf =
            r.fields(f->at("store"), "store", {"url", "usage_flush_interval", "usage_retention"})) {
      r.read(*sf, "url", "store", out.store.url);
      r.read(*sf, "usage_flush_interval", "store", out.store.usage_flush_interval);
      r.read(*sf, "usage_retention", "store", out.store.usage_retention);
    }
  }
  if (f->contains("metrics")) {
    if (auto mf = r.fields(f->at("metrics"), "metrics", {"max_tunnels"})) {
      r.read(*mf, "max_tunnels", "metrics", out.metrics.max_tunnels);
    }
  }
  if (f->contains("recording")) read_recording(r, f->at("recording"), out.recording);
  if (f->contains("tracing")) {
    if (auto tf = r.fields(f->at("tracing"), "tracing", {"otlp_endpoint", "sample_ratio"})) {
      r.read(*tf, "otlp_endpoint", "tracing", out.tracing.otlp_endpoint);
      std::string ratio;
      if (r.read(*tf, "sample_ratio", "tracing", ratio) && tf->contains("sample_ratio")) {
        if (auto parsed = tracing::parse_sample_ratio(ratio)) {
          out.tracing.sample_ratio = *parsed;
        } else {
          r.error("tracing.sample_ratio", "\"" + ratio +
                                              "\" is not a ratio from 0 to 1 (0.01) or a "
                                              "percentage (1%)");
        }
      }
    }
  }
}

// ---- validation ----------------------------------------------------------------------------

void check_readable(ConfigReader& r, const std::string& path, const std::string& file) {
  if (file.empty()) return;
  if (::access(file.c_str(), R_OK) != 0) {
    r.error(path, "cannot read " + in_quotes(file) + ": " + std::strerror(errno));
  }
}

void check_listen(ConfigReader& r, const ListenConfig& listen) {
  struct Entry {
    const char* key;
    const std::string* text;
  };
  const Entry entries[] = {{"agent", &listen.agent}, {"agent_plain", &listen.agent_plain},
                           {"http", &listen.http},   {"https", &listen.https},
                           {"admin", &listen.admin}, {"api", &listen.api}};
  std::vector<std::pair<const char*, common::NetAddress>> bound;
  for (const auto& entry : entries) {
    const auto path = child("listen", entry.key);
    if (entry.text->empty()) {
      if (std::string_view(entry.key) == "agent") r.error(path, "the agent listener is required");
      continue;
    }
    auto parsed = common::parse_listen_address(*entry.text);
    if (!parsed) {
      r.error(path, parsed.error().message);
      continue;
    }
    for (const auto& [other_key, other] : bound) {
      const bool same_host =
          other.host == parsed.value().host || other.host.empty() || parsed.value().host.empty();
      if (parsed.value().port != 0 && other.port == parsed.value().port && same_host) {
        r.error(path,
                "port " + std::to_string(other.port) + " is also used by listen." + other_key);
      }
    }
    bound.emplace_back(entry.key, parsed.value());
  }
  if (!listen.agent_public.empty()) {
    auto advertised = common::parse_dial_address(listen.agent_public, "");
    if (!advertised || advertised.value().host.empty()) {
      r.error("listen.agent_public",
              in_quotes(listen.agent_public) +
                  " is not host:port (the address agents dial, such as tunnel.example.com:443)");
    }
  }
  if (!common::is_ip_literal(listen.tunnels_host)) {
    r.error("listen.tunnels_host", in_quotes(listen.tunnels_host) +
                                       " is not an IP address (use 0.0.0.0 or :: for every "
                                       "interface)");
  }
}

void check_bandwidth(ConfigReader& r, const BandwidthConfig& bandwidth, const std::string& path) {
  for (auto [key, field] : {std::pair{"per_tunnel", &bandwidth.per_tunnel},
                            std::pair{"per_account", &bandwidth.per_account}}) {
    if (!*field) continue;
    if (auto rate = common::parse_byte_rate(**field); !rate) {
      r.error(child(path, key), rate.error().message);
    }
  }
}

void check_ports(ConfigReader& r, const PortsConfig& ports, const std::string& path) {
  if (!ports.ranges) return;
  const auto ranges_path = child(path, "ranges");
  if (ports.ranges->empty()) {
    r.error(ranges_path, "at least one range such as \"10000-20000\" (or leave the key out)");
  }
  for (std::size_t i = 0; i < ports.ranges->size(); ++i) {
    if (auto range = parse_port_range((*ports.ranges)[i]); !range) {
      r.error(element(ranges_path, i), range.error().message);
    }
  }
}

// "*.example.org" or "example.org".
bool is_domain_pattern(std::string_view text) {
  if (text.starts_with("*.")) text.remove_prefix(2);
  return common::is_valid_hostname(text);
}

// "*", "name" or "prefix*" (a glob whose prefix starts a valid label).
bool is_subdomain_pattern(std::string_view text) {
  if (text == "*") return true;
  if (text.ends_with('*')) {
    text.remove_suffix(1);
    if (text.empty() || text.find('*') != text.npos || text.front() == '-') return false;
    return common::is_valid_dns_label(text) || common::is_valid_dns_label(std::string(text) + "x");
  }
  return common::is_valid_dns_label(text);
}

bool looks_like_jwt_token(std::string_view token) {
  return std::count(token.begin(), token.end(), '.') == 2;
}

void check_tls(ConfigReader& r, const TlsConfig& tls) {
  if (tls.cert.empty() != tls.key.empty()) {
    r.error(tls.cert.empty() ? "tls.cert" : "tls.key",
            tls.cert.empty() ? "required when tls.key is set" : "required when tls.cert is set");
  }
  check_readable(r, "tls.cert", tls.cert);
  check_readable(r, "tls.key", tls.key);
  if (tls.api_cert.empty() != tls.api_key.empty()) {
    r.error(tls.api_cert.empty() ? "tls.api_cert" : "tls.api_key",
            tls.api_cert.empty() ? "required when tls.api_key is set"
                                 : "required when tls.api_cert is set");
  }
  check_readable(r, "tls.api_cert", tls.api_cert);
  check_readable(r, "tls.api_key", tls.api_key);
  for (std::size_t i = 0; i < tls.certificates.size(); ++i) {
    const auto& cert = tls.certificates[i];
    const auto path = element("tls.certificates", i);
    if (cert.hostnames.empty()) r.error(child(path, "hostnames"), "at least one hostname needed");
    for (std::size_t j = 0; j < cert.hostnames.size(); ++j) {
      if (!is_domain_pattern(cert.hostnames[j])) {
        r.error(element(child(path, "hostnames"), j),
                in_quotes(cert.hostnames[j]) + " is not a hostname or \"*.\" wildcard");
      }
    }
    if (cert.cert.empty()) r.error(child(path, "cert"), "a certificate file is required");
    if (cert.key.empty()) r.error(child(path, "key"), "a key file is required");
    check_readable(r, child(path, "cert"), cert.cert);
    check_readable(r, child(path, "key"), cert.key);
  }
}

void check_auth(ConfigReader& r, const AuthConfig& auth) {
  if (!auth.jwt_secret.empty() && !auth.jwt_secret_file.empty()) {
    r.error("auth", "set jwt_secret or jwt_secret_file, not both");
    return;
  }
  if (!auth.jwt_enabled() && (!auth.jwt_issuer.empty() || !auth.jwt_audience.empty())) {
    r.error(auth.jwt_issuer.empty() ? "auth.jwt_audience" : "auth.jwt_issuer",
            "needs auth.jwt_secret or auth.jwt_secret_file");
  }
  const auto secret = read_jwt_secret(auth);
  const char* path = auth.jwt_secret.empty() ? "auth.jwt_secret_file" : "auth.jwt_secret";
  if (!secret) {
    r.error(path, secret.error().message);
  } else if (auth.jwt_enabled() && secret.value().size() < 32) {
    r.error(path, "the JWT secret must be at least 32 bytes (RFC 7518), got " +
                      std::to_string(secret.value().size()));
  }
}

// A name belongs to one account: patterns of two accounts that can name the same host are
// refused here, naming both (issue 25, "overlapping ownership"), and so are custom domains
// that would take names under the base domain from its subdomains.
void check_overlaps(ConfigReader& r, const Config& config) {
  const std::string base = common::ascii_lower(config.domain);
  for (std::size_t i = 0; i < config.accounts.size(); ++i) {
    const Account& a = config.accounts[i];
    const auto path_a = element("accounts", i);
    for (std::size_t k = 0; k < a.domains.size(); ++k) {
      const std::string d = common::ascii_lower(a.domains[k]);
      const bool wild = d.starts_with("*.");
      const std::string_view rest = wild ? std::string_view(d).substr(2) : std::string_view(d);
      // "*.example.org" with the base domain tunnel.example.org, or "x.tunnel.example.org".
      const bool covers =
          wild ? at_or_under(base, rest)
               : at_or_under(d, base) && d != base && d.find('.') == d.size() - base.size() - 1;
      if (covers && !base.empty()) {
        r.error(element(child(path_a, "domains"), k),
                in_quotes(a.domains[k]) + " covers names under the base domain " + base +
                    ", which belong to the accounts' subdomains; list the name under "
                    "subdomains instead");
      }
    }
    for (std::size_t j = i + 1; j < config.accounts.size(); ++j) {
      const Account& b = config.accounts[j];
      const auto path_b = element("accounts", j);
      const auto report = [&](std::string_view key, std::size_t ka, std::size_t kb,
                              const std::string& pa, const std::string& pb) {
        r.error(element(child(path_b, key), kb),
                in_quotes(pb) + " of account " + in_quotes(b.name) + " overlaps " + in_quotes(pa) +
                    " of account " + in_quotes(a.name) + " (" + element(child(path_a, key), ka) +
                    "): a name belongs to one account; narrow one of them");
      };
      for (std::size_t ka = 0; ka < a.subdomains.size(); ++ka) {
        const std::string pa = common::ascii_lower(a.subdomains[ka]);
        if (pa == "*") continue;
        for (std::size_t kb = 0; kb < b.subdomains.size(); ++kb) {
          const std::string pb = common::ascii_lower(b.subdomains[kb]);
          if (pb != "*" && subdomains_overlap(pa, pb)) {
            report("subdomains", ka, kb, a.subdomains[ka], b.subdomains[kb]);
          }
        }
      }
      for (std::size_t ka = 0; ka < a.domains.size(); ++ka) {
        for (std::size_t kb = 0; kb < b.domains.size(); ++kb) {
          if (domains_overlap(common::ascii_lower(a.domains[ka]),
                              common::ascii_lower(b.domains[kb]))) {
            report("domains", ka, kb, a.domains[ka], b.domains[kb]);
          }
        }
      }
    }
  }
}

void check_accounts(ConfigReader& r, const Config& config) {
  std::map<std::string, std::string> account_of_token;
  std::map<std::string, std::size_t> account_of_domain;  // domain -> account index
  std::map<std::string, std::size_t> index_of_name;
  for (std::size_t i = 0; i < config.accounts.size(); ++i) {
    const auto& account = config.accounts[i];
    const auto path = element("accounts", i);
    if (account.name.empty()) {
      r.error(child(path, "name"), "every account needs a name");
    } else if (!common::is_valid_dns_label(account.name) &&
               account.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_.-") != std::string::npos) {
      r.error(child(path, "name"), "use letters, digits, '_', '.' and '-' in account names");
    } else if (auto [it, fresh] = index_of_name.emplace(account.name, i); !fresh) {
      r.error(child(path, "name"), "duplicate account name " + in_quotes(account.name) +
                                       " (also accounts[" + std::to_string(it->second) + "])");
    }
    if (account.tokens.empty() && !config.auth.jwt_enabled()) {
      r.error(child(path, "tokens"),
              "an account needs at least one token (or configure auth.jwt_secret)");
    }
    for (std::size_t j = 0; j < account.tokens.size(); ++j) {
      const auto& token = account.tokens[j];
      const auto token_path = element(child(path, "tokens"), j);
      if (auto strong = check_token_strength(token); !strong) {
        // Never echo the token itself into logs.
        r.error(token_path, "account " + in_quotes(account.name) + ": the token is " +
                                strong.error().message + "; tokens must be at least " +
                                std::to_string(kMinTokenLength) +
                                " characters and not only whitespace (generate one with: "
                                "openssl rand -base64 24)");
      } else if (looks_like_jwt_token(token)) {
        r.error(token_path, "a plain token must not look like a JWT (two '.' in it)");
      } else if (auto [it, fresh] = account_of_token.emplace(token, account.name); !fresh) {
        // Never echo the token itself into logs.
        r.error(token_path, "token already used by account " + in_quotes(it->second));
      }
    }
    for (std::size_t j = 0; j < account.subdomains.size(); ++j) {
      if (!is_subdomain_pattern(account.subdomains[j])) {
        r.error(
            element(child(path, "subdomains"), j),
            in_quotes(account.subdomains[j]) + " is not a DNS label, a \"prefix-*\" glob or \"*\"");
      }
    }
    check_ports(r, account.ports, child(path, "ports"));
    check_bandwidth(r, account.bandwidth, child(path, "bandwidth"));
    for (std::size_t j = 0; j < account.domains.size(); ++j) {
      const auto domain = common::ascii_lower(account.domains[j]);
      const auto domain_path = element(child(path, "domains"), j);
      if (!is_domain_pattern(domain)) {
        r.error(domain_path, in_quotes(account.domains[j]) +
                                 " is not a domain name or a \"*.example.org\" wildcard");
      } else if (auto [it, fresh] = account_of_domain.emplace(domain, i);
                 !fresh && it->second != i) {
        r.error(domain_path, in_quotes(domain) + " is also claimed by account " +
                                 in_quotes(config.accounts[it->second].name));
      }
    }
  }
  check_overlaps(r, config);
}

void check_positive(ConfigReader& r, const char* path, std::chrono::milliseconds value) {
  if (value.count() <= 0) r.error(path, "must be greater than zero");
}

void check_rest(ConfigReader& r, const Config& config) {
  if (!common::is_valid_hostname(config.domain)) {
    r.error("domain", in_quotes(config.domain) + " is not a valid domain name");
  }
  if (config.data_dir.empty()) r.error("data_dir", "must not be empty");
  if (config.workers > 1024) r.error("workers", "at most 1024");
  for (const std::string& proxy : config.trusted_proxies) {
    if (auto cidr = common::Cidr::parse(proxy); !cidr) {
      r.error("trusted_proxies", cidr.error().message);
    }
  }
  const auto& limits = config.limits;
  if (limits.max_header_bytes < 1024) r.error("limits.max_header_bytes", "at least 1024");
  check_positive(r, "limits.header_timeout", limits.header_timeout);
  check_positive(r, "limits.response_timeout", limits.response_timeout);
  check_positive(r, "limits.client_watch_delay", limits.client_watch_delay);
  check_positive(r, "limits.idle_timeout", limits.idle_timeout);
  check_positive(r, "limits.udp_idle_timeout", limits.udp_idle_timeout);
  check_ports(r, config.ports, "ports");
  check_bandwidth(r, config.bandwidth, "bandwidth");
  if (limits.tunnel_idle_timeout.count() < 0) {
    r.error("limits.tunnel_idle_timeout", "must not be negative (0 = never)");
  }
  if (limits.udp_max_datagram < 1 || limits.udp_max_datagram > 65507) {
    r.error("limits.udp_max_datagram", "must be 1-65507 (the largest UDP payload over IPv4)");
  }
  if (limits.udp_socket_buffer != 0 && limits.udp_socket_buffer < 4096) {
    r.error("limits.udp_socket_buffer", "at least 4096 bytes, or 0 for the kernel's default");
  }
  if (limits.max_streams_per_agent == 0) r.error("limits.max_streams_per_agent", "at least 1");
  // Whatever an unauthenticated peer can make the core hold is bounded: no "0 = unlimited".
  if (limits.max_agent_handshakes == 0) {
    r.error("limits.max_agent_handshakes",
            "at least 1 (connections before AUTH are always capped; raise it instead)");
  }
  if (limits.max_agent_handshakes_per_address == 0) {
    r.error("limits.max_agent_handshakes_per_address",
            "at least 1 (connections before AUTH are always capped; raise it instead)");
  } else if (limits.max_agent_handshakes_per_address > limits.max_agent_handshakes) {
    r.error("limits.max_agent_handshakes_per_address",
            "must not be above limits.max_agent_handshakes (" +
                std::to_string(limits.max_agent_handshakes) + ")");
  }
  if (limits.max_connections_per_tcp_tunnel == 0) {
    r.error("limits.max_connections_per_tcp_tunnel", "at least 1");
  }
  if (limits.max_clients_per_udp_tunnel == 0) {
    r.error("limits.max_clients_per_udp_tunnel", "at least 1");
  }
  check_positive(r, "heartbeat.interval", config.heartbeat.interval);
  if (config.heartbeat.timeout <= config.heartbeat.interval) {
    r.error("heartbeat.timeout", "must be longer than heartbeat.interval");
  }
  if (config.log.format != "text" && config.log.format != "json") {
    r.error("log.format", "expected \"text\" or \"json\", got " + in_quotes(config.log.format));
  }
  static constexpr std::string_view kLevels[] = {"trace", "debug",    "info", "warn",
                                                 "error", "critical", "off"};
  if (std::find(std::begin(kLevels), std::end(kLevels), config.log.level) == std::end(kLevels)) {
    r.error("log.level", "expected one of trace, debug, info, warn, error, critical, off; got " +
                             in_quotes(config.log.level));
  }
  check_positive(r, "store.usage_flush_interval", config.store.usage_flush_interval);
  if (config.store.usage_retention < std::chrono::hours(1)) {
    r.error("store.usage_retention", "must be at least 1h (usage is kept in hourly buckets)");
  }
  const auto& url = config.store.url;
  if (!url.empty() && !url.starts_with("sqlite:") && !url.starts_with("postgres://") &&
      !url.starts_with("postgresql://")) {
    r.error("store.url", "expected sqlite:PATH or postgres://user@host:port/database; got " +
                             in_quotes(url.substr(0, url.find(':'))) + "...");
  }
}

void check(ConfigReader& r, const Config& config) {
  check_rest(r, config);
  check_listen(r, config.listen);
  check_tls(r, config.tls);
  check_auth(r, config.auth);
  check_accounts(r, config);
  check_recording(r, config.recording);
  if (!config.tracing.otlp_endpoint.empty()) {
    if (auto endpoint = tracing::check_endpoint(config.tracing.otlp_endpoint); !endpoint) {
      r.error("tracing.otlp_endpoint", endpoint.error().message);
    }
  }
}

std::vector<std::string> split_tokens(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    auto piece = text.substr(start, end - start);
    while (!piece.empty() && (piece.front() == ' ' || piece.front() == '\t'))
      piece.remove_prefix(1);
    while (!piece.empty() && (piece.back() == ' ' || piece.back() == '\t')) piece.remove_suffix(1);
    if (!piece.empty()) out.emplace_back(piece);
    start = end + 1;
  }
  return out;
}

}  // namespace

namespace {

common::Status env_tokens(Config& config, std::string_view value) {
  auto list = split_tokens(value);
  if (list.empty()) return common::fail("no token in the comma-separated list");
  add_default_account_tokens(config, list);
  return common::success();
}

common::Status env_workers(Config& config, std::string_view value) {
  std::uint32_t workers = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), workers);
  if (ec != std::errc() || end != value.data() + value.size() || workers > 1024) {
    return common::fail("expected an integer from 0 to 1024, got " + in_quotes(value));
  }
  config.workers = workers;
  return common::success();
}

common::Status env_sample_ratio(Config& config, std::string_view value) {
  const auto ratio = tracing::parse_sample_ratio(value);
  if (!ratio) {
    return common::fail("expected a ratio from 0 to 1 (0.01) or a percentage (1%), got " +
                        in_quotes(value));
  }
  config.tracing.sample_ratio = *ratio;
  return common::success();
}

}  // namespace

const common::ConfigSchema<Config>& config_schema() {
  using common::env_string;
  static constexpr common::EnvVar<Config> kEnv[] = {
      {"TUNNEL_DOMAIN", "domain", env_string<Config, &Config::domain>},
      {"TUNNEL_DATA_DIR", "data_dir", env_string<Config, &Config::data_dir>},
      {"TUNNEL_AGENT_ADDR", "listen.agent",
       env_string<Config, &Config::listen, &ListenConfig::agent>},
      {"TUNNEL_AGENT_PLAIN_ADDR", "listen.agent_plain",
       env_string<Config, &Config::listen, &ListenConfig::agent_plain>},
      {"TUNNEL_HTTP_ADDR", "listen.http", env_string<Config, &Config::listen, &ListenConfig::http>},
      {"TUNNEL_HTTPS_ADDR", "listen.https",
       env_string<Config, &Config::listen, &ListenConfig::https>},
      {"TUNNEL_ADMIN_ADDR", "listen.admin",
       env_string<Config, &Config::listen, &ListenConfig::admin>},
      {"TUNNEL_API_ADDR", "listen.api", env_string<Config, &Config::listen, &ListenConfig::api>},
      {"TUNNEL_AGENT_PUBLIC", "listen.agent_public",
       env_string<Config, &Config::listen, &ListenConfig::agent_public>},
      {"TUNNEL_TUNNELS_HOST", "listen.tunnels_host",
       env_string<Config, &Config::listen, &ListenConfig::tunnels_host>},
      {"TUNNEL_LOG_FORMAT", "log.format", env_string<Config, &Config::log, &LogConfig::format>},
      {"TUNNEL_LOG_LEVEL", "log.level", env_string<Config, &Config::log, &LogConfig::level>},
      // Comma-separated; added to the tokens of the account "default" (created if missing).
      {"TUNNEL_TOKEN", "accounts[name=default].tokens", env_tokens},
      {"TUNNEL_WORKERS", "workers", env_workers},
      {"TUNNEL_OTLP_ENDPOINT", "tracing.otlp_endpoint",
       env_string<Config, &Config::tracing, &TracingConfig::otlp_endpoint>},
      {"TUNNEL_TRACE_SAMPLE_RATIO", "tracing.sample_ratio", env_sample_ratio},
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

common::Status check_token_strength(std::string_view token) {
  if (token.empty()) return common::fail("empty");
  if (token.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos) {
    return common::fail("only whitespace");
  }
  if (token.size() < kMinTokenLength) {
    return common::fail("shorter than " + std::to_string(kMinTokenLength) + " characters (it has " +
                        std::to_string(token.size()) + ")");
  }
  return common::success();
}

Account& add_default_account_tokens(Config& config, const std::vector<std::string>& tokens) {
  auto it = std::find_if(config.accounts.begin(), config.accounts.end(),
                         [](const Account& a) { return a.name == "default"; });
  if (it == config.accounts.end()) {
    Account account;
    account.name = "default";
    account.subdomains = {"*"};
    config.accounts.push_back(std::move(account));
    it = std::prev(config.accounts.end());
  }
  for (const auto& token : tokens) {
    if (std::find(it->tokens.begin(), it->tokens.end(), token) == it->tokens.end()) {
      it->tokens.push_back(token);
    }
  }
  return *it;
}

std::vector<ConfigError> apply_env(Config& config, const common::Getenv& getenv) {
  return common::apply_env(config_schema(), config, getenv);
}

common::Result<std::string> read_jwt_secret(const AuthConfig& auth) {
  if (!auth.jwt_secret.empty()) return auth.jwt_secret;
  if (auth.jwt_secret_file.empty()) return std::string();
  std::ifstream in(auth.jwt_secret_file, std::ios::binary);
  if (!in) {
    return common::fail("cannot read " + in_quotes(auth.jwt_secret_file) + ": " +
                        std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string secret = text.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) return common::fail(in_quotes(auth.jwt_secret_file) + " is empty");
  return secret;
}

BandwidthRules bandwidth_rules(const Config& config, const Account& account) {
  const auto rate = [](const std::optional<std::string>& own,
                       const std::optional<std::string>& global) -> std::uint64_t {
    const auto& text = own ? own : global;
    if (!text) return 0;
    auto parsed = common::parse_byte_rate(*text);
    return parsed ? parsed.value() : 0;
  };
  return {rate(account.bandwidth.per_tunnel, config.bandwidth.per_tunnel),
          rate(account.bandwidth.per_account, config.bandwidth.per_account)};
}

}  // namespace tunnel::core

namespace tunnel::core {

common::Result<PortRange> parse_port_range(std::string_view text) {
  const auto number = [](std::string_view digits, std::uint16_t& out) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc() || end != digits.data() + digits.size() || value == 0 || value > 65535) {
      return false;
    }
    out = static_cast<std::uint16_t>(value);
    return true;
  };
  PortRange range;
  const auto dash = text.find('-');
  const bool ok =
      dash == std::string_view::npos
          ? number(text, range.first) && number(text, range.last)
          : number(text.substr(0, dash), range.first) && number(text.substr(dash + 1), range.last);
  if (!ok) {
    return common::fail(in_quotes(text) +
                        " is not a port range: expected \"FIRST-LAST\" or \"PORT\" with " +
                        "ports from 1 to 65535");
  }
  if (range.first > range.last) {
    return common::fail(in_quotes(text) + ": the first port is above the last");
  }
  return range;
}

bool PortRules::allows(std::uint16_t port) const {
  return std::any_of(ranges.begin(), ranges.end(),
                     [port](const PortRange& r) { return r.contains(port); });
}

std::string PortRules::describe_ranges() const {
  std::string out;
  for (const auto& r : ranges) {
    if (!out.empty()) out += ", ";
    out += std::to_string(r.first);
    if (r.last != r.first) out += "-" + std::to_string(r.last);
  }
  return out;
}

std::uint32_t raw_stream_budget(const LimitsConfig& limits) {
  const std::uint32_t max = limits.max_streams_per_agent;
  return max - std::min(limits.streams_reserved_for_http, max / 2);
}

// ports.max_per_account when no config sets it: one account must not be able to fill the
// core's descriptor table with listeners (issue 25, "one tenant can exhaust the core").
constexpr std::uint32_t kDefaultMaxPortsPerAccount = 10;

PortRules port_rules(const Config& config, const Account& account) {
  PortRules rules;
  const auto& ranges = account.ports.ranges ? account.ports.ranges : config.ports.ranges;
  if (ranges) {
    for (const auto& text : *ranges) {
      if (auto range = parse_port_range(text)) rules.ranges.push_back(range.value());
    }
  }
  if (rules.ranges.empty()) rules.ranges.push_back({1024, 65535});
  const auto& max =
      account.ports.max_per_account ? account.ports.max_per_account : config.ports.max_per_account;
  rules.max_ports = max.value_or(kDefaultMaxPortsPerAccount);
  return rules;
}

// Whether two subdomain patterns of different accounts can name the same label. "*" is left
// out: it means "any name no one else has", and an explicit name wins over it when claimed.
bool subdomains_overlap(std::string_view a, std::string_view b) {
  const bool glob_a = a.ends_with('*');
  const bool glob_b = b.ends_with('*');
  if (glob_a) a.remove_suffix(1);
  if (glob_b) b.remove_suffix(1);
  if (glob_a && glob_b) return a.starts_with(b) || b.starts_with(a);
  if (glob_a) return b.size() > a.size() && b.starts_with(a);
  if (glob_b) return a.size() > b.size() && a.starts_with(b);
  return a == b;
}

// Whether `host` is `suffix` or under it ("a.example.org" is under "example.org").
const RecordingRule* RecordingConfig::rule_for(std::string_view host) const {
  for (const RecordingRule& rule : tunnels) {
    for (const std::string& pattern : rule.hosts) {
      if (pattern == "*" || pattern == host ||
          (pattern.starts_with("*.") && host.size() > pattern.size() - 1 &&
           host.ends_with(std::string_view(pattern).substr(1)))) {
        return &rule;
      }
    }
  }
  return nullptr;
}

bool at_or_under(std::string_view host, std::string_view suffix) {
  return host == suffix || (host.size() > suffix.size() + 1 && host.ends_with(suffix) &&
                            host[host.size() - suffix.size() - 1] == '.');
}

// Whether two domain patterns ("example.org", "*.example.org") can match the same host.
// Identical entries are reported apart ("also claimed by").
bool domains_overlap(std::string_view a, std::string_view b) {
  const bool wild_a = a.starts_with("*.");
  const bool wild_b = b.starts_with("*.");
  if (wild_a) a.remove_prefix(2);
  if (wild_b) b.remove_prefix(2);
  if (wild_a && wild_b) return at_or_under(a, b) || at_or_under(b, a);
  if (wild_a) return b != a && at_or_under(b, a);
  if (wild_b) return a != b && at_or_under(a, b);
  return false;
}

}  // namespace tunnel::core
