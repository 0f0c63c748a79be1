#include "http/host.hpp"

namespace tunnel::http {
namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(char c) {
  return is_digit(c) || (lower(c) >= 'a' && lower(c) <= 'f');
}

bool valid_port(std::string_view port) {
  if (port.empty() || port.size() > 5) return false;
  unsigned value = 0;
  for (char c : port) {
    if (!is_digit(c)) return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value >= 1 && value <= 65535;
}

// The text between the brackets: hex groups, colons, and an optional dotted IPv4 tail.
bool valid_ipv6(std::string_view addr) {
  if (addr.size() < 2 || addr.size() > 45) return false;
  int colons = 0;
  int group_len = 0;
  bool seen_double = false;
  bool dotted = false;
  for (size_t i = 0; i < addr.size(); ++i) {
    char c = addr[i];
    if (c == ':') {
      ++colons;
      if (dotted) return false;
      if (i + 1 < addr.size() && addr[i + 1] == ':') {
        if (seen_double) return false;
        seen_double = true;
      }
      group_len = 0;
    } else if (c == '.') {
      dotted = true;  // checked loosely: digits and dots only after the last colon
    } else if (is_hex(c)) {
      if (dotted && !is_digit(c)) return false;
      if (!dotted && ++group_len > 4) return false;
    } else {
      return false;
    }
  }
  if (colons < 2 || colons > 7) return false;
  if (!seen_double && colons != 7 && !(dotted && colons == 6)) return false;
  if (addr.front() == ':' && addr.substr(0, 2) != "::") return false;
  if (addr.back() == ':' && addr.substr(addr.size() - 2) != "::") return false;
  return true;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const char l = lower(c);
    if (!((l >= 'a' && l <= 'z') || is_digit(c) || c == '-' || c == '_')) return false;
    if (++label > 63) return false;
  }
  return label != 0;
}

}  // namespace

std::optional<std::string> normalize_host(std::string_view host) {
  std::string_view name;
  std::string_view port;
  bool has_port = false;
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    if (!valid_ipv6(host.substr(1, close - 1))) return std::nullopt;
    name = host.substr(0, close + 1);
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      has_port = true;
    }
  } else {
    const size_t colon = host.find(':');
    name = host.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = host.substr(colon + 1);
      has_port = true;
    }
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (!valid_name(name)) return std::nullopt;
  }
  if (has_port && !valid_port(port)) return std::nullopt;
  std::string out(name);
  for (char& c : out) c = lower(c);
  return out;
}

}  // namespace tunnel::http
