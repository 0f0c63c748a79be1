// Host/port addresses from config files and flags, and DNS name syntax checks.
//
// Accepted forms: ":8443" (listen on every interface), "127.0.0.1:9000", "[::1]:80",
// "localhost:3000", "example.com" (needs a default port) and "3000" (a bare port; the host is
// the caller's default). IPv6 literals need brackets when a port follows.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace tunnel::common {

struct NetAddress {
  std::string host;  // without brackets; "" means every interface (listen addresses only)
  std::uint16_t port = 0;

  // "host:port", bracketing IPv6 literals; ":port" when host is empty.
  std::string to_string() const;
  bool operator==(const NetAddress&) const = default;
};

// The error quotes the text and says what is wrong.

// An address to bind. The host may be empty (":8443" or "8443"); port 0 asks the OS for any.
Result<NetAddress> parse_listen_address(std::string_view text);

// An address to connect to. A bare port gets `default_host`; a bare host gets `default_port`
// (0 = a port is required). The port must be 1-65535.
Result<NetAddress> parse_dial_address(std::string_view text, std::string_view default_host,
                                      std::uint16_t default_port = 0);

// One DNS label: 1-63 of [A-Za-z0-9-], not starting or ending with '-'.
bool is_valid_dns_label(std::string_view label);

// A DNS hostname: dot-separated valid labels, at most 253 characters, an optional trailing dot.
bool is_valid_hostname(std::string_view name);

// Dotted-quad IPv4 or an IPv6 literal (no brackets).
bool is_ip_literal(std::string_view text);

// Lower-case ASCII copy (hostnames compare case-insensitively).
std::string ascii_lower(std::string_view text);

}  // namespace tunnel::common
