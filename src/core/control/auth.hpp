// Agent authentication: plain account tokens and HS256 JWTs, mapped to an account.
//
// Plain tokens are looked up by their SHA-256 and compared in constant time, so neither the
// lookup nor the comparison leaks how much of a guess was right. Tokens shaped like a JWT go
// to JWT verification instead; its `account_id` claim must name a configured account.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/control/config.hpp"
#include "core/control/jwt.hpp"

namespace tunnel::core {

// Who a token authenticates.
struct Authenticated {
  std::string account;             // the account's name
  std::string agent_id;            // from a JWT's agent_id claim; "" for plain tokens
  std::int64_t registered_id = 0;  // a registered agent of the control plane's store; 0 = none
};

// Why `account` may not reserve the subdomain `name` (domain = false) or the custom domain
// `name` (domain = true) through the API, given the configuration file's accounts; "" = it
// may. An account declared in the file is held to its own `subdomains`/`domains` there, and no
// account takes what another declared account names explicitly (a pattern other than "*"):
// otherwise a tenant with API access could reserve a name the operator gave someone else.
std::string reservation_refusal(const std::vector<Account>& accounts, std::string_view account,
                                std::string_view name, bool domain);

class Authenticator {
 public:
  using Clock = std::function<std::int64_t()>;  // unix seconds

  // Copies the accounts of `config` and reads the JWT secret (file) once. `now` defaults to
  // the system clock.
  explicit Authenticator(const Config& config, Clock now = {});

  // The error is safe to send to the agent.
  common::Result<Authenticated> authenticate(std::string_view token) const;

  // The account with this name, or nullptr.
  const Account* find_account(std::string_view name) const;

  // Success, or why JWT auth is unavailable although configured (unreadable secret file).
  const common::Status& setup() const { return setup_; }

 private:
  using Digest = std::array<unsigned char, 32>;
  struct DigestHash {
    std::size_t operator()(const Digest& d) const;
  };

  std::vector<Account> accounts_;
  std::unordered_map<Digest, std::size_t, DigestHash> token_index_;  // SHA-256 -> account
  std::string jwt_secret_;
  JwtExpectations jwt_expect_;
  bool jwt_configured_ = false;
  common::Status setup_ = common::success();
  Clock now_;
};

}  // namespace tunnel::core
