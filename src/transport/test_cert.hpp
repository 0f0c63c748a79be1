// Test support: a throwaway self-signed certificate for TLS tests. Test-only.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace tunnel::transport::test {

// A throwaway self-signed certificate made with the openssl CLI, removed with the object.
class TempCert {
 public:
  TempCert() {
    std::string templ = (std::filesystem::temp_directory_path() / "tunnel-test-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) return;
    dir_ = templ;
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
        "-nodes -days 1 -subj /CN=localhost -keyout " +
        key() + " -out " + cert() + " >/dev/null 2>&1";
    ok_ = std::system(cmd.c_str()) == 0;
  }
  ~TempCert() {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }
  bool ok() const { return ok_; }
  std::string cert() const { return (dir_ / "cert.pem").string(); }
  std::string key() const { return (dir_ / "key.pem").string(); }

 private:
  std::filesystem::path dir_;
  bool ok_ = false;
};

}  // namespace tunnel::transport::test
