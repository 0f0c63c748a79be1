// HS256 JSON Web Tokens for agents (RFC 7519), verified without any JWT library.
//
// Only {"alg":"HS256"} is accepted ("none" and every other algorithm are rejected), and no
// header with "crit" (no extension is implemented). A header or claims object that repeats a
// key is refused. Claims: `exp` (required), `nbf` and `iat` (optional), all whole unix seconds
// in [0, year 9999] (fractions, negatives and huge values are refused, never converted),
// checked with a leeway; `account_id` (required string), `agent_id` (optional string); `iss`
// and `aud` (a string or an array of strings) checked only when the server configures them.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace tunnel::core {

struct JwtClaims {
  std::string account_id;
  std::string agent_id;  // "" if absent
  std::int64_t exp = 0;  // unix seconds
};

inline constexpr std::chrono::seconds kJwtLeeway{30};

// True for three base64url parts separated by '.' (the last may be empty): a compact JWS.
bool looks_like_jwt(std::string_view token);

struct JwtExpectations {
  std::string issuer;    // "" = any (or no) "iss"
  std::string audience;  // "" = "aud" is not checked
  std::chrono::seconds leeway = kJwtLeeway;
};

// Verifies signature, algorithm and claims at `now_unix` (seconds). The error is safe to send to
// the agent: it says why, never echoing the secret.
common::Result<JwtClaims> verify_hs256(std::string_view token, std::string_view secret,
                                       std::int64_t now_unix, const JwtExpectations& expect = {});

// A compact JWS over `claims_json` (used verbatim as the payload) with header
// {"alg":"HS256","typ":"JWT"}: byte-identical to PyJWT's jwt.encode for the same payload text.
std::string sign_hs256(std::string_view claims_json, std::string_view secret);

// RFC 4648 section 5 without padding. decode rejects padding, whitespace and other alphabets.
std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace tunnel::core
