#include "core/control/data_dir.hpp"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "core/control/jwt.hpp"

namespace tunnel::core {
namespace {

namespace fs = std::filesystem;

unsigned mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::unique_ptr<X509, decltype(&X509_free)> load_cert(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "r");
  X509* cert = file ? PEM_read_X509(file, nullptr, nullptr, nullptr) : nullptr;
  if (file) std::fclose(file);
  return {cert, &X509_free};
}

class DataDir : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("data_dir_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    dir_ = (root_ / "nested" / "data").string();
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
  std::string dir_;
};

TEST_F(DataDir, FirstStartCreatesEverythingPrivately) {
  auto result = ensure_data_dir(dir_, "tunnel.example.com");
  ASSERT_TRUE(result) << result.error().message;
  const DataDirFiles& files = result.value();
  EXPECT_TRUE(files.dir_created && files.key_created && files.cert_created && files.token_created);
  EXPECT_TRUE(files.warnings.empty());
  EXPECT_EQ(mode_of(dir_), 0700u);
  EXPECT_EQ(mode_of(files.key_path), 0600u);
  EXPECT_EQ(mode_of(files.token_path), 0600u);
  EXPECT_EQ(files.token, read(files.token_path).substr(0, files.token.size()));
  auto raw = base64url_decode(files.token);
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->size(), 32u);
  EXPECT_EQ(files.fingerprint, cert_fingerprint_sha256(files.cert_path));
  EXPECT_EQ(files.fingerprint.size(), 64u);

  auto cert = load_cert(files.cert_path);
  ASSERT_TRUE(cert);
  EXPECT_EQ(fingerprint_sha256(cert.get()), files.fingerprint);
  EXPECT_EQ(X509_check_host(cert.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert.get(), "tunnel.example.com", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "::1", 0), 1);
  char cn[64] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "tunnel-core");
  int days = 0;
  int seconds = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert.get())), 1);
  EXPECT_GE(days, 3640);

  // An agent that trusts exactly this file (ca: <data_dir>/tls.crt) accepts the certificate.
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
  X509_STORE_add_cert(store.get(), cert.get());
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      &X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_SERVER);
  EXPECT_EQ(X509_verify_cert(ctx.get()), 1)
      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

TEST_F(DataDir, SecondStartReusesFiles) {
  auto first = ensure_data_dir(dir_);
  ASSERT_TRUE(first) << first.error().message;
  const auto key_before = read(first.value().key_path);
  auto second = ensure_data_dir(dir_);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_FALSE(second.value().dir_created || second.value().key_created ||
               second.value().cert_created || second.value().token_created);
  EXPECT_EQ(second.value().token, first.value().token);
  EXPECT_EQ(second.value().fingerprint, first.value().fingerprint);
  EXPECT_EQ(read(second.value().key_path), key_before);
}

TEST_F(DataDir, MissingCertIsMadeForTheExistingKey) {
  auto first = ensure_data_dir(dir_);
  ASSERT_TRUE(first);
  fs::remove(first.value().cert_path);
  auto second = ensure_data_dir(dir_);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_TRUE(second.value().cert_created);
  EXPECT_FALSE(second.value().key_created);
  EXPECT_NE(second.value().fingerprint, first.value().fingerprint);
}

TEST_F(DataDir, NoCertificateIsGeneratedWhenOneIsConfigured) {
  auto result = ensure_data_dir(dir_, "", /*generate_cert=*/false);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_FALSE(fs::exists(dir_ + "/tls.crt"));
  EXPECT_FALSE(fs::exists(dir_ + "/tls.key"));
  EXPECT_TRUE(result.value().token_created);
  EXPECT_TRUE(result.value().cert_path.empty());
}

TEST_F(DataDir, WarnsAboutOpenPermissionsAndKeepsUserTokens) {
  fs::create_directories(dir_);
  fs::permissions(dir_, fs::perms(0755));
  std::ofstream(dir_ + "/agent.token") << "  my-own-token\n";
  fs::permissions(dir_ + "/agent.token", fs::perms(0644));
  auto result = ensure_data_dir(dir_);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result.value().token, "my-own-token");
  EXPECT_FALSE(result.value().token_created);
  ASSERT_EQ(result.value().warnings.size(), 2u);
  EXPECT_NE(result.value().warnings[0].find("chmod 700"), std::string::npos);
  EXPECT_NE(result.value().warnings[1].find("agent.token has mode 0644"), std::string::npos);
}

TEST_F(DataDir, ErrorsNameThePath) {
  auto first = ensure_data_dir(dir_);
  ASSERT_TRUE(first);
  fs::remove(first.value().key_path);
  auto orphan = ensure_data_dir(dir_);
  EXPECT_FALSE(orphan);
  EXPECT_NE(orphan.error().message.find(first.value().key_path + " is missing"), std::string::npos);

  fs::create_directories(root_);
  std::ofstream(root_ / "file") << "x";
  auto not_dir = ensure_data_dir((root_ / "file").string());
  EXPECT_FALSE(not_dir);
  EXPECT_NE(not_dir.error().message.find("is not a directory"), std::string::npos);

  auto under_file = ensure_data_dir((root_ / "file" / "sub").string());
  EXPECT_FALSE(under_file);
  EXPECT_NE(under_file.error().message.find((root_ / "file").string()), std::string::npos);

  EXPECT_EQ(cert_fingerprint_sha256((root_ / "missing.crt").string()), "");
}

}  // namespace
}  // namespace tunnel::core
