#include "core/control/data_dir.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/net_address.hpp"
#include "core/control/jwt.hpp"

namespace tunnel::core {
namespace {

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;
using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;

constexpr long kTenYears = 10L * 365 * 24 * 60 * 60;

std::string errno_text(int error) {
  return std::strerror(error);
}

std::string openssl_error() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buffer[256];
  ERR_error_string_n(code, buffer, sizeof buffer);
  return buffer;
}

// Writes `contents` to `path` with mode 0600 unless `path` exists. True when it wrote the file,
// false if another process won the race (`path` exists), else an error naming the path.
common::Result<bool> create_private_file(const std::string& path, std::string_view contents) {
  std::string temp = path + ".tmp-XXXXXX";
  const int fd = ::mkstemp(temp.data());  // mode 0600
  if (fd < 0)
    return common::fail("cannot create a file next to " + path + ": " + errno_text(errno));
  std::size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      ::close(fd);
      ::unlink(temp.c_str());
      return common::fail("cannot write " + temp + ": " + errno_text(error));
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    return common::fail("cannot write " + temp + ": " + errno_text(error));
  }
  const int linked = ::link(temp.c_str(), path.c_str());  // fails if `path` exists
  const int error = errno;
  ::unlink(temp.c_str());
  if (linked == 0) return true;
  if (error == EEXIST) return false;
  return common::fail("cannot create " + path + ": " + errno_text(error));
}

common::Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return common::fail("cannot read " + path + ": " + errno_text(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

void warn_if_open_to_others(const std::string& path, std::vector<std::string>& warnings) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;
  const unsigned mode = st.st_mode & 0777;
  if ((mode & 077) != 0) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", mode);
    warnings.push_back(path + " has mode " + octal + ", readable by other users; run: chmod 600 " +
                       path);
  }
}

std::string key_to_pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return {};
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

std::string cert_to_pem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return {};
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

bool add_extension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A self-signed certificate for `key`.
common::Result<Cert> make_certificate(EVP_PKEY* key, std::string_view extra_hostname) {
  Cert cert(X509_new(), &X509_free);
  unsigned char serial[16];
  if (!cert || RAND_bytes(serial, sizeof serial) != 1) return common::fail(openssl_error());
  serial[0] &= 0x7f;  // a positive serial number
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(serial, sizeof serial, nullptr),
                                                 &BN_free);
  std::string san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  if (!extra_hostname.empty() && extra_hostname != "localhost") {
    san += (common::is_ip_literal(extra_hostname) ? ",IP:" : ",DNS:") + std::string(extra_hostname);
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  const bool ok = bn &&
                  BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) != nullptr &&
                  X509_set_version(cert.get(), X509_VERSION_3) == 1 &&
                  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
                  X509_gmtime_adj(X509_getm_notAfter(cert.get()), kTenYears) != nullptr &&
                  X509_set_pubkey(cert.get(), key) == 1 &&
                  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                             reinterpret_cast<const unsigned char*>("tunnel-core"),
                                             -1, -1, 0) == 1 &&
                  X509_set_issuer_name(cert.get(), name) == 1 &&
                  add_extension(cert.get(), NID_basic_constraints, "critical,CA:FALSE") &&
                  add_extension(cert.get(), NID_key_usage, "critical,digitalSignature") &&
                  add_extension(cert.get(), NID_ext_key_usage, "serverAuth") &&
                  add_extension(cert.get(), NID_subject_key_identifier, "hash") &&
                  add_extension(cert.get(), NID_subject_alt_name, san) &&
                  X509_sign(cert.get(), key, EVP_sha256()) > 0;
  if (!ok) return common::fail("cannot build the certificate: " + openssl_error());
  return cert;
}

// Reads or creates the key.
common::Result<Key> ensure_key(DataDirFiles& files) {
  const auto& path = files.key_path;
  if (!exists(path)) {
    Key key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
    const std::string pem = key ? key_to_pem(key.get()) : std::string();
    if (pem.empty()) return common::fail("cannot generate an EC P-256 key: " + openssl_error());
    auto created = create_private_file(path, pem);
    if (!created) return created.error();
    if (created.value()) {
      files.key_created = true;
      return key;
    }
  }
  warn_if_open_to_others(path, files.warnings);
  auto pem = read_file(path);
  if (!pem) return pem.error();
  const std::string& text = pem.value();
  Bio bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), &BIO_free);
  Key key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  if (!key) return common::fail(path + ": not a PEM private key (" + openssl_error() + ")");
  return key;
}

