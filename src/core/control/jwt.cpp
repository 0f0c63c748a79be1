#include "core/control/jwt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>

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

JwtResult fail(std::string message) {
  JwtResult result;
  result.error = std::move(message);
  return result;
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

JwtResult verify_hs256(std::string_view token, std::string_view secret, std::int64_t now_unix,
                       std::chrono::seconds leeway) {
  if (secret.empty()) return fail("JWT authentication is not configured");
  if (!looks_like_jwt(token)) return fail("malformed JWT");
  const auto first = token.find('.');
  const auto second = token.find('.', first + 1);
  const auto header_text = base64url_decode(token.substr(0, first));
  const auto payload_text = base64url_decode(token.substr(first + 1, second - first - 1));
  const auto signature = base64url_decode(token.substr(second + 1));
  if (!header_text || !payload_text || !signature) return fail("malformed JWT: bad base64url");

  const auto header = nlohmann::json::parse(*header_text, nullptr, false);
  if (!header.is_object()) return fail("malformed JWT: header is not a JSON object");
  const auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string()) return fail("JWT header has no \"alg\"");
  if (*alg != "HS256") {
    return fail("JWT algorithm " + alg->get<std::string>() + " is not accepted (use HS256)");
  }

  // Check the signature before looking at the claims, so unsigned data is never trusted.
  const auto expected = hmac_sha256(secret, token.substr(0, second));
  if (expected.empty() || signature->size() != expected.size() ||
      CRYPTO_memcmp(signature->data(), expected.data(), expected.size()) != 0) {
    return fail("invalid JWT signature");
  }

  const auto claims = nlohmann::json::parse(*payload_text, nullptr, false);
  if (!claims.is_object()) return fail("malformed JWT: claims are not a JSON object");
  const auto exp = claims.find("exp");
  if (exp == claims.end() || !exp->is_number()) return fail("JWT has no numeric \"exp\" claim");
  const auto exp_seconds = static_cast<std::int64_t>(exp->get<double>());
  if (exp_seconds + leeway.count() < now_unix) return fail("JWT has expired");
  if (const auto nbf = claims.find("nbf"); nbf != claims.end()) {
    if (!nbf->is_number()) return fail("JWT \"nbf\" claim is not a number");
    if (static_cast<std::int64_t>(nbf->get<double>()) - leeway.count() > now_unix) {
      return fail("JWT is not valid yet (nbf)");
    }
  }
  const auto account = claims.find("account_id");
  if (account == claims.end() || !account->is_string() || account->get<std::string>().empty()) {
    return fail("JWT has no \"account_id\" claim");
  }
  JwtClaims out;
  out.account_id = account->get<std::string>();
  out.exp = exp_seconds;
  if (const auto agent = claims.find("agent_id"); agent != claims.end()) {
    if (!agent->is_string()) return fail("JWT \"agent_id\" claim is not a string");
    out.agent_id = agent->get<std::string>();
  }
  JwtResult result;
  result.claims = std::move(out);
  return result;
}

std::string sign_hs256(std::string_view claims_json, std::string_view secret) {
  std::string signing_input = base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
  signing_input += '.';
  signing_input += base64url_encode(claims_json);
  const auto signature = hmac_sha256(secret, signing_input);
  return signing_input + "." + base64url_encode(signature);
}

}  // namespace tunnel::core
