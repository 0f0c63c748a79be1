#include "common/password_hash.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <charconv>
#include <stdexcept>

namespace tunnel::common {

namespace {

constexpr std::string_view kPrefix = "$pbkdf2-sha256$";
constexpr std::size_t kChecksumSize = 32;
constexpr std::size_t kMinSaltSize = 8;
constexpr std::size_t kMaxSaltSize = 64;
constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./";

std::string pbkdf2(std::string_view password, std::string_view salt, std::uint32_t rounds) {
  std::string out(kChecksumSize, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), static_cast<int>(rounds), EVP_sha256(),
                        static_cast<int>(out.size()),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    throw std::runtime_error("PKCS5_PBKDF2_HMAC failed");
  }
  return out;
}

int sextet(char c) {
  const auto i = kAlphabet.find(c);
  return i == std::string_view::npos ? -1 : static_cast<int>(i);
}

}  // namespace

std::string ab64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const auto n = (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16) |
                   (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8) |
                   static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    if (rest == 2) out += kAlphabet[(n >> 6) & 63];
  }
  return out;
}

Result<std::string> ab64_decode(std::string_view text) {
  if (text.size() % 4 == 1) return fail("not adapted base64 (its length)");
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const int v = sextet(c);
    if (v < 0) return fail(std::string("not adapted base64 (character '") + c + "')");
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xffu);
    }
  }
  return out;
}

std::string PasswordHash::to_string() const {
  return std::string(kPrefix) + std::to_string(rounds) + "$" + ab64_encode(salt) + "$" +
         ab64_encode(checksum);
}

bool looks_like_password_hash(std::string_view text) {
  return text.starts_with(kPrefix);
}

Result<PasswordHash> parse_password_hash(std::string_view text) {
  if (!looks_like_password_hash(text)) {
    return fail("not a password hash: it must start with " + std::string(kPrefix));
  }
  std::string_view rest = text.substr(kPrefix.size());
  const auto d1 = rest.find('$');
  const auto d2 = d1 == std::string_view::npos ? d1 : rest.find('$', d1 + 1);
  if (d2 == std::string_view::npos || rest.find('$', d2 + 1) != std::string_view::npos) {
    return fail("a password hash has the form $pbkdf2-sha256$ROUNDS$SALT$CHECKSUM");
  }
  PasswordHash hash;
  const std::string_view rounds = rest.substr(0, d1);
  const auto [end, ec] = std::from_chars(rounds.data(), rounds.data() + rounds.size(), hash.rounds);
  if (ec != std::errc{} || end != rounds.data() + rounds.size() ||
      hash.rounds < kMinPasswordRounds || hash.rounds > kMaxPasswordRounds) {
    return fail("the rounds of a password hash must be " + std::to_string(kMinPasswordRounds) +
                ".." + std::to_string(kMaxPasswordRounds) + ", not \"" + std::string(rounds) +
                "\"");
  }
  auto salt = ab64_decode(rest.substr(d1 + 1, d2 - d1 - 1));
  if (!salt) return fail("the salt of a password hash is " + salt.error().message);
  if (salt.value().size() < kMinSaltSize || salt.value().size() > kMaxSaltSize) {
    return fail("the salt of a password hash must be " + std::to_string(kMinSaltSize) + ".." +
                std::to_string(kMaxSaltSize) + " bytes");
  }
  auto checksum = ab64_decode(rest.substr(d2 + 1));
  if (!checksum) return fail("the checksum of a password hash is " + checksum.error().message);
  if (checksum.value().size() != kChecksumSize) {
    return fail("the checksum of a password hash must be 32 bytes (SHA-256)");
  }
  hash.salt = std::move(salt).value();
  hash.checksum = std::move(checksum).value();
  return hash;
}

PasswordHash hash_password(std::string_view password, std::uint32_t rounds) {
  PasswordHash hash;
  hash.rounds = rounds;
  hash.salt.assign(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(hash.salt.data()),
                 static_cast<int>(hash.salt.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  hash.checksum = pbkdf2(password, hash.salt, rounds);
  return hash;
}

bool verify_password(const PasswordHash& hash, std::string_view password) {
  if (hash.checksum.size() != kChecksumSize) return false;
  const std::string got = pbkdf2(password, hash.salt, hash.rounds);
  return CRYPTO_memcmp(got.data(), hash.checksum.data(), kChecksumSize) == 0;
}

}  // namespace tunnel::common
