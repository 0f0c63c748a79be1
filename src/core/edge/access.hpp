// Who may reach a tunnel (issue 23, docs/security.md#who-may-reach-a-tunnel): client address
// allow and deny lists at three levels (the core's `access:`, an account's `access:`, and the
// tunnel's own from its agent: `--cidr-allow`, `--cidr-deny`), and Basic credentials in front
// of an http tunnel (`--basic-auth user:pass`).
//
// Address rules: a level's deny list refuses the addresses it holds; a level's allow list, when
// it is not empty, refuses every address it does not hold. Every level must let the address
// pass. The address is the client's: the connection's peer, or, behind a trusted proxy
// (`trusted_proxies:`), the nearest address in X-Forwarded-For that is not a trusted proxy.
//
// Basic credentials are kept as PBKDF2 hashes (common/password_hash.hpp; agents hash what their
// users type before sending it). Checking one costs about a millisecond, so the gate remembers
// the Authorization values it verified (as keyed digests, at most kVerifiedCapacity) and checks
// at most kChecksPerSecond new values per tunnel; past that a visitor gets 429 with Retry-After
// instead of a check, so wrong passwords cannot occupy a worker.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/cidr.hpp"
#include "common/password_hash.hpp"
#include "common/result.hpp"
#include "core/agents/context.hpp"
#include "core/edge/conn_pipeline.hpp"
#include "core/edge/http_pipeline.hpp"

namespace tunnel::core {

// One level's address lists.
struct AddressRules {
  std::string level;  // for the refusal's words: "the core", "account acme", "the tunnel"
  std::vector<common::Cidr> allow;  // empty: every address may pass this level
  std::vector<common::Cidr> deny;
  bool empty() const { return allow.empty() && deny.empty(); }
};

// Parses the lists; the error names the list and the entry ("cidr_deny[1]: ...").
common::Result<AddressRules> address_rules(std::string level, const std::vector<std::string>& allow,
                                           const std::vector<std::string>& deny);

// Why `ip` may not pass (naming the level and list), or nullopt when every level lets it. Text
// that is not an address passes no allow list and no deny list.
std::optional<std::string> refuse_address(std::span<const AddressRules> levels,
                                          std::string_view ip);

// The client's address: `peer_ip`, or when the peer is a trusted proxy the nearest
// X-Forwarded-For entry (from the right) that is not one (the leftmost when all are).
std::string client_address(std::string_view peer_ip, const http::RequestHead& head,
                           const ForwardingPolicy& forwarding);

struct BasicCredential {
  std::string user;
  common::PasswordHash hash;
};

// "user:$pbkdf2-sha256$..." (kept as is) or, when `plain_allowed`, "user:password" (hashed
// here; the password must be 8..128 bytes, as ngrok asks). Agents send hashes: a password in
// AUTH is refused, so an agent cannot make the core hash for it. The error names the problem,
// never the password.
common::Result<BasicCredential> parse_basic_credential(std::string_view text, bool plain_allowed);

// The tunnel's credentials (TunnelRequest::basic_auth), checked: the error names the entry.
// Credentials are for http tunnels only.
common::Result<std::vector<BasicCredential>> basic_credentials(
    const protocol::TunnelRequest& tunnel);

// Checks the Authorization field of requests against a tunnel's credentials. Thread-safe.
class BasicAuthGate {
 public:
  enum class Outcome { kOk, kMissing, kWrong, kBusy };
  static constexpr std::size_t kVerifiedCapacity = 256;
  static constexpr std::uint32_t kChecksPerSecond = 10;

  BasicAuthGate(std::vector<BasicCredential> credentials, TimeSource& time);
  Outcome check(std::string_view authorization);
  std::size_t verified() const;

 private:
  std::string digest(std::string_view authorization) const;

  std::vector<BasicCredential> credentials_;
  std::string key_;  // random, for the digests of verified values
  RateLimiter checks_;
  mutable std::mutex mutex_;
  std::unordered_set<std::string> verified_;
};

// The request filter: address rules (all levels given), then Basic credentials when the
// tunnel has some. A refused address gets 403 naming it and the rule; missing or wrong
// credentials 401 with WWW-Authenticate; the Authorization field that passed is removed before
// the request goes to the app (the credential is the edge's, not the app's).
class AccessFilter final : public HttpFilter {
 public:
  AccessFilter(std::vector<AddressRules> levels, std::shared_ptr<BasicAuthGate> basic,
               ForwardingPolicy forwarding);
  std::string_view name() const override { return "access"; }
  unsigned hooks() const override { return hook::kRequestHead; }
  FilterVerdict on_request_head(FilterRequest& request) override;

 private:
  std::vector<AddressRules> levels_;
  std::shared_ptr<BasicAuthGate> basic_;
  ForwardingPolicy forwarding_;
};

// The same address rules for tcp connections and udp clients (their peer's address): a refused
// one is closed (tcp) or its datagrams dropped (udp), counted and logged at a bounded rate.
class AccessConnectionFilter final : public ConnectionFilter {
 public:
  explicit AccessConnectionFilter(std::vector<AddressRules> levels) : levels_(std::move(levels)) {}
  std::string_view name() const override { return "access"; }
  unsigned hooks() const override { return conn_hook::kAccept | conn_hook::kNewSource; }
  ConnectionVerdict on_accept(const ConnectionInfo& connection) override;
  ConnectionVerdict on_new_source(const ConnectionInfo& client) override;

 private:
  std::vector<AddressRules> levels_;
};

// Where a tunnel's access rules come from besides the tunnel: the core's configuration
// (`access:`, `trusted_proxies:`), its account, and the clock of the credential checks.
struct AccessScope {
  const Config& config;
  const Account& account;
  TimeSource& time;
};

// The access filter of an http tunnel; null when no level has address rules and the tunnel
// has no credentials. The error names the bad entry.
common::Result<std::shared_ptr<HttpFilter>> tunnel_access_filter(
    const AccessScope& scope, const protocol::TunnelRequest& tunnel);

// The same for a tcp or udp tunnel (address rules only: basic_auth is refused).
common::Result<std::shared_ptr<ConnectionFilter>> tunnel_access_connection_filter(
    const AccessScope& scope, const protocol::TunnelRequest& tunnel);

// The address levels of the core and of an account (configuration `access:`), and the
// tunnel's own from its agent; levels with no rules are left out. The error names the bad
// entry (the core's and accounts' lists were checked with the configuration).
common::Result<std::vector<AddressRules>> access_levels(const Config& config,
                                                        const Account& account,
                                                        const protocol::TunnelRequest& tunnel);

}  // namespace tunnel::core
