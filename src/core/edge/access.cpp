#include "core/edge/access.hpp"

#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>

#include "common/base64.hpp"
#include "common/cidr.hpp"

namespace tunnel::core {

namespace {

constexpr std::size_t kMinPassword = 8;
constexpr std::size_t kMaxPassword = 128;

common::Status parse_list(const std::vector<std::string>& texts, std::string_view key,
                          std::vector<common::Cidr>& out) {
  for (std::size_t i = 0; i < texts.size(); ++i) {
    auto cidr = common::Cidr::parse(texts[i]);
    if (!cidr) {
      return common::fail(std::string(key) + "[" + std::to_string(i) +
                          "]: " + cidr.error().message);
    }
    out.push_back(cidr.value());
  }
  return common::success();
}

const common::Cidr* find_in(const std::vector<common::Cidr>& list, const common::IpAddress& ip) {
  for (const auto& cidr : list) {
    if (cidr.contains(ip)) return &cidr;
  }
  return nullptr;
}

// The value of a Basic Authorization field, decoded: "user:password"; nullopt when it is not one.
std::optional<std::string> basic_value(std::string_view authorization) {
  constexpr std::string_view kScheme = "basic ";
  if (authorization.size() <= kScheme.size() ||
      !http::iequals(authorization.substr(0, kScheme.size()), kScheme)) {
    return std::nullopt;
  }
  std::string_view b64 = authorization.substr(kScheme.size());
  while (!b64.empty() && b64.front() == ' ') b64.remove_prefix(1);
  std::string decoded;
  if (!common::base64_decode(b64, decoded)) return std::nullopt;
  return decoded;
}

std::string answer_headers_for_401() {
  return "WWW-Authenticate: Basic realm=\"tunnel\", charset=\"UTF-8\"\r\n";
}

}  // namespace

common::Result<AddressRules> address_rules(std::string level, const std::vector<std::string>& allow,
                                           const std::vector<std::string>& deny) {
  AddressRules rules;
  rules.level = std::move(level);
  if (auto ok = parse_list(allow, "cidr_allow", rules.allow); !ok) return std::move(ok).error();
  if (auto ok = parse_list(deny, "cidr_deny", rules.deny); !ok) return std::move(ok).error();
  return rules;
}

std::optional<std::string> refuse_address(std::span<const AddressRules> levels,
                                          std::string_view ip) {
  const auto address = common::IpAddress::parse(ip);
  for (const AddressRules& rules : levels) {
    if (!address) {
      if (!rules.empty())
        return "the client address is unknown and " + rules.level + " has address rules";
      continue;
    }
    if (const common::Cidr* hit = find_in(rules.deny, *address)) {
      return "client address " + std::string(ip) + " is denied by " + rules.level + " (cidr_deny " +
             hit->to_string() + ")";
    }
    if (!rules.allow.empty() && find_in(rules.allow, *address) == nullptr) {
      return "client address " + std::string(ip) + " is not in the cidr_allow list of " +
             rules.level;
    }
  }
  return std::nullopt;
}

std::string client_address(std::string_view peer_ip, const http::RequestHead& head,
                           const ForwardingPolicy& forwarding) {
  if (forwarding.trusted_proxies.empty() || !forwarding.trusts(peer_ip)) {
    return std::string(peer_ip);
  }
  // Walk X-Forwarded-For (every field, in order) from the right.
  std::vector<std::string_view> hops;
  for (const auto& field : head.headers) {
    if (!http::iequals(field.name, "X-Forwarded-For")) continue;
    std::string_view rest = field.value;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      std::string_view hop = rest.substr(0, comma);
      while (!hop.empty() && (hop.front() == ' ' || hop.front() == '\t')) hop.remove_prefix(1);
      while (!hop.empty() && (hop.back() == ' ' || hop.back() == '\t')) hop.remove_suffix(1);
      if (!hop.empty()) hops.push_back(hop);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
  }
  if (hops.empty()) return std::string(peer_ip);
  // (No std::ranges::reverse_view: clang with libstdc++ 12 cannot build it.)
  const auto untrusted = std::find_if(
      hops.rbegin(), hops.rend(), [&](std::string_view hop) { return !forwarding.trusts(hop); });
  return std::string(untrusted != hops.rend() ? *untrusted : hops.front());
}

common::Result<BasicCredential> parse_basic_credential(std::string_view text, bool plain_allowed) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return common::fail("a Basic credential is USER:PASSWORD (or USER:HASH): the user is missing");
  }
  BasicCredential credential;
  credential.user = std::string(text.substr(0, colon));
  const std::string_view secret = text.substr(colon + 1);
  if (common::looks_like_password_hash(secret)) {
    auto hash = common::parse_password_hash(secret);
    if (!hash) return common::fail("user " + credential.user + ": " + hash.error().message);
    credential.hash = std::move(hash).value();
    return credential;
  }
  if (!plain_allowed) {
    return common::fail("user " + credential.user +
                        ": send a password hash ($pbkdf2-sha256$...), not the password");
  }
  if (secret.size() < kMinPassword || secret.size() > kMaxPassword) {
    return common::fail("user " + credential.user + ": the password must be " +
                        std::to_string(kMinPassword) + " to " + std::to_string(kMaxPassword) +
                        " characters");
  }
  credential.hash = common::hash_password(secret);
  return credential;
}