common::Status ensure_cert(DataDirFiles& files, EVP_PKEY* key, std::string_view extra_hostname) {
  const auto& path = files.cert_path;
  if (!exists(path)) {
    auto made = make_certificate(key, extra_hostname);
    if (!made) return made.error();
    const Cert& cert = made.value();
    auto created = create_private_file(path, cert_to_pem(cert.get()));
    if (!created) return created.error();
    if (created.value()) {
      ::chmod(path.c_str(), 0644);  // a certificate is public; agents on this host read it
      files.cert_created = true;
      files.fingerprint = common::fingerprint_sha256(cert.get());
      return common::success();
    }
  }
  auto pem = read_file(path);
  if (!pem) return pem.error();
  const std::string& text = pem.value();
  Bio bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), &BIO_free);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!cert) return common::fail(path + ": not a PEM certificate (" + openssl_error() + ")");
  if (X509_check_private_key(cert.get(), key) != 1) {
    ERR_clear_error();
    return common::fail(path + " does not belong to the key in " + files.key_path +
                        "; remove both to generate a new pair");
  }
  files.fingerprint = common::fingerprint_sha256(cert.get());
  return common::success();
}

common::Status ensure_token(DataDirFiles& files) {
  const auto& path = files.token_path;
  if (!exists(path)) {
    unsigned char random[32];
    if (RAND_bytes(random, sizeof random) != 1) {
      return common::fail("cannot generate a token: " + openssl_error());
    }
    std::string token =
        base64url_encode(std::string_view(reinterpret_cast<const char*>(random), sizeof random));
    auto created = create_private_file(path, token + "\n");
    if (!created) return created.error();
    if (created.value()) {
      files.token = std::move(token);
      files.token_created = true;
      return common::success();
    }
  }
  warn_if_open_to_others(path, files.warnings);
  auto read = read_file(path);
  if (!read) return read.error();
  const std::string& text = read.value();
  const auto begin = text.find_first_not_of(" \t\r\n");
  const auto end = text.find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) {
    return common::fail(path + " is empty; remove it to generate a new token");
  }
  files.token = text.substr(begin, end - begin + 1);
  return common::success();
}

}  // namespace

common::Result<DataDirFiles> ensure_data_dir(const std::string& dir,
                                             std::string_view extra_hostname, bool generate_cert) {
  DataDirFiles files;
  files.dir = dir;
  const std::filesystem::path base(dir);
  files.cert_path = (base / "tls.crt").string();
  files.key_path = (base / "tls.key").string();
  files.token_path = (base / "agent.token").string();

  if (base.has_parent_path() && !base.parent_path().empty()) {
    std::error_code ec;
    std::filesystem::create_directories(base.parent_path(), ec);
    if (ec) {
      return common::fail("cannot create " + base.parent_path().string() + ": " + ec.message());
    }
  }
  if (::mkdir(dir.c_str(), 0700) == 0) {
    files.dir_created = true;
  } else if (errno != EEXIST) {
    return common::fail("cannot create " + dir + ": " + errno_text(errno));
  } else {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return common::fail(dir + " exists and is not a directory");
    }
    if ((st.st_mode & 077) != 0) {
      char octal[8];
      std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(st.st_mode & 0777));
      files.warnings.push_back(dir + " has mode " + octal + "; run: chmod 700 " + dir);
    }
  }

  if (generate_cert && exists(files.cert_path) && !exists(files.key_path)) {
    return common::fail(files.cert_path + " exists but " + files.key_path +
                        " is missing; restore the key, or remove " + files.cert_path +
                        " to generate a new pair");
  }
  if (!generate_cert) {
    // The operator configured a certificate: generating another one here would leave a
    // tls.crt that local agents pin by default although the core never presents it.
    files.cert_path.clear();
    files.key_path.clear();
    if (auto token = ensure_token(files); !token) return token.error();
    return files;
  }
  auto key = ensure_key(files);
  if (!key) return key.error();
  if (auto cert = ensure_cert(files, key.value().get(), extra_hostname); !cert) {
    return cert.error();
  }
  if (auto token = ensure_token(files); !token) return token.error();
  return files;
}

std::string cert_fingerprint_sha256(const std::string& pem_path) {
  auto result = common::cert_file_fingerprint_sha256(pem_path);
  return result ? result.value() : std::string();
}

common::Status write_private_file(const std::string& path, std::string_view contents) {
  auto created = create_private_file(path, contents);
  if (!created) return created.error();
  if (!created.value()) return common::fail(path + ": exists already");
  return common::success();
}

}  // namespace tunnel::core
