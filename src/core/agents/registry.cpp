#include "core/agents/registry.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <random>

#include "core/agents/agent_gateway.hpp"

namespace tunnel::core {

void Registry::count_out(const std::string& account) {
  auto it = held_.find(account);
  if (it == held_.end()) return;
  if (it->second <= 1) {
    held_.erase(it);
  } else {
    --it->second;
  }
}

void Registry::sweep_locked(Clock::time_point now) {
  last_sweep_ = now;
  std::size_t erased = 0;
  for (auto it = ports_.begin(); it != ports_.end();) {
    if (port_expired(it->second, now)) {
      count_out(it->second.account);
      it = ports_.erase(it);
      ++erased;
    } else {
      ++it;
    }
  }
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    if (expired(it->second, now)) {
      count_out(it->second.account);
      it = hosts_.erase(it);
      ++erased;
    } else {
      ++it;
    }
  }
  if (erased > 0) ++generation_;
}

common::Status Registry::check_held_limit(const std::string& account, std::size_t max_held) {
  if (max_held == 0) return common::success();
  const auto held = [&] {
    auto it = held_.find(account);
    return it == held_.end() ? std::size_t{0} : it->second;
  };
  if (held() < max_held) return common::success();
  // Holds that expired since the last sweep still count: look again (rate-limited).
  if (const auto now = time_.monotonic_time(); now - last_sweep_ >= std::chrono::seconds(1)) {
    sweep_locked(now);
    if (held() < max_held) return common::success();
  }
  return common::fail(
      "account " + account + " already holds " + std::to_string(held()) +
      " names and ports (served, or kept for it for " +
      std::to_string(std::chrono::duration_cast<std::chrono::minutes>(offline_hold_).count()) +
      " minutes after its agents left); at most " + std::to_string(max_held) +
      " (accounts[].max_names in the core's config)");
}

std::int64_t Registry::now_unix() const {
  return unix_seconds(time_);
}

common::Status Registry::claim(const std::string& host, const std::string& account, Route route,
                               bool explicit_name, std::vector<Route>* displaced,
                               std::size_t max_held) {
  std::lock_guard lock(mutex_);
  auto found = hosts_.find(host);
  // Another account's explicit name wins over a hold through a pattern: the pattern's agents
  // keep their sessions but no longer get this name's traffic.
  if (found != hosts_.end() && found->second.account != account &&
      !expired(found->second, time_.monotonic_time()) &&
      (!explicit_name || found->second.explicit_name)) {
    return common::fail(found->second.routes.empty()
                            ? host + " is reserved by another account (its agent left recently)"
                            : host + " is in use by another account");
  }
  if (found == hosts_.end() || found->second.account != account) {
    if (auto room = check_held_limit(account, max_held); !room) return room;
  }
  auto [it, inserted] = hosts_.try_emplace(host);  // the sweep may have erased `found`
  Entry& entry = it->second;
  Claims& claims = claims_[route.agent.get()];
  if (entry.account != account || inserted) {
    if (!inserted) count_out(entry.account);
    count_in(account);
    if (displaced != nullptr) {
      for (Route& r : entry.routes) displaced->push_back(std::move(r));
    }
    entry = Entry{};
    entry.account = account;
    claims.created_hosts.push_back(host);
    ++generation_;
  }
  if (explicit_name && !entry.explicit_name) {
    entry.explicit_name = true;
    ++generation_;
  }
  claims.hosts.push_back(host);
  entry.routes.push_back(std::move(route));
  return common::success();
}

void Registry::release_agent(const AgentSession* agent) {
  std::lock_guard lock(mutex_);
  const auto now = time_.monotonic_time();
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
        ++generation_;
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
      if (routes.empty() && before > 0) {
        it->second.offline_since = now;
        ++generation_;
      }
    }
  }
  // Forget reservations that have expired, at most once a minute (a full walk).
  if (now - last_sweep_ >= kSweepInterval) sweep_locked(now);
}

