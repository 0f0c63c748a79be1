// Which agents serve which public hostname. Shared by every worker thread (guarded by a mutex;
// one short lookup per request).
//
// A hostname belongs to one account at a time. Several agents of that account may serve it and
// share its traffic round robin. When its last agent leaves, the name stays reserved for the
// account for `offline_hold` (requests get 503, not 404, and no other account can take it), so
// an agent restart or a core restart never hands the name to someone else.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace tunnel::core {

class AgentSession;

struct Route {
  std::shared_ptr<AgentSession> agent;
  std::uint16_t tunnel_index = 0;
  std::string local;  // the agent's local target, for error pages ("localhost:3000")
};

enum class LookupStatus { kFound, kUnknown, kOffline };

class Registry {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Registry(std::chrono::seconds offline_hold = std::chrono::minutes(10))
      : offline_hold_(offline_hold) {}

  // Adds `route` for `host` on behalf of `account`. False with `error` if another account holds
  // the name (online or recently).
  bool claim(const std::string& host, const std::string& account, Route route, std::string& error);
  // Removes every route of `agent` (it disconnected); its names go offline if it was the last.
  void release_agent(const AgentSession* agent);
  // Picks the next agent for `host` (round robin).
  LookupStatus lookup(const std::string& host, Route& out);

  // Connected agent sessions of an account (for max_agents).
  std::size_t agents_of(const std::string& account) const;
  bool add_agent(const std::string& account, std::size_t limit);
  void remove_agent(const std::string& account);

  std::size_t hostname_count() const;

 private:
  struct Entry {
    std::string account;
    std::vector<Route> routes;
    std::size_t next = 0;
    Clock::time_point offline_since{};
  };
  bool expired(const Entry& entry, Clock::time_point now) const {
    return entry.routes.empty() && now - entry.offline_since > offline_hold_;
  }

  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> hosts_;
  std::unordered_map<std::string, std::size_t> agents_per_account_;
  std::chrono::seconds offline_hold_;
};

}  // namespace tunnel::core
