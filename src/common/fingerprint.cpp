#include "fingerprint.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace tunnel::common {
namespace {

std::string to_hex(const unsigned char* data, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 0x0f]);
  }
  return out;
}

}  // namespace

std::string fingerprint_sha256(X509* cert) {
  if (cert == nullptr) return {};
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (X509_digest(cert, EVP_sha256(), digest, &size) != 1) return {};
  return to_hex(digest, size);
}

Result<std::string> cert_file_fingerprint_sha256(const std::string& pem_path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(pem_path.c_str(), "rb"), &std::fclose);
  if (!file) {
    return fail(pem_path + ": " + std::strerror(errno));
  }
  std::unique_ptr<X509, void (*)(X509*)> cert(PEM_read_X509(file.get(), nullptr, nullptr, nullptr),
                                              &X509_free);
  if (!cert) {
    ERR_clear_error();
    return fail(pem_path + ": no PEM certificate found");
  }
  auto fingerprint = fingerprint_sha256(cert.get());
  if (fingerprint.empty()) {
    return fail(pem_path + ": cannot encode the certificate");
  }
  return fingerprint;
}

std::optional<std::string> normalize_fingerprint(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\n')) {
    text.remove_suffix(1);
  }
  std::string out;
  for (char c : text) {
    if (c == ':') continue;
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
      out.push_back(c);
    } else if (c >= 'A' && c <= 'F') {
      out.push_back(static_cast<char>(c - 'A' + 'a'));
    } else {
      return std::nullopt;
    }
  }
  if (out.size() != 64) return std::nullopt;
  return out;
}

}  // namespace tunnel::common
