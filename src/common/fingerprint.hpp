// SHA-256 certificate fingerprints, as the agent pins them and the core prints them.
//
// A fingerprint is the SHA-256 of the certificate's DER encoding, written as 64 lower-case hex
// digits without colons. Users may paste them with colons or in upper case (the form
// `openssl x509 -fingerprint -sha256` prints); normalize_fingerprint() accepts both.
#pragma once

#include <openssl/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace tunnel::common {

// Fingerprint of a certificate in memory (e.g. the peer's, in a TLS verify callback).
// Returns "" if the certificate cannot be encoded.
std::string fingerprint_sha256(X509* cert);

// Fingerprint of the first certificate in a PEM file.
// The error names the path and the reason.
Result<std::string> cert_file_fingerprint_sha256(const std::string& pem_path);

// The canonical form (64 lower-case hex digits) of a user-written fingerprint, or nullopt if
// it is not a SHA-256 fingerprint. Colons and surrounding spaces are ignored.
std::optional<std::string> normalize_fingerprint(std::string_view text);

}  // namespace tunnel::common
