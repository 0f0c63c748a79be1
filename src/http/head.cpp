#include "http/head.hpp"

#include <algorithm>
#include <array>

#include "http/error_page.hpp"
#include "http/host.hpp"

namespace tunnel::http {
namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn(token) for each comma-separated, trimmed, non-empty element of value.
template <typename Fn>
void for_each_token(std::string_view value, Fn&& fn) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view token = trim(value.substr(0, comma));
    if (!token.empty()) fn(token);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

void append_clean(std::string& out, std::string_view s) {
  const std::size_t at = out.size();
  out.append(s);
  // Parsed heads are clean: three vectorised scans (memchr) that rarely find anything.
  for (const char bad : {'\r', '\n', '\0'}) {
    for (auto i = std::string_view(out).find(bad, at); i != std::string_view::npos;
         i = std::string_view(out).find(bad, i + 1)) {
      out[i] = ' ';
    }
  }
}

void append_version(std::string& out, int major, int minor) {
  out += "HTTP/";
  out += std::to_string(major);
  out += '.';
  out += std::to_string(minor);
}

constexpr std::array<std::string_view, 8> kHopByHop = {
    "Connection",          "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
    "Proxy-Authorization", "TE",         "Trailer",          "Upgrade"};
constexpr std::array<std::string_view, 3> kNeverRemoved = {"Content-Length", "Transfer-Encoding",
                                                           "Host"};

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

const std::string* HeaderFields::find(std::string_view name) const {
  for (const Header& h : headers) {
    if (iequals(h.name, name)) return &h.value;
  }
  return nullptr;
}

void HeaderFields::set(std::string_view name, std::string_view value) {
  auto first = std::find_if(headers.begin(), headers.end(),
                            [&](const Header& h) { return iequals(h.name, name); });
  if (first == headers.end()) {
    append(name, value);
    return;
  }
  first->value = std::string(value);
  headers.erase(std::remove_if(std::next(first), headers.end(),
                               [&](const Header& h) { return iequals(h.name, name); }),
                headers.end());
}

void HeaderFields::append(std::string_view name, std::string_view value) {
  headers.push_back(Header{std::string(name), std::string(value)});
}

void HeaderFields::remove(std::string_view name) {
  std::erase_if(headers, [&](const Header& h) { return iequals(h.name, name); });
}

bool HeaderFields::has_token(std::string_view name, std::string_view token) const {
  bool found = false;
  for (const Header& h : headers) {
    if (!iequals(h.name, name)) continue;
    for_each_token(h.value, [&](std::string_view t) { found = found || iequals(t, token); });
  }
  return found;
}

void HeaderFields::remove_hop_by_hop(bool keep_upgrade) {
  const bool upgrading = keep_upgrade && find("Upgrade") != nullptr;
  std::vector<std::string> named;
  for (const Header& h : headers) {
    if (!iequals(h.name, "Connection")) continue;
    for_each_token(h.value, [&](std::string_view t) { named.emplace_back(t); });
  }
  auto hop_by_hop = [&](const Header& h) {
    for (std::string_view never : kNeverRemoved) {
      if (iequals(h.name, never)) return false;
    }
    if (upgrading && iequals(h.name, "Upgrade")) return false;
    for (std::string_view fixed : kHopByHop) {
      if (iequals(h.name, fixed)) return true;
    }
    for (const std::string& n : named) {
      if (iequals(h.name, n)) return true;
    }
    return false;
  };
  std::erase_if(headers, hop_by_hop);
  if (upgrading) append("Connection", "upgrade");
}

void HeaderFields::serialize_fields(std::string& out) const {
  for (const Header& h : headers) {
    append_clean(out, h.name);
    out += ": ";
    append_clean(out, h.value);
    out += "\r\n";
  }
  out += "\r\n";
}

AbsoluteForm absolute_form_of(std::string_view target) {
  const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  const auto scheme_char = [&](char c) {
    return alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
  };
  AbsoluteForm out;
  // Origin-form ("/x") and asterisk-form ("*") are the common case: one compare.
  if (target.empty() || !alpha(target[0])) return out;
  size_t colon = 1;
  while (colon < target.size() && scheme_char(target[colon])) ++colon;
  if (colon == target.size() || target[colon] != ':') return out;
  out.absolute = true;
  const std::string_view scheme = target.substr(0, colon);
  if (!iequals(scheme, "http") && !iequals(scheme, "https")) {
    out.error = "scheme other than http or https";
    return out;
  }
  std::string_view rest = target.substr(colon + 1);
  if (!rest.starts_with("//")) {
    out.error = "no host in the absolute-form target";
    return out;
  }
  rest.remove_prefix(2);
  const size_t end = std::min(rest.find_first_of("/?#"), rest.size());
  const std::string_view authority = rest.substr(0, end);
  if (authority.find('@') != std::string_view::npos) {
    out.error = "userinfo in the absolute-form target (RFC 9110 4.2.4)";
  } else if (authority.empty()) {
    out.error = "no host in the absolute-form target";
  } else if (!normalize_host(authority)) {
    out.error = "invalid host in the absolute-form target";
  } else {
    out.authority = authority;
    out.path = rest.substr(end);
  }
  return out;
}

AbsoluteForm RequestHead::absolute_form() const {
  if (method == "CONNECT") return {};
  return absolute_form_of(target);
}

std::string RequestHead::serialize() const {
  std::string out;
  serialize_to(out);
  return out;
}

void RequestHead::serialize_to(std::string& out) const {
  out.reserve(out.size() + 64 + headers.size() * 48);
  append_clean(out, method);
  out += ' ';
  append_clean(out, target);
  out += ' ';
  append_version(out, version_major, version_minor);
  out += "\r\n";
  serialize_fields(out);
}

std::string ResponseHead::serialize() const {
  std::string out;
  serialize_to(out);
  return out;
}

void ResponseHead::serialize_to(std::string& out) const {
  out.reserve(out.size() + 64 + headers.size() * 48);
  append_version(out, version_major, version_minor);
  out += ' ';
  out += std::to_string(status);
  out += ' ';
  append_clean(out, reason.empty() ? reason_phrase(status) : std::string_view(reason));
  out += "\r\n";
  serialize_fields(out);
}

}  // namespace tunnel::http