BasicAuthGate::BasicAuthGate(std::vector<BasicCredential> credentials, TimeSource& time)
    : credentials_(std::move(credentials)), key_(32, '\0'), checks_(kChecksPerSecond, time) {
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), static_cast<int>(key_.size())) !=
      1) {
    throw std::runtime_error("RAND_bytes failed");
  }
}

std::string BasicAuthGate::digest(std::string_view authorization) const {
  std::string out(EVP_MAX_MD_SIZE, '\0');
  unsigned int size = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(authorization.data()), authorization.size(),
       reinterpret_cast<unsigned char*>(out.data()), &size);
  out.resize(size);
  return out;
}

BasicAuthGate::Outcome BasicAuthGate::check(std::string_view authorization) {
  if (authorization.empty()) return Outcome::kMissing;
  const std::string key = digest(authorization);
  {
    std::lock_guard lock(mutex_);
    if (verified_.contains(key)) return Outcome::kOk;
  }
  if (!checks_.allow("")) return Outcome::kBusy;
  const auto value = basic_value(authorization);
  if (!value) return Outcome::kWrong;
  const auto colon = value->find(':');
  if (colon == std::string::npos) return Outcome::kWrong;
  const std::string_view user = std::string_view(*value).substr(0, colon);
  const std::string_view password = std::string_view(*value).substr(colon + 1);
  for (const BasicCredential& credential : credentials_) {
    if (credential.user != user) continue;
    if (!common::verify_password(credential.hash, password)) return Outcome::kWrong;
    std::lock_guard lock(mutex_);
    if (verified_.size() >= kVerifiedCapacity) verified_.clear();  // rare: start over
    verified_.insert(key);
    return Outcome::kOk;
  }
  return Outcome::kWrong;
}

std::size_t BasicAuthGate::verified() const {
  std::lock_guard lock(mutex_);
  return verified_.size();
}

AccessFilter::AccessFilter(std::vector<AddressRules> levels, std::shared_ptr<BasicAuthGate> basic,
                           ForwardingPolicy forwarding)
    : levels_(std::move(levels)), basic_(std::move(basic)), forwarding_(std::move(forwarding)) {}

FilterVerdict AccessFilter::on_request_head(FilterRequest& request) {
  if (!levels_.empty()) {
    const std::string ip =
        client_address(ip_of_peer(request.client_peer), request.head, forwarding_);
    if (auto refusal = refuse_address(levels_, ip)) {
      return FilterVerdict::respond(403, request.decision.host + ": " + *refusal + ".", false);
    }
  }
  if (!basic_) return FilterVerdict::next();
  const std::string* field = request.head.find("Authorization");
  switch (basic_->check(field != nullptr ? std::string_view(*field) : std::string_view{})) {
    case BasicAuthGate::Outcome::kOk:
      request.head.remove("Authorization");
      return FilterVerdict::next();
    case BasicAuthGate::Outcome::kBusy: {
      auto verdict = FilterVerdict::respond(
          429, request.decision.host + ": too many password checks right now; try again.", false);
      verdict.answer.headers = "Retry-After: 1\r\n";
      return verdict;
    }
    case BasicAuthGate::Outcome::kMissing:
    case BasicAuthGate::Outcome::kWrong:
      break;
  }
  auto verdict = FilterVerdict::respond(
      401,
      request.decision.host + (field == nullptr ? ": this tunnel needs a user and password."
                                                : ": the user or password is wrong."),
      false);
  verdict.answer.headers = answer_headers_for_401();
  return verdict;
}

