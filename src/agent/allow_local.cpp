#include "agent/allow_local.hpp"

#include <charconv>

namespace tunnel::agent {
namespace {

std::optional<std::uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

}  // namespace

common::Result<LocalRule> parse_local_rule(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return common::fail(quoted + ": expected HOST:PORTS, e.g. 127.0.0.1:3000 or localhost:*");
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view ports = text.substr(colon + 1);
  LocalRule rule;
  rule.text = std::string(text);
  if (ports != "*") {
    const auto dash = ports.find('-');
    const auto first = parse_port(ports.substr(0, dash));
    const auto last = dash == std::string_view::npos ? first : parse_port(ports.substr(dash + 1));
    if (!first || !last || *last < *first) {
      return common::fail(quoted + ": the ports must be a port (1-65535), a range FIRST-LAST or *");
    }
    rule.first_port = *first;
    rule.last_port = *last;
  }
  if (host.starts_with('[')) {
    if (!host.ends_with(']')) return common::fail(quoted + ": an IPv6 host needs its closing ]");
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return common::fail(quoted + ": the host is empty");
  const bool address_like = host.find('/') != std::string_view::npos ||
                            host.find(':') != std::string_view::npos ||
                            host.find_first_not_of("0123456789.") == std::string_view::npos;
  if (address_like) {
    auto range = common::Cidr::parse(host);
    if (!range) return common::fail(quoted + ": " + range.error().message);
    rule.range = range.value();
  } else if (!common::is_valid_hostname(host)) {
    return common::fail(quoted + ": \"" + std::string(host) + "\" is not a host name");
  } else {
    rule.host = common::ascii_lower(host);
  }
  return rule;
}

common::Result<std::vector<LocalRule>> parse_local_rules(const std::vector<std::string>& texts) {
  std::vector<LocalRule> rules;
  std::vector<std::string> defaults;
  const std::vector<std::string>* source = &texts;
  if (texts.empty()) {
    defaults.assign(std::begin(kDefaultAllowLocal), std::end(kDefaultAllowLocal));
    source = &defaults;
  }
  for (const std::string& text : *source) {
    auto rule = parse_local_rule(text);
    if (!rule) return rule.error();
    rules.push_back(std::move(rule).value());
  }
  return rules;
}

bool local_allowed(const std::vector<LocalRule>& rules, const common::NetAddress& target) {
  const std::string host = common::ascii_lower(target.host);
  for (const LocalRule& rule : rules) {
    if (target.port < rule.first_port || target.port > rule.last_port) continue;
    if (rule.range ? rule.range->contains(host) : rule.host == host) return true;
  }
  return false;
}

}  // namespace tunnel::agent
