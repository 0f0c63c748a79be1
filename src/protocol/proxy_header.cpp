#include "protocol/proxy_header.hpp"

#include <boost/asio/ip/address.hpp>
#include <charconv>

namespace tunnel::protocol {
namespace {

namespace ip = boost::asio::ip;

struct Endpoint {
  ip::address address;
  std::uint16_t port = 0;
};

// "1.2.3.4:80" or "[::1]:80"; IPv4-mapped IPv6 comes back as IPv4.
std::optional<Endpoint> parse_endpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 2 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return std::nullopt;
  }
  boost::system::error_code error;
  ip::address address = ip::make_address(std::string(host), error);
  if (error) return std::nullopt;
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = ip::make_address_v4(ip::v4_mapped, address.to_v6());
  } else if (address.is_v6() && address.to_v6().scope_id() != 0) {
    auto v6 = address.to_v6();  // PROXY headers carry no scope ("%eth0")
    v6.scope_id(0);
    address = v6;
  }
  return Endpoint{address, static_cast<std::uint16_t>(port)};
}

ip::address_v6 as_v6(const ip::address& a) {
  return a.is_v6() ? a.to_v6() : ip::make_address_v6(ip::v4_mapped, a.to_v4());
}

void put16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}

template <typename Bytes>
void put_bytes(std::string& out, const Bytes& bytes) {
  out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace

std::string format_addresses(std::string_view client, std::string_view server) {
  std::string out(client);
  out += ' ';
  out += server;
  return out;
}

ConnectionAddresses parse_addresses(std::string_view text) {
  ConnectionAddresses out;
  const auto space = text.find(' ');
  out.client = std::string(text.substr(0, space));
  if (space != std::string_view::npos) out.server = std::string(text.substr(space + 1));
  return out;
}

std::string_view take_address_line(std::string_view payload, ConnectionAddresses& out) {
  const auto newline = payload.find('\n');
  if (newline == std::string_view::npos) return payload;
  out = parse_addresses(payload.substr(0, newline));
  return payload.substr(newline + 1);
}

std::string_view proxy_protocol_name(ProxyProtocol version) {
  switch (version) {
    case ProxyProtocol::kV1:
      return "v1";
    case ProxyProtocol::kV2:
      return "v2";
    case ProxyProtocol::kNone:
      break;
  }
  return "";
}

std::string proxy_header(ProxyProtocol version, std::string_view source,
                         std::string_view destination) {
  if (version == ProxyProtocol::kNone) return {};
  auto src = parse_endpoint(source);
  auto dst = parse_endpoint(destination);
  const bool known = src && dst;
  const bool v4 = known && src->address.is_v4() && dst->address.is_v4();

  if (version == ProxyProtocol::kV1) {
    if (!known) return "PROXY UNKNOWN\r\n";
    const auto text = [v4](const ip::address& a) {
      return v4 ? a.to_v4().to_string() : as_v6(a).to_string();
    };
    return std::string("PROXY ") + (v4 ? "TCP4 " : "TCP6 ") + text(src->address) + " " +
           text(dst->address) + " " + std::to_string(src->port) + " " + std::to_string(dst->port) +
           "\r\n";
  }

  std::string out(kProxyV2Signature);
  out.push_back('\x21');  // version 2, command PROXY
  if (!known) {
    out.push_back('\x00');  // UNSPEC: the receiver uses the connection's own addresses
    put16(out, 0);
    return out;
  }
  if (v4) {
    out.push_back('\x11');  // TCP over IPv4
    put16(out, 12);
    put_bytes(out, src->address.to_v4().to_bytes());
    put_bytes(out, dst->address.to_v4().to_bytes());
  } else {
    out.push_back('\x21');  // TCP over IPv6
    put16(out, 36);
    put_bytes(out, as_v6(src->address).to_bytes());
    put_bytes(out, as_v6(dst->address).to_bytes());
  }
  put16(out, src->port);
  put16(out, dst->port);
  return out;
}

}  // namespace tunnel::protocol
