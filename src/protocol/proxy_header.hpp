// PROXY protocol headers (HAProxy's spec, versions 1 and 2) that an agent sends to its local app
// at the start of a connection, so the app learns the public client's address. Pure code.
//
// v1 is one text line: "PROXY TCP4 <src ip> <dst ip> <src port> <dst port>\r\n" (TCP6 for IPv6,
// "PROXY UNKNOWN\r\n" when an address is not known). v2 is binary: a 12-byte signature, version
// and command 0x21 (v2, PROXY), family 0x11 (TCP over IPv4) or 0x21 (TCP over IPv6), a big-endian
// length, then the addresses and ports; family 0x00 (UNSPEC, no addresses) when unknown.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tunnel::protocol {

enum class ProxyProtocol { kNone, kV1, kV2 };

// "v1", "v2", "" for kNone.
std::string_view proxy_protocol_name(ProxyProtocol version);

// The header for a TCP connection from `source` to `destination`, both "ip:port" ("[v6]:port"
// for IPv6). IPv4-mapped IPv6 addresses are written as IPv4; when one side is IPv4 and the other
// IPv6, the IPv4 one is written as IPv4-mapped IPv6. An address that does not parse gives the
// UNKNOWN (v1) or UNSPEC (v2) form, which apps must accept. "" for kNone.
std::string proxy_header(ProxyProtocol version, std::string_view source,
                         std::string_view destination);

// Where a public connection came from and which public address it reached, as the core tells
// the agent: tcp OPEN_STREAM payloads are "<client> <server>", and http tunnels that asked for
// PROXY headers get an address line "<client> <server>\n" before the request head. Older cores
// send only "<client>"; `server` is then "".
struct ConnectionAddresses {
  std::string client;  // "ip:port"
  std::string server;  // "ip:port" of the core's public listener
};
std::string format_addresses(std::string_view client, std::string_view server);
ConnectionAddresses parse_addresses(std::string_view text);
// Splits an http OPEN_STREAM payload that starts with an address line; the rest (the request
// head) is returned. Without a '\n' the whole payload is the head and `out` stays empty.
std::string_view take_address_line(std::string_view payload, ConnectionAddresses& out);

// The signature that starts every v2 header.
inline constexpr std::string_view kProxyV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

}  // namespace tunnel::protocol