ConnectionVerdict AccessConnectionFilter::on_accept(const ConnectionInfo& connection) {
  if (auto refusal = refuse_address(levels_, ip_of_peer(connection.peer))) {
    return ConnectionVerdict::refuse(std::move(*refusal));
  }
  return ConnectionVerdict::next();
}

ConnectionVerdict AccessConnectionFilter::on_new_source(const ConnectionInfo& client) {
  return on_accept(client);
}

common::Result<std::vector<BasicCredential>> basic_credentials(
    const protocol::TunnelRequest& tunnel) {
  std::vector<BasicCredential> out;
  if (tunnel.basic_auth.empty()) return out;
  if (tunnel.type != "http") {
    return common::fail("basic_auth is for http tunnels (this one is " + tunnel.type + ")");
  }
  for (std::size_t i = 0; i < tunnel.basic_auth.size(); ++i) {
    auto credential = parse_basic_credential(tunnel.basic_auth[i], false);
    if (!credential) {
      return common::fail("basic_auth[" + std::to_string(i) + "]: " + credential.error().message);
    }
    out.push_back(std::move(credential).value());
  }
  return out;
}

common::Result<std::vector<AddressRules>> access_levels(const Config& config,
                                                        const Account& account,
                                                        const protocol::TunnelRequest& tunnel) {
  std::vector<AddressRules> levels;
  const std::pair<std::string, const AccessConfig*> configured[] = {
      {"the core", &config.access}, {"account " + account.name, &account.access}};
  for (const auto& [level, access] : configured) {
    auto rules = address_rules(level, access->cidr_allow, access->cidr_deny);
    if (!rules) return common::fail(level + ": " + rules.error().message);
    if (!rules.value().empty()) levels.push_back(std::move(rules).value());
  }
  auto own = address_rules("the tunnel", tunnel.cidr_allow, tunnel.cidr_deny);
  if (!own) return std::move(own).error();
  if (!own.value().empty()) levels.push_back(std::move(own).value());
  return levels;
}

common::Result<std::shared_ptr<HttpFilter>> tunnel_access_filter(
    const AccessScope& scope, const protocol::TunnelRequest& tunnel) {
  auto levels = access_levels(scope.config, scope.account, tunnel);
  if (!levels) return std::move(levels).error();
  auto credentials = basic_credentials(tunnel);
  if (!credentials) return std::move(credentials).error();
  if (levels.value().empty() && credentials.value().empty()) {
    return std::shared_ptr<HttpFilter>{};
  }
  std::shared_ptr<BasicAuthGate> gate;
  if (!credentials.value().empty()) {
    gate = std::make_shared<BasicAuthGate>(std::move(credentials).value(), scope.time);
  }
  return std::shared_ptr<HttpFilter>(std::make_shared<AccessFilter>(
      std::move(levels).value(), std::move(gate), forwarding_policy(scope.config.trusted_proxies)));
}

common::Result<std::shared_ptr<ConnectionFilter>> tunnel_access_connection_filter(
    const AccessScope& scope, const protocol::TunnelRequest& tunnel) {
  if (!tunnel.basic_auth.empty()) {
    return common::fail("basic_auth is for http tunnels (this one is " + tunnel.type + ")");
  }
  auto levels = access_levels(scope.config, scope.account, tunnel);
  if (!levels) return std::move(levels).error();
  if (levels.value().empty()) return std::shared_ptr<ConnectionFilter>{};
  return std::shared_ptr<ConnectionFilter>(
      std::make_shared<AccessConnectionFilter>(std::move(levels).value()));
}

}  // namespace tunnel::core
