// Which local targets the core may make this agent reach: the allow list of an agent that
// serves the tunnels the core assigns to it (a registered agent of the control plane, issue 17).
//
// The core names each assigned tunnel's local target ("127.0.0.1:3000"). A core that is
// broken, compromised or run by someone else must not be able to point the agent at anything
// on its network, so the agent forwards an assigned tunnel only when its target matches a rule
// of its own config (`allow_local`, or `--allow-local`), and refuses its streams otherwise.
//
// A rule is HOST:PORTS. HOST is a host name (matched exactly, case-insensitive, no DNS), an IP
// address, or a CIDR range (matches IP literal targets only); IPv6 in brackets:
// "[::1]:*", "[fd00::/8]:443". PORTS is a port, a range "8000-8999", or "*".
// The default, when the list is empty: loopback only (kDefaultAllowLocal).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/cidr.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"

namespace tunnel::agent {

inline constexpr std::string_view kDefaultAllowLocal[] = {"localhost:*", "127.0.0.0/8:*",
                                                          "[::1]:*"};

struct LocalRule {
  std::string host;  // lower case; "" when `range` is set
  std::optional<common::Cidr> range;
  std::uint16_t first_port = 1;
  std::uint16_t last_port = 65535;
  std::string text;  // as written, for messages
};

// The error names the rule and the problem.
common::Result<LocalRule> parse_local_rule(std::string_view text);
// Every rule of `texts`, or the first error; the default rules when `texts` is empty.
common::Result<std::vector<LocalRule>> parse_local_rules(const std::vector<std::string>& texts);

bool local_allowed(const std::vector<LocalRule>& rules, const common::NetAddress& target);

}  // namespace tunnel::agent