void Registry::rollback_agent(const AgentSession* agent) {
  std::lock_guard lock(mutex_);
  auto node = claims_.extract(agent);
  if (node.empty()) return;
  const Claims& claims = node.mapped();
  const auto mine = [&](const Route& r) { return r.agent.get() == agent; };
  for (const std::uint32_t key : claims.ports) {
    auto it = ports_.find(key);
    if (it == ports_.end()) continue;
    PortEntry& entry = it->second;
    std::erase_if(entry.routes, mine);
    if (!entry.routes.empty()) continue;
    if (entry.listener) entry.listener->close();
    entry.listener.reset();
    if (std::find(claims.created_ports.begin(), claims.created_ports.end(), key) !=
        claims.created_ports.end()) {
      count_out(entry.account);
      ports_.erase(it);
      ++generation_;
    }
  }
  for (const std::string& host : claims.hosts) {
    auto it = hosts_.find(host);
    if (it == hosts_.end()) continue;
    std::erase_if(it->second.routes, mine);
    if (it->second.routes.empty() &&
        std::find(claims.created_hosts.begin(), claims.created_hosts.end(), host) !=
            claims.created_hosts.end()) {
      count_out(it->second.account);
      hosts_.erase(it);
      ++generation_;
    }
  }
}

namespace {

bool available(const Route& route) {
  return !route.agent || (!route.agent->withdrawn.load(std::memory_order_relaxed) &&
                          !route.agent->tunnel_unhealthy(route.tunnel_index));
}

// The next route round robin that is neither withdrawn nor unhealthy. When none is: one whose
// app is unhealthy (kUnhealthy, for the 503's reason), else the next (all withdrawn: opening a
// stream on it fails and says why).
LookupStatus pick(const std::vector<Route>& routes, std::size_t& next, Route& out) {
  const std::size_t n = routes.size();
  for (std::size_t tries = 0; tries < n; ++tries) {
    const Route& route = routes[next++ % n];
    if (available(route)) {
      out = route;
      return LookupStatus::kFound;
    }
  }
  for (const Route& route : routes) {
    if (route.agent && route.agent->tunnel_unhealthy(route.tunnel_index)) {
      out = route;
      return LookupStatus::kUnhealthy;
    }
  }
  out = routes[next++ % n];
  return LookupStatus::kFound;
}

}  // namespace

LookupStatus Registry::lookup(const std::string& host, Route& out) {
  std::lock_guard lock(mutex_);
  auto it = hosts_.find(host);
  if (it == hosts_.end()) return LookupStatus::kUnknown;
  Entry& entry = it->second;
  if (entry.routes.empty()) {
    if (expired(entry, time_.monotonic_time())) {
      count_out(entry.account);
      hosts_.erase(it);
      ++generation_;
      return LookupStatus::kUnknown;
    }
    return LookupStatus::kOffline;
  }
  return pick(entry.routes, entry.next, out);
}

std::vector<Route> Registry::routes_of(const std::string& host) const {
  std::lock_guard lock(mutex_);
  auto it = hosts_.find(host);
  return it == hosts_.end() ? std::vector<Route>{} : it->second.routes;
}

std::size_t Registry::agents_of(const std::string& account) const {
  std::lock_guard lock(mutex_);
  auto it = agents_per_account_.find(account);
  return it == agents_per_account_.end() ? 0 : it->second.size();
}

AddAgent Registry::add_agent(const std::string& account, const std::string& agent_id,
                             std::size_t limit) {
  std::lock_guard lock(mutex_);
  auto& agents = agents_per_account_[account];
  auto it = agents.find(agent_id);
  if (it == agents.end()) {
    if (limit != 0 && agents.size() >= limit) {
      if (agents.empty()) agents_per_account_.erase(account);
      return AddAgent::kTooManyAgents;
    }
    agents.emplace(agent_id, 1);
    return AddAgent::kAdded;
  }
  if (it->second >= kMaxSessionsPerAgent) return AddAgent::kTooManySessions;
  ++it->second;
  return AddAgent::kAdded;
}

void Registry::remove_agent(const std::string& account, const std::string& agent_id) {
  std::lock_guard lock(mutex_);
  auto it = agents_per_account_.find(account);
  if (it == agents_per_account_.end()) return;
  auto agent = it->second.find(agent_id);
  if (agent != it->second.end() && --agent->second == 0) it->second.erase(agent);
  if (it->second.empty()) agents_per_account_.erase(it);
}

