// Password hashes for credentials kept in files and sent to the core (Basic auth in front of a
// tunnel, issue 23): PBKDF2-HMAC-SHA256 in passlib's "pbkdf2_sha256" format, so that an operator
// can also make one with Python's passlib or check ours with it:
//
//   $pbkdf2-sha256$ROUNDS$SALT$CHECKSUM
//
// SALT and CHECKSUM in "adapted base64" (the standard alphabet with '.' for '+', no padding);
// the checksum is 32 bytes. Why PBKDF2 and not scrypt or Argon2: OpenSSL 3.0 (Debian 12) has
// PBKDF2 and scrypt, not Argon2; PBKDF2 with a few thousand rounds keeps one check on the event
// loop around a millisecond, and the core caches verified credentials (see core/edge/access.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace tunnel::common {

inline constexpr std::uint32_t kDefaultPasswordRounds = 4096;
inline constexpr std::uint32_t kMinPasswordRounds = 1000;
// A hash from an untrusted peer must not make one check cost seconds.
inline constexpr std::uint32_t kMaxPasswordRounds = 20'000;

struct PasswordHash {
  std::uint32_t rounds = 0;
  std::string salt;      // raw bytes
  std::string checksum;  // raw bytes, 32

  std::string to_string() const;  // the $pbkdf2-sha256$ form
};

// True when `text` starts like a hash of this format (then parse it; else it is a password).
bool looks_like_password_hash(std::string_view text);

// Parses the $pbkdf2-sha256$ form; the error names what is wrong (rounds outside
// kMinPasswordRounds..kMaxPasswordRounds, a salt under 8 bytes, a checksum that is not 32).
Result<PasswordHash> parse_password_hash(std::string_view text);

// A new hash of `password` with a random 16-byte salt.
PasswordHash hash_password(std::string_view password,
                           std::uint32_t rounds = kDefaultPasswordRounds);

// PBKDF2 of `password` with the hash's salt and rounds, compared in constant time.
bool verify_password(const PasswordHash& hash, std::string_view password);

// Adapted base64 (passlib's ab64): standard alphabet, '.' instead of '+', no padding.
std::string ab64_encode(std::string_view bytes);
Result<std::string> ab64_decode(std::string_view text);

}  // namespace tunnel::common
