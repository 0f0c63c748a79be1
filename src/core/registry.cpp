#include "core/registry.hpp"

#include <algorithm>

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
  entry.routes.push_back(std::move(route));
  return true;
}

void Registry::release_agent(const AgentSession* agent) {
  std::lock_guard lock(mutex_);
  const auto now = Clock::now();
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    auto& routes = it->second.routes;
    const auto before = routes.size();
    std::erase_if(routes, [&](const Route& r) { return r.agent.get() == agent; });
    if (routes.empty() && before > 0) it->second.offline_since = now;
    if (expired(it->second, now)) {
      it = hosts_.erase(it);
    } else {
      ++it;
    }
  }
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

}  // namespace tunnel::core
