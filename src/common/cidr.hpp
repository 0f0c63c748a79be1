// IP address ranges in CIDR notation ("10.0.0.0/8", "2001:db8::/32", or one address, "::1"),
// for lists of trusted proxies now and allow/deny lists later.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace tunnel::common {

// An IP address parsed once, to check it against many ranges (allow and deny lists).
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};  // IPv4 (and IPv4-mapped IPv6) in the last 4 bytes
  bool v4 = false;
  // An address without port or brackets; nullopt for anything else.
  static std::optional<IpAddress> parse(std::string_view text);
};

class Cidr {
 public:
  // Parses "ADDRESS/BITS" or a bare address (all bits). An IPv4 range also matches
  // IPv4-mapped IPv6 addresses ("::ffff:10.1.2.3"), as a dual-stack listener reports them.
  // The error names the problem ("\"10.0.0.0/33\": prefix length above 32").
  static Result<Cidr> parse(std::string_view text);

  // True if `ip` (an address without port or brackets) is in the range; false for text that is
  // not an address.
  bool contains(std::string_view ip) const;
  bool contains(const IpAddress& ip) const;

  std::string to_string() const;

 private:
  std::array<std::uint8_t, 16> bytes_{};  // the network, IPv4 in the last 4 bytes
  int bits_ = 0;                          // prefix length
  bool v4_ = false;
};

}  // namespace tunnel::common
