// Base64 (RFC 4648) for bodies in JSON: the agent's inspector and HAR files, the core's
// recordings.
#pragma once

#include <string>
#include <string_view>

namespace tunnel::common {

// The standard alphabet, with padding.
std::string base64_encode(std::string_view bytes);
// Standard or URL-safe alphabet, padding optional; false on any other character.
bool base64_decode(std::string_view in, std::string& out);

}  // namespace tunnel::common