bool Registry::add_tunnels(const std::string& account, std::size_t n, std::size_t limit,
                           std::size_t& serving) {
  std::lock_guard lock(mutex_);
  auto& count = tunnels_per_account_[account];
  serving = count;
  if (limit != 0 && count + n > limit) {
    if (count == 0) tunnels_per_account_.erase(account);
    return false;
  }
  count += n;
  return true;
}

void Registry::remove_tunnels(const std::string& account, std::size_t n) {
  std::lock_guard lock(mutex_);
  auto it = tunnels_per_account_.find(account);
  if (it == tunnels_per_account_.end()) return;
  it->second -= std::min(it->second, n);
  if (it->second == 0) tunnels_per_account_.erase(it);
}

std::size_t Registry::hostname_count() const {
  std::lock_guard lock(mutex_);
  return hosts_.size();
}

std::size_t Registry::held_by(const std::string& account) const {
  std::lock_guard lock(mutex_);
  auto it = held_.find(account);
  return it == held_.end() ? 0 : it->second;
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

common::Status Registry::claim_port_locked(PortProtocol protocol, std::uint16_t port,
                                           const std::string& account, Route& route,
                                           const OpenPort& open, const std::string& holder) {
  const auto now = time_.monotonic_time();
  auto [it, inserted] = ports_.try_emplace(port_key(protocol, port));
  PortEntry& entry = it->second;
  if (!inserted && entry.account != account && !port_expired(entry, now)) {
    return common::fail("port " + std::to_string(port) +
                        (entry.routes.empty()
                             ? " is reserved by another account (its agent left recently)"
                             : " is in use by another account"));
  }
  const bool fresh = inserted || entry.account != account;
  if (fresh) {
    if (!inserted) count_out(entry.account);
    count_in(account);
    entry = PortEntry{};
    entry.account = account;
  }
  if (!entry.listener) {
    auto listener = open(port);
    if (!listener) {
      if (fresh) {  // nothing to hold for anyone
        count_out(account);
        ports_.erase(it);
      }
      return listener.error();
    }
    entry.listener = std::move(listener).value();
  }
  Claims& claims = claims_[route.agent.get()];
  if (fresh) claims.created_ports.push_back(port_key(protocol, port));
  if (fresh || (!holder.empty() && entry.holder != holder)) {
    if (!holder.empty()) entry.holder = holder;
    ++generation_;
  }
  claims.ports.push_back(port_key(protocol, port));
  entry.routes.push_back(std::move(route));
  return common::success();
}

common::Result<std::uint16_t> Registry::claim_port(PortProtocol protocol, std::uint16_t port,
                                                   const std::string& account,
                                                   const PortRules& rules, Route route,
                                                   const OpenPort& open, const std::string& holder,
                                                   std::size_t max_held) {
  std::lock_guard lock(mutex_);
  const std::string proto(protocol_name(protocol));
  const auto at_max = [&] {
    return rules.max_ports != 0 && ports_of_locked(protocol, account) >= rules.max_ports;
  };
  const auto max_error = [&] {
    return common::fail("account " + account + " already serves " +
                        std::to_string(rules.max_ports) + " " + proto + " port" +
                        (rules.max_ports == 1 ? "" : "s") + " (ports.max_per_account)");
  };
  if (port != 0) {
    auto it = ports_.find(port_key(protocol, port));
    const bool joining =
        it != ports_.end() && it->second.account == account && !it->second.routes.empty();
    if (!joining && at_max()) return max_error();
    if (it == ports_.end() || it->second.account != account) {
      if (auto room = check_held_limit(account, max_held); !room) return room.error();
    }
    if (auto claimed = claim_port_locked(protocol, port, account, route, open, holder); !claimed) {
      return claimed.error();
    }
    return port;
  }
  if (at_max()) return max_error();
  // Port 0 from a holder whose port is held: the same port again.
  if (!holder.empty()) {
    const auto now = time_.monotonic_time();
    const std::uint32_t udp = port_key(PortProtocol::kUdp, 0);
    const std::uint32_t want = protocol == PortProtocol::kUdp ? udp : 0;
    for (const auto& [key, entry] : ports_) {
      if ((key & udp) != want || entry.account != account || entry.holder != holder ||
          !entry.routes.empty() || port_expired(entry, now)) {
        continue;
      }
      const auto held = static_cast<std::uint16_t>(key & 0xffffu);
      if (!rules.allows(held)) break;  // the ranges changed since: choose anew
      if (claim_port_locked(protocol, held, account, route, open, holder)) return held;
      break;  // it cannot open again (another program took it): choose anew
    }
  }
  if (auto room = check_held_limit(account, max_held); !room) return room.error();
  // Port 0: every port of the ranges in turn, from a random one, until one opens.
  std::size_t total = 0;
  for (const auto& r : rules.ranges) total += static_cast<std::size_t>(r.last - r.first) + 1;
  if (total == 0) return common::fail("no port range to choose from");
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
    if (rules.reserved_for_others && rules.reserved_for_others(candidate)) continue;
    auto claimed = claim_port_locked(protocol, candidate, account, route, open, holder);
    if (claimed) return candidate;
    last_error = std::move(claimed).error().message;
  }
  return common::fail("no free " + proto + " port left in " + rules.describe_ranges() +
                      (last_error.empty() ? std::string() : " (last error: " + last_error + ")"));
}

