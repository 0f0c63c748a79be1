#include "core/agents/registry.hpp"

#include <algorithm>
#include <random>

namespace tunnel::core {

bool Registry::claim(const std::string& host, const std::string& account, Route route,
                     std::string& error) {
  std::lock_guard lock(mutex_);
  auto [it, inserted] = hosts_.try_emplace(host);
  Entry& entry = it->second;
  if (!inserted && entry.account != account && !expired(entry, Clock::now())) {
    error = entry.routes.empty() ? host +
                                       " is reserved by another account (its agent left "
                                       "recently)"
                                 : host + " is in use by another account";
    return false;
  }
  if (entry.account != account) {
    entry = Entry{};
    entry.account = account;
  }
  claims_[route.agent.get()].hosts.push_back(host);
  entry.routes.push_back(std::move(route));
  return true;
}

void Registry::release_agent(const AgentSession* agent) {
  std::lock_guard lock(mutex_);
  const auto now = Clock::now();
  // Only the names and ports this agent claimed: dropping thousands of agents at once must not
  // walk every entry for each of them.
  if (auto claims = claims_.extract(agent); !claims.empty()) {
    for (const std::uint32_t key : claims.mapped().ports) {
      auto it = ports_.find(key);
      if (it == ports_.end()) continue;
      PortEntry& entry = it->second;
      const auto before = entry.routes.size();
      std::erase_if(entry.routes, [&](const Route& r) { return r.agent.get() == agent; });
      if (entry.routes.empty() && before > 0) {
        entry.offline_since = now;
        if (entry.listener) entry.listener->close();
        entry.listener.reset();
      }
    }
    for (const std::string& host : claims.mapped().hosts) {
      auto it = hosts_.find(host);
      if (it == hosts_.end()) continue;
      auto& routes = it->second.routes;
      const auto before = routes.size();
      std::erase_if(routes, [&](const Route& r) { return r.agent.get() == agent; });
      if (routes.empty() && before > 0) it->second.offline_since = now;
    }
  }
  // Forget reservations that have expired, at most once a minute (a full walk).
  if (now - last_sweep_ < kSweepInterval) return;
  last_sweep_ = now;
  std::erase_if(ports_, [&](const auto& item) { return port_expired(item.second, now); });
  std::erase_if(hosts_, [&](const auto& item) { return expired(item.second, now); });
}

LookupStatus Registry::lookup(const std::string& host, Route& out) {
  std::lock_guard lock(mutex_);
  auto it = hosts_.find(host);
  if (it == hosts_.end()) return LookupStatus::kUnknown;
  Entry& entry = it->second;
  if (entry.routes.empty()) {
    if (expired(entry, Clock::now())) {
      hosts_.erase(it);
      return LookupStatus::kUnknown;
    }
    return LookupStatus::kOffline;
  }
  out = entry.routes[entry.next++ % entry.routes.size()];
  return LookupStatus::kFound;
}

std::size_t Registry::agents_of(const std::string& account) const {
  std::lock_guard lock(mutex_);
  auto it = agents_per_account_.find(account);
  return it == agents_per_account_.end() ? 0 : it->second;
}

bool Registry::add_agent(const std::string& account, std::size_t limit) {
  std::lock_guard lock(mutex_);
  auto& count = agents_per_account_[account];
  if (limit != 0 && count >= limit) return false;
  ++count;
  return true;
}

void Registry::remove_agent(const std::string& account) {
  std::lock_guard lock(mutex_);
  auto it = agents_per_account_.find(account);
  if (it != agents_per_account_.end() && it->second > 0 && --it->second == 0) {
    agents_per_account_.erase(it);
  }
}

std::size_t Registry::hostname_count() const {
  std::lock_guard lock(mutex_);
  return hosts_.size();
}

std::string_view protocol_name(PortProtocol protocol) {
  return protocol == PortProtocol::kUdp ? "udp" : "tcp";
}

std::size_t Registry::ports_of_locked(PortProtocol protocol, const std::string& account) const {
  const std::uint32_t udp = port_key(PortProtocol::kUdp, 0);
  const std::uint32_t want = protocol == PortProtocol::kUdp ? udp : 0;
  return static_cast<std::size_t>(
      std::count_if(ports_.begin(), ports_.end(), [&](const auto& item) {
        return (item.first & udp) == want && item.second.account == account &&
               !item.second.routes.empty();
      }));
}

std::size_t Registry::ports_of(PortProtocol protocol, const std::string& account) const {
  std::lock_guard lock(mutex_);
  return ports_of_locked(protocol, account);
}

bool Registry::claim_port_locked(PortProtocol protocol, std::uint16_t port,
                                 const std::string& account, Route& route, const OpenPort& open,
                                 bool explicit_port, std::string& error) {
  const auto now = Clock::now();
  auto [it, inserted] = ports_.try_emplace(port_key(protocol, port));
  PortEntry& entry = it->second;
  if (!inserted && entry.account != account && !port_expired(entry, now)) {
    if (explicit_port) {
      error = "port " + std::to_string(port) +
              (entry.routes.empty() ? " is reserved by another account (its agent left recently)"
                                    : " is in use by another account");
    }
    return false;
  }
  const bool fresh = inserted || entry.account != account;
  if (fresh) {
    entry = PortEntry{};
    entry.account = account;
  }
  if (!entry.listener) {
    auto listener = open(port, error);
    if (!listener) {
      if (fresh) ports_.erase(it);  // nothing to hold for anyone
      return false;
    }
    entry.listener = std::move(listener);
  }
  claims_[route.agent.get()].ports.push_back(port_key(protocol, port));
  entry.routes.push_back(std::move(route));
  return true;
}

std::uint16_t Registry::claim_port(PortProtocol protocol, std::uint16_t port,
                                   const std::string& account, const PortRules& rules, Route route,
                                   const OpenPort& open, std::string& error) {
  std::lock_guard lock(mutex_);
  const std::string proto(protocol_name(protocol));
  const auto at_max = [&] {
    if (rules.max_ports == 0 || ports_of_locked(protocol, account) < rules.max_ports) return false;
    error = "account " + account + " already serves " + std::to_string(rules.max_ports) + " " +
            proto + " port" + (rules.max_ports == 1 ? "" : "s") + " (ports.max_per_account)";
    return true;
  };
  if (port != 0) {
    auto it = ports_.find(port_key(protocol, port));
    const bool joining =
        it != ports_.end() && it->second.account == account && !it->second.routes.empty();
    if (!joining && at_max()) return 0;
    return claim_port_locked(protocol, port, account, route, open, true, error) ? port : 0;
  }
  if (at_max()) return 0;
  // Port 0: every port of the ranges in turn, from a random one, until one opens.
  std::size_t total = 0;
  for (const auto& r : rules.ranges) total += static_cast<std::size_t>(r.last - r.first) + 1;
  if (total == 0) {
    error = "no port range to choose from";
    return 0;
  }
  thread_local std::minstd_rand random{std::random_device{}()};
  const std::size_t start = std::uniform_int_distribution<std::size_t>(0, total - 1)(random);
  std::string last_error;
  for (std::size_t i = 0; i < total; ++i) {
    std::size_t n = (start + i) % total;
    std::uint16_t candidate = 0;
    for (const auto& r : rules.ranges) {
      const std::size_t size = static_cast<std::size_t>(r.last - r.first) + 1;
      if (n < size) {
        candidate = static_cast<std::uint16_t>(r.first + n);
        break;
      }
      n -= size;
    }
    if (ports_.contains(port_key(protocol, candidate))) continue;  // held or reserved
    if (claim_port_locked(protocol, candidate, account, route, open, false, last_error)) {
      return candidate;
    }
  }
  error = "no free " + proto + " port left in " + rules.describe_ranges() +
          (last_error.empty() ? std::string() : " (last error: " + last_error + ")");
  return 0;
}

LookupStatus Registry::lookup_port(PortProtocol protocol, std::uint16_t port, Route& out) {
  std::lock_guard lock(mutex_);
  auto it = ports_.find(port_key(protocol, port));
  if (it == ports_.end()) return LookupStatus::kUnknown;
  PortEntry& entry = it->second;
  if (entry.routes.empty()) return LookupStatus::kOffline;
  out = entry.routes[entry.next++ % entry.routes.size()];
  return LookupStatus::kFound;
}

}  // namespace tunnel::core
