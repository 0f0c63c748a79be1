#include "fingerprint.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace tunnel::common {
namespace {

// Made with `openssl req -x509 -newkey ec ...`; the fingerprint is what
// `openssl x509 -noout -fingerprint -sha256` printed for it.
constexpr const char* kCertPem = R"(-----BEGIN CERTIFICATE-----
MIIBijCCATGgAwIBAgIUaKfZIstIR6NYGP4FApY/4DFg0w0wCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQZmluZ2VycHJpbnQtdGVzdDAeFw0yNjExMjUyMDI2MzBaFw0z
NjExMjIyMDI2MzBaMBsxGTAXBgNVBAMMEGZpbmdlcnByaW50LXRlc3QwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQEOZntbsFqPcItXfVAZJ8o2p0Y0GylP4OaGrFr
agInk4v+ye4wb/cArzvtrE18AVZktOu5NMwvCvwhwQxMWKPWo1MwUTAdBgNVHQ4E
FgQUA8ThWVQre8V4owAEv1qGC/PfFCswHwYDVR0jBBgwFoAUA8ThWVQre8V4owAE
v1qGC/PfFCswDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiARJ8dd
1PS8fpugKtSk8lcuYQsQw4EofGc+vRMhTerAUAIgSTqlLig5WWtIAwUWO6jZAGe8
omfPd0oWCjiDsZKECAk=
-----END CERTIFICATE-----
)";
constexpr const char* kOpensslPrinted =
    "5A:77:85:79:DB:E6:43:46:39:62:14:09:34:06:92:E9:D7:B0:2B:AA:B1:88:F4:1E:B0:7E:55:65:B1:95:E8:"
    "D4";
constexpr const char* kExpected =
    "5a778579dbe643463962140934 0692e9d7b02baab188f41eb07e5565b195e8d4";

std::string expected() {
  std::string out = kExpected;
  std::erase(out, ' ');
  return out;
}

class FingerprintFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("fingerprint_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    auto path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(FingerprintFile, MatchesOpensslCli) {
  auto result = cert_file_fingerprint_sha256(write("c.pem", kCertPem));
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result.value(), expected());
  EXPECT_EQ(normalize_fingerprint(kOpensslPrinted), expected());
}

TEST_F(FingerprintFile, ErrorsNameThePath) {
  const auto missing = (dir_ / "missing.pem").string();
  auto result = cert_file_fingerprint_sha256(missing);
  EXPECT_FALSE(result);
  EXPECT_NE(result.error().message.find(missing), std::string::npos);
  EXPECT_NE(result.error().message.find("No such file"), std::string::npos);

  const auto junk = write("junk.pem", "not a certificate\n");
  result = cert_file_fingerprint_sha256(junk);
  EXPECT_FALSE(result);
  EXPECT_NE(result.error().message.find(junk), std::string::npos);
}

TEST(Fingerprint, NullCertificateGivesEmpty) {
  EXPECT_EQ(fingerprint_sha256(nullptr), "");
}

TEST(Fingerprint, Normalize) {
  EXPECT_EQ(normalize_fingerprint("  " + expected() + "\n"), expected());
  EXPECT_FALSE(normalize_fingerprint(expected().substr(2)));
  EXPECT_FALSE(normalize_fingerprint(expected() + "00"));
  EXPECT_FALSE(normalize_fingerprint("zz" + expected().substr(2)));
  EXPECT_FALSE(normalize_fingerprint(""));
}

}  // namespace
}  // namespace tunnel::common
