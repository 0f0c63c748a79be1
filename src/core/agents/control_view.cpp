#include "core/agents/control_view.hpp"

#include <algorithm>

namespace tunnel::core {

const ControlView::RegisteredAgent* ControlView::find_agent(std::string_view credential) const {
  if (!hash_credential || agents_by_hash.empty()) return nullptr;
  const auto it = agents_by_hash.find(hash_credential(credential));
  return it == agents_by_hash.end() ? nullptr : &it->second;
}

const ControlView::Reservation* ControlView::reservation_for_host(std::string_view host) const {
  if (const auto it = hosts.find(std::string(host)); it != hosts.end()) return &it->second;
  for (const Reservation& r : host_patterns) {
    if (reservation_pattern_matches(r.key, host)) return &r;
  }
  return nullptr;
}

const ControlView::Reservation* ControlView::reservation_for_port(PortProtocol protocol,
                                                                  std::uint16_t port) const {
  const auto it = ports.find(port_key(protocol, port));
  return it == ports.end() ? nullptr : &it->second;
}

std::vector<ControlView::Reservation> ControlView::assigned_to(std::int64_t agent_id) const {
  std::vector<Reservation> out;
  const auto take = [&](const Reservation& r) {
    if (r.agent_id == agent_id) out.push_back(r);
  };
  for (const auto& [key, r] : hosts) take(r);
  for (const auto& r : host_patterns) take(r);
  for (const auto& [key, r] : ports) take(r);
  std::sort(out.begin(), out.end(),
            [](const Reservation& a, const Reservation& b) { return a.tunnel_id < b.tunnel_id; });
  return out;
}

const Account* ControlView::find_account(std::string_view name) const {
  const auto it = accounts.find(std::string(name));
  return it == accounts.end() ? nullptr : &it->second;
}

std::string ControlView::port_key(PortProtocol protocol, std::uint16_t port) {
  return std::string(protocol_name(protocol)) + ":" + std::to_string(port);
}

bool reservation_pattern_matches(std::string_view pattern, std::string_view host) {
  const auto star = pattern.find('*');
  if (star == std::string_view::npos) return pattern == host;
  const std::string_view prefix = pattern.substr(0, star);
  const std::string_view suffix = pattern.substr(star + 1);
  if (host.size() <= prefix.size() + suffix.size()) return false;
  if (!host.starts_with(prefix) || !host.ends_with(suffix)) return false;
  const std::string_view middle =
      host.substr(prefix.size(), host.size() - prefix.size() - suffix.size());
  // "*.example.org": one or more whole labels; "app-*.example.com": the rest of one label.
  if (prefix.empty() && suffix.starts_with('.')) {
    return !middle.starts_with('.') && !middle.ends_with('.');
  }
  return middle.find('.') == std::string_view::npos;
}

}  // namespace tunnel::core
