// The chunked transfer coding (RFC 9112 section 7.1), read tolerantly: for bodies the relay
// kept with their framing (the agent's inspector, the core's recordings).
#pragma once

#include <string>
#include <string_view>

namespace tunnel::http {

// The data of a chunked body (chunk framing removed); a cut body gives what it holds.
std::string dechunk(std::string_view body);

}  // namespace tunnel::http
