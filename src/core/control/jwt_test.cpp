#include "core/control/jwt.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace tunnel::core {
namespace {

// Vectors made with PyJWT 2.6: jwt.encode(payload, kSecret, algorithm=...).
constexpr const char* kSecret = "0123456789abcdef0123456789abcdef-test-secret";
constexpr const char* kDefault =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2NvdW50X2lkIjoiZGVmYXVsdCIsImV4cCI6MjAwMDAwMDAwMH0."
    "_ikY15bYAWy0fiPxy4tOdb1vtfA2Yhou-y7nMHshkmw";
constexpr const char* kWithAgent =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2NvdW50X2lkIjoidGVhbS1hIiwiYWdlbnRfaWQiOiJsYXB0b3At"
    "MSIsImV4cCI6MjAwMDAwMDAwMH0.X0sCtvTEOH_7abHUHGh4r3EYCjPqSdN5jQC5XYWfYWg";
constexpr const char* kExpiredAt1000 =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2NvdW50X2lkIjoiZGVmYXVsdCIsImV4cCI6MTAwMH0."
    "TIQKEuoj3ILSV4GyTtUOZVMm-nu1J4jegi-5ux7w000";
constexpr const char* kOtherSecret =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2NvdW50X2lkIjoiZGVmYXVsdCIsImV4cCI6MjAwMDAwMDAwMH0."
    "zvvBTo-v9M87V7mzQuuLKEuvKNGZ129ig98JP8sSGmc";
constexpr const char* kHs512 =
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJhY2NvdW50X2lkIjoiZGVmYXVsdCIsImV4cCI6MjAwMDAwMDAwMH0."
    "qXRiLs1I0RDnB05QchbunHeCP_Lf8lEZnrv_Q-KH4Gk1Bjq0zw05_pgurmxh5v2jDcvfCClVNDkVV_DDjcvFjg";
constexpr const char* kAlgNone =
    "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJhY2NvdW50X2lkIjoiZGVmYXVsdCIsImV4cCI6MjAwMDAwMDAwMH0.";
constexpr std::int64_t kNow = 1'900'000'000;

TEST(Jwt, SignMatchesPyJwt) {
  EXPECT_EQ(sign_hs256(R"({"account_id":"default","exp":2000000000})", kSecret), kDefault);
  EXPECT_EQ(
      sign_hs256(R"({"account_id":"team-a","agent_id":"laptop-1","exp":2000000000})", kSecret),
      kWithAgent);
}

TEST(Jwt, VerifiesPyJwtTokens) {
  auto result = verify_hs256(kWithAgent, kSecret, kNow);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result.value().account_id, "team-a");
  EXPECT_EQ(result.value().agent_id, "laptop-1");
  EXPECT_EQ(result.value().exp, 2'000'000'000);
}

TEST(Jwt, ExpiryHasThirtySecondsLeeway) {
  EXPECT_TRUE(verify_hs256(kExpiredAt1000, kSecret, 1000 + 30));
  auto late = verify_hs256(kExpiredAt1000, kSecret, 1000 + 31);
  EXPECT_FALSE(late);
  EXPECT_EQ(late.error().message, "JWT has expired");
}

TEST(Jwt, RejectsWrongSignatureAndAlgorithms) {
  EXPECT_EQ(verify_hs256(kOtherSecret, kSecret, kNow).error().message, "invalid JWT signature");
  EXPECT_NE(verify_hs256(kHs512, kSecret, kNow).error().message.find("HS512 is not accepted"),
            std::string::npos);
  EXPECT_TRUE(looks_like_jwt(kAlgNone));
  EXPECT_NE(verify_hs256(kAlgNone, kSecret, kNow).error().message.find("none is not accepted"),
            std::string::npos);
  std::string tampered = kDefault;
  tampered[tampered.size() - 2] = tampered[tampered.size() - 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(verify_hs256(tampered, kSecret, kNow));
  EXPECT_FALSE(verify_hs256(kDefault, "", kNow));
}

TEST(Jwt, RequiresClaims) {
  EXPECT_EQ(
      verify_hs256(sign_hs256(R"({"account_id":"a"})", kSecret), kSecret, kNow).error().message,
      "JWT has no numeric \"exp\" claim");
  EXPECT_EQ(
      verify_hs256(sign_hs256(R"({"exp":2000000000})", kSecret), kSecret, kNow).error().message,
      "JWT has no \"account_id\" claim");
  EXPECT_EQ(
      verify_hs256(sign_hs256(R"({"account_id":"a","exp":2000000000,"nbf":1950000000})", kSecret),
                   kSecret, kNow)
          .error()
          .message,
      "JWT is not valid yet (nbf)");
  EXPECT_FALSE(verify_hs256(sign_hs256("[1,2]", kSecret), kSecret, kNow));
  EXPECT_FALSE(verify_hs256(sign_hs256("not json", kSecret), kSecret, kNow));
}

// A token with any header text, signed with kSecret: sign_hs256 only makes the standard header.
std::string sign_with_header(std::string_view header, std::string_view claims) {
  const std::string input = base64url_encode(header) + "." + base64url_encode(claims);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), kSecret, static_cast<int>(std::string_view(kSecret).size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &size);
  return input + "." + base64url_encode(std::string_view(reinterpret_cast<char*>(mac), size));
}

// The error, or "" when the token is accepted.
std::string verify_error(std::string_view claims, const JwtExpectations& expect = {}) {
  auto result = verify_hs256(sign_hs256(claims, kSecret), kSecret, kNow, expect);
  return result ? std::string() : result.error().message;
}

TEST(Jwt, RefusesCriticalHeaderExtensions) {
  constexpr std::string_view kClaims = R"({"account_id":"a","exp":2000000000})";
  ASSERT_TRUE(verify_hs256(sign_with_header(R"({"alg":"HS256"})", kClaims), kSecret, kNow));
  const auto result = verify_hs256(
      sign_with_header(R"({"alg":"HS256","crit":["exp"],"exp":1})", kClaims), kSecret, kNow);
  EXPECT_FALSE(result);
  EXPECT_EQ(result.error().message, "JWT header \"crit\" names unsupported extensions");
}

TEST(Jwt, RefusesDuplicateKeys) {
  // nlohmann::json keeps the last value: without the check this token names account "b".
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":2000000000,"account_id":"b"})"),
            "malformed JWT: claims repeat \"account_id\"");
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":1000,"exp":2000000000})"),
            "malformed JWT: claims repeat \"exp\"");
  const auto header = verify_hs256(
      sign_with_header(R"({"alg":"none","alg":"HS256"})", R"({"account_id":"a","exp":2000000000})"),
      kSecret, kNow);
  EXPECT_EQ(header.error().message, "malformed JWT: header repeats \"alg\"");
  // The same key in two different objects is fine.
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":2000000000,"x":{"exp":1}})"), "");
}

