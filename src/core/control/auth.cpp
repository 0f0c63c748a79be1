#include "core/control/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <chrono>
#include <cstring>

#include "common/net_address.hpp"
#include "core/control/jwt.hpp"

namespace tunnel::core {
namespace {

std::array<unsigned char, 32> sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &size, EVP_sha256(), nullptr);
  return out;
}

std::int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Strips one trailing dot, the FQDN form.
std::string_view without_root_dot(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return host;
}

}  // namespace

bool Account::may_use_subdomain(std::string_view label) const {
  if (!common::is_valid_dns_label(label)) return false;
  const std::string lower = common::ascii_lower(label);
  for (const auto& pattern_text : subdomains) {
    const std::string pattern = common::ascii_lower(pattern_text);
    if (pattern == "*") return true;
    if (pattern.ends_with('*')) {
      const std::string_view prefix(pattern.data(), pattern.size() - 1);
      if (lower.size() > prefix.size() && lower.starts_with(prefix)) return true;
    } else if (pattern == lower) {
      return true;
    }
  }
  return false;
}

bool Account::may_use_domain(std::string_view host_text) const {
  const std::string host = common::ascii_lower(without_root_dot(host_text));
  if (!common::is_valid_hostname(host)) return false;
  for (const auto& pattern_text : domains) {
    const std::string pattern = common::ascii_lower(without_root_dot(pattern_text));
    if (pattern.starts_with("*.")) {
      const std::string_view suffix(pattern.data() + 1, pattern.size() - 1);  // ".example.org"
      if (host.size() > suffix.size() && host.ends_with(suffix)) return true;
    } else if (pattern == host) {
      return true;
    }
  }
  return false;
}

std::string reservation_refusal(const std::vector<Account>& accounts, std::string_view account,
                                std::string_view name, bool domain) {
  const char* kind = domain ? "domains" : "subdomains";
  const auto listed = [](const std::vector<std::string>& patterns) {
    std::string out;
    for (const auto& p : patterns) out += (out.empty() ? "" : ", ") + p;
    return out.empty() ? std::string("(none)") : out;
  };
  for (const Account& a : accounts) {
    if (a.name == account) {
      if (domain ? a.may_use_domain(name) : a.may_use_subdomain(name)) continue;
      return "account \"" + a.name + "\" is declared in the configuration file with " + kind + " " +
             listed(domain ? a.domains : a.subdomains) + ", which do not allow \"" +
             std::string(name) + "\"";
    }
    Account explicit_only;
    explicit_only.subdomains.clear();
    for (const auto& p : a.subdomains) {
      if (p != "*") explicit_only.subdomains.push_back(p);
    }
    if (domain ? a.may_use_domain(name) : explicit_only.may_use_subdomain(name)) {
      return "\"" + std::string(name) + "\" is given to account \"" + a.name + "\" by its " + kind +
             " in the configuration file";
    }
  }
  return {};
}

std::size_t Authenticator::DigestHash::operator()(const Digest& d) const {
  std::size_t out = 0;
  std::memcpy(&out, d.data(), sizeof out);  // already uniformly distributed
  return out;
}

Authenticator::Authenticator(const Config& config, Clock now)
    : accounts_(config.accounts), now_(now ? std::move(now) : Clock(&system_now)) {
  for (std::size_t i = 0; i < accounts_.size(); ++i) {
    for (const auto& token : accounts_[i].tokens) {
      if (!token.empty()) token_index_.emplace(sha256(token), i);
    }
  }
  jwt_configured_ = config.auth.jwt_enabled();
  if (jwt_configured_) {
    auto secret = read_jwt_secret(config.auth);
    if (secret) {
      jwt_secret_ = std::move(secret).value();
    } else {
      setup_ = secret.error();
    }
  }
  jwt_expect_.issuer = config.auth.jwt_issuer;
  jwt_expect_.audience = config.auth.jwt_audience;
}

common::Result<Authenticated> Authenticator::authenticate(std::string_view token) const {
  if (token.empty()) return common::fail("no token given");
  if (looks_like_jwt(token)) {
    if (!jwt_configured_ || jwt_secret_.empty()) {
      return common::fail("JWT authentication is not enabled on this server");
    }
    auto verified = verify_hs256(token, jwt_secret_, now_(), jwt_expect_);
    if (!verified) return verified.error();
    JwtClaims& claims = verified.value();
    if (find_account(claims.account_id) == nullptr) {
      return common::fail("JWT names unknown account \"" + claims.account_id + "\"");
    }
    return Authenticated{std::move(claims.account_id), std::move(claims.agent_id)};
  }
  const Digest digest = sha256(token);
  const auto it = token_index_.find(digest);
  // The map is keyed by a digest the caller cannot steer; the final comparison is still
  // constant-time so a hash collision in the table never decides on its own.
  if (it == token_index_.end() ||
      CRYPTO_memcmp(it->first.data(), digest.data(), digest.size()) != 0) {
    return common::fail("invalid token");
  }
  return Authenticated{accounts_[it->second].name, ""};
}

const Account* Authenticator::find_account(std::string_view name) const {
  for (const auto& account : accounts_) {
    if (account.name == name) return &account;
  }
  return nullptr;
}

}  // namespace tunnel::core
