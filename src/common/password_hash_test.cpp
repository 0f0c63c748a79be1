#include "common/password_hash.hpp"

#include <gtest/gtest.h>

namespace tunnel::common {
namespace {

// Made with Python's hashlib.pbkdf2_hmac (independent of this code), in passlib's format.
constexpr std::string_view kPythonHash =
    "$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0MTIzNA$w7/Z.TtKe2706ziYqntGWEpywycBhHRgtLIN.hknDGQ";

TEST(PasswordHash, ChecksAHashMadeElsewhere) {
  auto hash = parse_password_hash(kPythonHash);
  ASSERT_TRUE(hash) << hash.error().message;
  EXPECT_EQ(hash.value().rounds, 1000u);
  EXPECT_EQ(hash.value().salt, "saltsaltsalt1234");
  EXPECT_TRUE(verify_password(hash.value(), "correct horse"));
  EXPECT_FALSE(verify_password(hash.value(), "correct hors"));
  EXPECT_FALSE(verify_password(hash.value(), ""));
  EXPECT_EQ(hash.value().to_string(), kPythonHash);
}

TEST(PasswordHash, NewHashesAreSaltedAndRoundTrip) {
  const PasswordHash a = hash_password("s3cret-pass", kMinPasswordRounds);
  const PasswordHash b = hash_password("s3cret-pass", kMinPasswordRounds);
  EXPECT_NE(a.salt, b.salt);
  EXPECT_NE(a.checksum, b.checksum);
  auto parsed = parse_password_hash(a.to_string());
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_TRUE(verify_password(parsed.value(), "s3cret-pass"));
  EXPECT_FALSE(verify_password(parsed.value(), "s3cret-pasS"));
  EXPECT_EQ(hash_password("x").rounds, kDefaultPasswordRounds);
}

TEST(PasswordHash, RefusesMalformedHashesNamingTheProblem) {
  auto error = [](std::string_view text) {
    auto r = parse_password_hash(text);
    return r ? std::string("parsed") : r.error().message;
  };
  EXPECT_EQ(error("secret"), "not a password hash: it must start with $pbkdf2-sha256$");
  EXPECT_EQ(error("$pbkdf2-sha256$1000$c2FsdHNhbHQ"),
            "a password hash has the form $pbkdf2-sha256$ROUNDS$SALT$CHECKSUM");
  EXPECT_EQ(
      error(
          "$pbkdf2-sha256$999$c2FsdHNhbHRzYWx0MTIzNA$w7/Z.TtKe2706ziYqntGWEpywycBhHRgtLIN.hknDGQ"),
      "the rounds of a password hash must be 1000..20000, not \"999\"");
  EXPECT_EQ(error("$pbkdf2-sha256$20001$c2FsdHNhbHRzYWx0MTIzNA$w7/"
                  "Z.TtKe2706ziYqntGWEpywycBhHRgtLIN.hknDGQ"),
            "the rounds of a password hash must be 1000..20000, not \"20001\"");
  EXPECT_EQ(
      error("$pbkdf2-sha256$x$c2FsdHNhbHRzYWx0MTIzNA$w7/Z.TtKe2706ziYqntGWEpywycBhHRgtLIN.hknDGQ"),
      "the rounds of a password hash must be 1000..20000, not \"x\"");
  EXPECT_EQ(error("$pbkdf2-sha256$1000$c2Fs$w7/Z.TtKe2706ziYqntGWEpywycBhHRgtLIN.hknDGQ"),
            "the salt of a password hash must be 8..64 bytes");
  EXPECT_EQ(error("$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0MTIzNA$w7/Z"),
            "the checksum of a password hash must be 32 bytes (SHA-256)");
  EXPECT_EQ(error("$pbkdf2-sha256$1000$c2Fsd!NhbHRzYWx0MTIzNA$w7/Z"),
            "the salt of a password hash is not adapted base64 (character '!')");
  EXPECT_EQ(error("$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0MTIzNA$w7/Z$x"),
            "a password hash has the form $pbkdf2-sha256$ROUNDS$SALT$CHECKSUM");
}

TEST(PasswordHash, AdaptedBase64) {
  for (const std::string_view bytes :
       {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xfb\xff"}) {
    auto back = ab64_decode(ab64_encode(bytes));
    ASSERT_TRUE(back) << bytes;
    EXPECT_EQ(back.value(), bytes);
  }
  EXPECT_EQ(ab64_encode("\xfb\xff"), "./8");  // standard base64 "+/8=": "." for "+", no "="
  EXPECT_FALSE(ab64_decode("abcde"));         // a length no encoding has
}

}  // namespace
}  // namespace tunnel::common
