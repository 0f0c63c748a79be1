// Host header handling: the router matches tunnels by the normalized host.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tunnel::http {

// Normalizes a Host header value (or URI authority without userinfo) for routing:
// lowercase, port removed, one trailing dot removed; an IPv6 literal keeps its brackets
// ("[::1]:8080" -> "[::1]"). Returns nullopt for anything that is not a valid host:
// empty, whitespace or other characters outside letters, digits, '-', '_' and '.', empty or
// over-long labels (> 63) or names (> 253), a port that is empty, non-numeric, 0 or > 65535,
// or a malformed IPv6 literal (zone ids are rejected).
std::optional<std::string> normalize_host(std::string_view host);

}  // namespace tunnel::http