LookupStatus Registry::lookup_port(PortProtocol protocol, std::uint16_t port, Route& out) {
  std::lock_guard lock(mutex_);
  auto it = ports_.find(port_key(protocol, port));
  if (it == ports_.end()) return LookupStatus::kUnknown;
  PortEntry& entry = it->second;
  if (entry.routes.empty()) return LookupStatus::kOffline;
  return pick(entry.routes, entry.next, out);
}

std::vector<Registry::Owned> Registry::owned(std::int64_t now_unix) const {
  std::lock_guard lock(mutex_);
  const auto now = time_.monotonic_time();
  const auto unix_of = [&](Clock::time_point t) {
    return now_unix - std::chrono::duration_cast<std::chrono::seconds>(now - t).count();
  };
  std::vector<Owned> out;
  out.reserve(hosts_.size() + ports_.size());
  for (const auto& [host, entry] : hosts_) {
    if (expired(entry, now)) continue;
    out.push_back({host, entry.account, "", entry.explicit_name,
                   entry.routes.empty() ? unix_of(entry.offline_since) : 0});
  }
  const std::uint32_t udp = port_key(PortProtocol::kUdp, 0);
  for (const auto& [key, entry] : ports_) {
    if (port_expired(entry, now)) continue;
    const std::string name =
        std::string((key & udp) != 0 ? "udp:" : "tcp:") + std::to_string(key & 0xffffu);
    out.push_back({name, entry.account, entry.holder, false,
                   entry.routes.empty() ? unix_of(entry.offline_since) : 0});
  }
  return out;
}

std::size_t Registry::restore(const std::vector<Owned>& owned, std::int64_t now_unix) {
  std::lock_guard lock(mutex_);
  const auto now = time_.monotonic_time();
  std::size_t added = 0;
  for (const Owned& o : owned) {
    Clock::time_point since = now;
    if (o.offline_since != 0) {
      since = now - std::chrono::seconds(std::max<std::int64_t>(0, now_unix - o.offline_since));
    }
    if (now - since > offline_hold_) continue;
    std::optional<PortProtocol> protocol;
    if (o.key.starts_with("tcp:")) protocol = PortProtocol::kTcp;
    if (o.key.starts_with("udp:")) protocol = PortProtocol::kUdp;
    if (protocol) {
      unsigned port = 0;
      const std::string digits = o.key.substr(4);
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
      if (ec != std::errc{} || end != digits.data() + digits.size() || port == 0 || port > 0xffff) {
        continue;
      }
      auto [it, inserted] =
          ports_.try_emplace(port_key(*protocol, static_cast<std::uint16_t>(port)));
      if (!inserted) continue;
      count_in(o.account);
      it->second.account = o.account;
      it->second.holder = o.holder;
      it->second.offline_since = since;
    } else {
      auto [it, inserted] = hosts_.try_emplace(o.key);
      if (!inserted) continue;
      count_in(o.account);
      it->second.account = o.account;
      it->second.explicit_name = o.explicit_name;
      it->second.offline_since = since;
    }
    ++added;
  }
  if (added > 0) ++generation_;
  return added;
}

std::uint64_t Registry::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

}  // namespace tunnel::core