TEST(Jwt, RangeChecksTimeClaims) {
  for (const char* exp : {"1e300", "-1", "18446744073709551615", "9223372036854775807",
                          "2000000000.5", "\"2000000000\"", "null", "253402300800"}) {
    EXPECT_EQ(verify_error(std::string(R"({"account_id":"a","exp":)") + exp + "}"),
              "JWT \"exp\" is not whole unix seconds in range")
        << exp;
  }
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":2000000000,"nbf":-5})"),
            "JWT \"nbf\" is not whole unix seconds in range");
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":2000000000,"iat":1e30})"),
            "JWT \"iat\" is not whole unix seconds in range");
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":2000000000,"iat":1950000000})"),
            "JWT is issued in the future (iat)");
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":253402300799,"iat":1800000000})"), "");
}

TEST(Jwt, ChecksIssuerAndAudienceWhenConfigured) {
  JwtExpectations expect;
  expect.issuer = "https://idp.example";
  expect.audience = "tunnel-core";
  constexpr std::string_view kGood =
      R"({"account_id":"a","exp":2000000000,"iss":"https://idp.example","aud":"tunnel-core"})";
  EXPECT_EQ(verify_error(kGood, expect), "");
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":2000000000,"iss":"https://idp.example",)"
                         R"("aud":["other","tunnel-core"]})",
                         expect),
            "");
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":2000000000,"aud":"tunnel-core"})", expect),
            "JWT \"iss\" is not the configured issuer");
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":2000000000,"iss":"https://idp.example",)"
                         R"("aud":["other"]})",
                         expect),
            "JWT \"aud\" does not name this server's audience");
  EXPECT_EQ(
      verify_error(R"({"account_id":"a","exp":2000000000,"iss":"https://idp.example"})", expect),
      "JWT \"aud\" does not name this server's audience");
  // Unconfigured: neither is required.
  EXPECT_EQ(verify_error(R"({"account_id":"a","exp":2000000000,"aud":"x"})"), "");
}

TEST(Jwt, ShapeDetection) {
  EXPECT_TRUE(looks_like_jwt(kDefault));
  EXPECT_FALSE(looks_like_jwt("plain-token"));
  EXPECT_FALSE(looks_like_jwt("a.b"));
  EXPECT_FALSE(looks_like_jwt("a.b.c.d"));
  EXPECT_FALSE(looks_like_jwt(".b.c"));
  EXPECT_FALSE(looks_like_jwt("a b.c.d"));
}

TEST(Base64Url, RoundTripsAndIsStrict) {
  for (std::string_view text : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe"}) {
    auto decoded = base64url_decode(base64url_encode(text));
    ASSERT_TRUE(decoded);
    EXPECT_EQ(*decoded, text);
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  EXPECT_FALSE(base64url_decode("Zm9v=="));  // padding
  EXPECT_FALSE(base64url_decode("Zm+v"));    // standard alphabet
  EXPECT_FALSE(base64url_decode("Z"));       // impossible length
  EXPECT_FALSE(base64url_decode("Zm9="));
  EXPECT_FALSE(base64url_decode("Zh"));  // non-zero leftover bits
}

}  // namespace
}  // namespace tunnel::core
