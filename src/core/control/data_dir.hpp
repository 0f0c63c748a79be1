// The core's data directory: its TLS identity for the agent listener and a local agent token.
//
// On first start ensure_data_dir() creates the directory (0700) and whatever is missing:
//   tls.key      EC P-256 private key, PEM, 0600
//   tls.crt      self-signed X.509 for it, 10 years, CN tunnel-core,
//                SAN DNS:localhost, IP:127.0.0.1, IP:::1 (+ an optional extra hostname)
//   agent.token  32 random bytes, base64url, 0600 (an agent on this machine reads it)
// Existing files are reused, never overwritten; files are written to a temporary name and
// linked into place, so two cores starting at once cannot clobber each other.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fingerprint.hpp"

namespace tunnel::core {

struct DataDirFiles {
  std::string dir;
  std::string cert_path;    // <dir>/tls.crt
  std::string key_path;     // <dir>/tls.key
  std::string token_path;   // <dir>/agent.token
  std::string token;        // contents of agent.token, whitespace trimmed
  std::string fingerprint;  // SHA-256 of tls.crt (see common/fingerprint.hpp)
  bool dir_created = false;
  bool key_created = false;
  bool cert_created = false;
  bool token_created = false;
  std::vector<std::string> warnings;  // e.g. a key readable by others; worth logging
};

// With generate_cert false (a certificate is configured), only agent.token is ensured and the
// cert/key paths are left empty.
// The error names the path and the errno text.
common::Result<DataDirFiles> ensure_data_dir(const std::string& dir,
                                             std::string_view extra_hostname = "",
                                             bool generate_cert = true);

// Creates `path` (mode 0600, written to a temporary name, synced and linked into place) with
// `contents`; refuses when it exists. The error names the path.
common::Status write_private_file(const std::string& path, std::string_view contents);

// Fingerprint of the certificate in a PEM file: 64 lower-case hex digits, no colons; "" if
// the file cannot be read. common::cert_file_fingerprint_sha256() also says why.
std::string cert_fingerprint_sha256(const std::string& pem_path);

using common::fingerprint_sha256;

}  // namespace tunnel::core
