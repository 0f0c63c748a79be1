// What the control plane's store says, in the terms the agent side needs: the credentials of
// registered agents, the accounts created through the API, and the names and ports that
// tunnels reserve for an account. The core (core/live_control.cpp) builds one from the store's
// snapshot after every change and publishes it in CoreContext::control; the gateway reads the
// current one at each AUTH. Immutable once published, so readers need no lock.
//
// The rules it adds to the configuration's:
// - A registered agent authenticates with its credential ("tna_" + 64 hex digits); the view
//   keeps only HMAC-SHA256(store key, credential), never the credential.
// - A name or port a tunnel reserves belongs to its account: that account may serve it even
//   when its configured patterns do not cover it, and every other account is refused it, even
//   through a pattern such as "*" (the reservation is an explicit name).
// - An account created through the API has no patterns: it serves only what its tunnels
//   reserve.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/agents/registry.hpp"
#include "core/control/config.hpp"

namespace tunnel::core {

struct ControlView {
  struct RegisteredAgent {
    std::int64_t id = 0;  // the store's id
    std::string account;
    std::string name;
  };
  // One tunnel of the store: the name or port it reserves, and its settings.
  struct Reservation {
    std::int64_t tunnel_id = 0;
    std::string account;
    std::string type;  // "http", "tcp", "udp"
    std::string key;   // "app.example.com", "*.example.org", "app-*.example.com", "tcp:15432"
    std::optional<std::int64_t> agent_id;  // assigned to this registered agent
    std::string local;                     // the assigned agent's local target
    std::uint64_t bandwidth = 0;
    bool proxy_protocol = false;
    bool operator==(const Reservation&) const = default;
  };

  // HMAC-SHA256(store key, credential) in hex; unset in a view without a store.
  std::function<std::string(std::string_view)> hash_credential;
  std::unordered_map<std::string, RegisteredAgent> agents_by_hash;
  // Accounts created through the API (not in the configuration), as the gateway uses them.
  std::unordered_map<std::string, Account> accounts;
  // Exact hostnames (lower case), and patterns ("*.example.org", "app-*.example.com").
  std::unordered_map<std::string, Reservation> hosts;
  std::vector<Reservation> host_patterns;
  std::map<std::string, Reservation> ports;  // "tcp:15432", "udp:5353"
  // The store's id of every account (configured ones too), for usage.
  std::unordered_map<std::string, std::int64_t> account_ids;
  std::uint64_t generation = 0;

  // The registered agent this credential belongs to, or nullptr.
  const RegisteredAgent* find_agent(std::string_view credential) const;
  // The reservation that covers `host` (exact first, then patterns), or nullptr.
  const Reservation* reservation_for_host(std::string_view host) const;
  const Reservation* reservation_for_port(PortProtocol protocol, std::uint16_t port) const;
  // The tunnels assigned to a registered agent, in tunnel id order.
  std::vector<Reservation> assigned_to(std::int64_t agent_id) const;
  // An API-created account, or nullptr.
  const Account* find_account(std::string_view name) const;

  static std::string port_key(PortProtocol protocol, std::uint16_t port);
};

// True if `host` matches a reservation pattern: "*.example.org" (one or more labels in front)
// or "app-*.example.com" (one label starting "app-").
bool reservation_pattern_matches(std::string_view pattern, std::string_view host);

}  // namespace tunnel::core
