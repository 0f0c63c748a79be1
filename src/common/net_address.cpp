#include "net_address.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace tunnel::common {
namespace {

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

bool all_digits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// The port part of `whole`.
Result<std::uint16_t> parse_port(std::string_view text, std::string_view whole, bool allow_zero) {
  if (text.empty()) return fail("missing port in address " + quoted(whole));
  if (!all_digits(text)) {
    return fail("invalid port " + quoted(text) + " in address " + quoted(whole));
  }
  unsigned long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > 65535) {
    return fail("port " + std::string(text) + " out of range (1-65535) in address " +
                quoted(whole));
  }
  if (value == 0 && !allow_zero) {
    return fail("port 0 is not allowed in address " + quoted(whole) + " (use 1-65535)");
  }
  return static_cast<std::uint16_t>(value);
}

struct Options {
  bool listen = false;
  std::string_view default_host;
  std::uint16_t default_port = 0;
};

Result<NetAddress> parse(std::string_view text, const Options& options) {
  if (text.empty()) {
    return fail("empty address");
  }
  NetAddress address;
  std::string_view host;
  std::string_view port;
  bool has_port = true;
  if (all_digits(text)) {
    port = text;
    host = options.default_host;
  } else if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      return fail("missing ']' in address " + quoted(text));
    }
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty()) {
      has_port = false;
    } else if (rest.front() != ':') {
      return fail("unexpected " + quoted(rest) + " after ']' in address " + quoted(text));
    } else {
      port = rest.substr(1);
    }
    in6_addr ignored{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &ignored) != 1) {
      return fail("invalid IPv6 address " + quoted(host) + " in " + quoted(text));
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon != std::string_view::npos && text.find(':') != colon) {
      return fail("IPv6 address " + quoted(text) + " needs brackets, e.g. \"[::1]:8080\"");
    }
    if (colon == std::string_view::npos) {
      host = text;
      has_port = false;
    } else {
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
    }
    if (!host.empty() && !is_ip_literal(host) && !is_valid_hostname(host)) {
      return fail("invalid host " + quoted(host) + " in address " + quoted(text));
    }
  }
  if (!has_port) {
    if (options.default_port == 0) {
      return fail("missing port in address " + quoted(text) + " (write HOST:PORT)");
    }
    address.port = options.default_port;
  } else {
    auto parsed_port = parse_port(port, text, options.listen);
    if (!parsed_port) return parsed_port.error();
    address.port = parsed_port.value();
  }
  if (host.empty() && !options.listen) {
    if (options.default_host.empty()) {
      return fail("missing host in address " + quoted(text));
    }
    host = options.default_host;
  }
  address.host = std::string(host);
  return address;
}

}  // namespace

std::string NetAddress::to_string() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<NetAddress> parse_listen_address(std::string_view text) {
  return parse(text, Options{.listen = true, .default_host = "", .default_port = 0});
}

Result<NetAddress> parse_dial_address(std::string_view text, std::string_view default_host,
                                      std::uint16_t default_port) {
  return parse(
      text, Options{.listen = false, .default_host = default_host, .default_port = default_port});
}

bool is_valid_dns_label(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  for (char c : label) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool is_valid_hostname(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    const auto dot = name.find('.', start);
    const auto label = name.substr(start, dot == std::string_view::npos ? name.npos : dot - start);
    if (!is_valid_dns_label(label)) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  // An all-numeric last label would read as an IP address ("1.2.3.4" is not a hostname).
  const auto last_dot = name.rfind('.');
  return !all_digits(last_dot == std::string_view::npos ? name : name.substr(last_dot + 1));
}

bool is_ip_literal(std::string_view text) {
  const std::string copy(text);
  in_addr v4{};
  in6_addr v6{};
  return inet_pton(AF_INET, copy.c_str(), &v4) == 1 || inet_pton(AF_INET6, copy.c_str(), &v6) == 1;
}

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace tunnel::common
