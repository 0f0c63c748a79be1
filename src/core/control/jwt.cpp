#include "core/control/jwt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/json.hpp"

namespace tunnel::core {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int decode_char(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  // HMAC() with a null key pointer and length 0 would fail; an empty key is rejected earlier.
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
           &size) == nullptr) {
    return {};
  }
  return std::string(reinterpret_cast<const char*>(out), size);
}

// A NumericDate claim as whole unix seconds in [0, kMaxNumericDate]. Fractions, negatives,
// huge values and non-numbers are refused before any conversion (a double beyond int64 would
// be undefined behaviour to cast).
constexpr std::int64_t kMaxNumericDate = 253'402'300'799;  // 9999-12-31T23:59:59Z

std::optional<std::int64_t> numeric_date(const nlohmann::json& value) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(kMaxNumericDate)) return std::nullopt;
    return static_cast<std::int64_t>(v);
  }
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if (v < 0 || v > kMaxNumericDate) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

bool audience_matches(const nlohmann::json& aud, const std::string& want) {
  if (aud.is_string()) return aud.get<std::string>() == want;
  if (!aud.is_array()) return false;
  for (const auto& a : aud) {
    if (a.is_string() && a.get<std::string>() == want) return true;
  }
  return false;
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    if (rest == 2) out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  unsigned buffer = 0;
  int bits = 0;
  for (char c : text) {
    const int value = decode_char(c);
    if (value < 0) return std::nullopt;
    buffer = (buffer << 6) | static_cast<unsigned>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero, so every byte string has exactly one encoding.
  if ((buffer & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

bool looks_like_jwt(std::string_view token) {
  int parts = 0;
  std::size_t length = 0;
  for (char c : token) {
    if (c == '.') {
      if (length == 0) return false;  // empty header or claims
      ++parts;
      length = 0;
    } else if (decode_char(c) < 0) {
      return false;
    } else {
      ++length;
    }
  }
  return parts == 2;  // an empty signature is still JWT-shaped ({"alg":"none"}) and rejected
}

common::Result<JwtClaims> verify_hs256(std::string_view token, std::string_view secret,
                                       std::int64_t now_unix, const JwtExpectations& expect) {
  if (secret.empty()) return common::fail("JWT authentication is not configured");
  if (!looks_like_jwt(token)) return common::fail("malformed JWT");
  const auto first = token.find('.');
  const auto second = token.find('.', first + 1);
  const auto header_text = base64url_decode(token.substr(0, first));
  const auto payload_text = base64url_decode(token.substr(first + 1, second - first - 1));
  const auto signature = base64url_decode(token.substr(second + 1));
  if (!header_text || !payload_text || !signature)
    return common::fail("malformed JWT: bad base64url");

  // A repeated key could mean one thing to us and another to a different verifier.
  const auto [header, header_duplicate] = common::parse_json_unique_keys(*header_text);
  if (!header_duplicate.empty()) {
    return common::fail("malformed JWT: header repeats \"" + header_duplicate + "\"");
  }
  if (!header.is_object()) return common::fail("malformed JWT: header is not a JSON object");
  const auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string()) return common::fail("JWT header has no \"alg\"");
  if (*alg != "HS256") {
    return common::fail("JWT algorithm " + alg->get<std::string>() +
                        " is not accepted (use HS256)");
  }
  // RFC 7515 4.1.11: a verifier must refuse critical extensions it does not implement, and
  // this one implements none.
  if (header.contains("crit"))
    return common::fail("JWT header \"crit\" names unsupported extensions");

  // Check the signature before looking at the claims, so unsigned data is never trusted.
  const auto expected = hmac_sha256(secret, token.substr(0, second));
  if (expected.empty() || signature->size() != expected.size() ||
      CRYPTO_memcmp(signature->data(), expected.data(), expected.size()) != 0) {
    return common::fail("invalid JWT signature");
  }

  const auto [claims, claims_duplicate] = common::parse_json_unique_keys(*payload_text);
  if (!claims_duplicate.empty()) {
    return common::fail("malformed JWT: claims repeat \"" + claims_duplicate + "\"");
  }
  if (!claims.is_object()) return common::fail("malformed JWT: claims are not a JSON object");
  const auto exp = claims.find("exp");
  if (exp == claims.end()) return common::fail("JWT has no numeric \"exp\" claim");
  const auto exp_seconds = numeric_date(*exp);
  if (!exp_seconds) return common::fail("JWT \"exp\" is not whole unix seconds in range");
  const auto leeway = expect.leeway.count();
  if (*exp_seconds + leeway < now_unix) return common::fail("JWT has expired");
  if (const auto nbf = claims.find("nbf"); nbf != claims.end()) {
    const auto nbf_seconds = numeric_date(*nbf);
    if (!nbf_seconds) return common::fail("JWT \"nbf\" is not whole unix seconds in range");
    if (*nbf_seconds - leeway > now_unix) return common::fail("JWT is not valid yet (nbf)");
  }
  if (const auto iat = claims.find("iat"); iat != claims.end()) {
    const auto iat_seconds = numeric_date(*iat);
    if (!iat_seconds) return common::fail("JWT \"iat\" is not whole unix seconds in range");
    if (*iat_seconds - leeway > now_unix) return common::fail("JWT is issued in the future (iat)");
  }
  if (!expect.issuer.empty()) {
    const auto iss = claims.find("iss");
    if (iss == claims.end() || !iss->is_string() || *iss != expect.issuer) {
      return common::fail("JWT \"iss\" is not the configured issuer");
    }
  }
  if (!expect.audience.empty()) {
    const auto aud = claims.find("aud");
    if (aud == claims.end() || !audience_matches(*aud, expect.audience)) {
      return common::fail("JWT \"aud\" does not name this server's audience");
    }
  }
  const auto account = claims.find("account_id");
  if (account == claims.end() || !account->is_string() || account->get<std::string>().empty()) {
    return common::fail("JWT has no \"account_id\" claim");
  }
  JwtClaims out;
  out.account_id = account->get<std::string>();
  out.exp = *exp_seconds;
  if (const auto agent = claims.find("agent_id"); agent != claims.end()) {
    if (!agent->is_string()) return common::fail("JWT \"agent_id\" claim is not a string");
    out.agent_id = agent->get<std::string>();
  }
  return out;
}

std::string sign_hs256(std::string_view claims_json, std::string_view secret) {
  std::string signing_input = base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
  signing_input += '.';
  signing_input += base64url_encode(claims_json);
  const auto signature = hmac_sha256(secret, signing_input);
  return signing_input + "." + base64url_encode(signature);
}

}  // namespace tunnel::core
