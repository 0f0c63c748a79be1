#include "core/live_control.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <set>
#include <unordered_set>

namespace tunnel::core {
namespace {

// Agents an account created through the API may connect at once when its quota says nothing
// (every tenant has finite limits): the configuration's default.
const std::uint32_t kDefaultMaxAgents = Account{}.max_agents;

std::string_view type_name(store::TunnelType type) {
  return store::to_string(type);
}

ControlView::Reservation reservation_of(const store::Snapshot::TunnelEntry& e, std::string key) {
  ControlView::Reservation r;
  r.tunnel_id = e.id;
  r.account = e.account;
  r.type = std::string(type_name(e.type));
  r.key = std::move(key);
  r.agent_id = e.agent_id;
  r.local = e.local;
  r.bandwidth = e.bandwidth;
  r.proxy_protocol = e.proxy_protocol;
  return r;
}

// The reservation that covers what an agent serves (a hostname, or "tcp://host:port").
const ControlView::Reservation* reservation_for(const ControlView& view,
                                                const std::string& served) {
  if (served.find("://") == std::string::npos) return view.reservation_for_host(served);
  const auto it = view.ports.find(control_key_of(served));
  return it == view.ports.end() ? nullptr : &it->second;
}

// Why the agent's session must go ("" = it may stay): what it serves is no longer its
// account's to serve.
std::string why_close(const AgentSession& agent, const ControlView& before,
                      const ControlView& after) {
  for (const std::string& served : agent.hostnames) {
    if (served.empty()) continue;
    const auto* now = reservation_for(after, served);
    const auto* was = reservation_for(before, served);
    if (now != nullptr && now->account != agent.account) {
      return served + " is now reserved by another account";
    }
    if (was != nullptr && was->account == agent.account &&
        (now == nullptr || now->tunnel_id != was->tunnel_id)) {
      return "the tunnel " + served + " was deleted";
    }
  }
  return "";
}

}  // namespace

std::string control_key_of(const std::string& served) {
  const auto scheme = served.find("://");
  if (scheme == std::string::npos) return served;
  const std::string protocol = served.substr(0, scheme);
  const auto colon = served.rfind(':');
  return protocol + ":" + served.substr(colon + 1);
}

common::Result<std::shared_ptr<const ControlView>> LiveControl::build_view() {
  const auto snapshot = store_.snapshot();
  auto view = std::make_shared<ControlView>();
  view->generation = snapshot->generation;
  view->hash_credential = store_.credential_hasher();
  const std::string& domain = context_.config.domain;
  for (const auto& [name, e] : snapshot->by_name) {
    std::string host = name;
    host.append(".").append(domain);
    if (name.find('*') != std::string::npos) {
      view->host_patterns.push_back(reservation_of(e, host));
    } else {
      view->hosts.emplace(host, reservation_of(e, host));
    }
  }
  for (const auto& [domain_name, e] : snapshot->by_domain) {
    if (domain_name.find('*') != std::string::npos) {
      view->host_patterns.push_back(reservation_of(e, domain_name));
    } else {
      view->hosts.emplace(domain_name, reservation_of(e, domain_name));
    }
  }
  for (const auto& [key, e] : snapshot->by_port) {
    const PortProtocol protocol =
        key.first == store::TunnelType::kUdp ? PortProtocol::kUdp : PortProtocol::kTcp;
    std::string port_key = ControlView::port_key(protocol, key.second);
    view->ports.emplace(port_key, reservation_of(e, port_key));
  }
  for (const auto& [hash, a] : snapshot->agents_by_hash) {
    view->agents_by_hash.emplace(hash, ControlView::RegisteredAgent{a.id, a.account, a.name});
  }
  auto accounts = store_.list_accounts();
  if (!accounts) return accounts.error();
  for (const store::Account& a : accounts.value()) {
    view->account_ids.emplace(a.name, a.id);
    if (context_.auth.find_account(a.name) != nullptr) continue;  // the configuration's
    Account account;
    account.name = a.name;
    account.subdomains.clear();  // only what its tunnels reserve
    auto quota = store_.get_quota(a.id);
    if (!quota) return quota.error();
    account.max_agents = quota.value().max_agents != 0
                             ? static_cast<std::uint32_t>(quota.value().max_agents)
                             : kDefaultMaxAgents;
    view->accounts.emplace(a.name, std::move(account));
  }
  return std::shared_ptr<const ControlView>(std::move(view));
}

common::Result<std::uint64_t> LiveControl::month_usage(std::int64_t account_id,
                                                       std::int64_t now_unix) {
  auto rows = store_.list_usage(account_id, month_start(now_unix) / 3600, now_unix / 3600 + 1);
  if (!rows) return rows.error();
  std::uint64_t bytes = 0;
  for (const store::Usage& u : rows.value()) {
    if (u.tunnel_id == 0) bytes += u.bytes_in + u.bytes_out;  // the account's total row
  }
  return bytes;
}

common::Status LiveControl::apply_quotas(std::int64_t now_unix) {
  auto accounts = store_.list_accounts();
  if (!accounts) return accounts.error();
  std::unordered_set<std::string> names;
  for (const store::Account& a : accounts.value()) names.insert(a.name);
  context_.quotas.retain(names);
  for (const store::Account& a : accounts.value()) {
    auto quota = store_.get_quota(a.id);
    if (!quota) return quota.error();
    const store::Quota& q = quota.value();
    const QuotaLimits limits{q.max_connections, q.max_requests_per_second, q.bandwidth,
                             q.bytes_per_month};
    std::shared_ptr<AccountQuota> live = context_.quotas.find(a.name);
    if (!live && limits == QuotaLimits{}) continue;  // created with no limits when first used
    if (!live) live = context_.quotas.get(a.name);
    if (limits.bytes_per_month != 0 && live->limits().bytes_per_month == 0) {
      // Counted from now on: what the store holds for the month so far.
      auto used = month_usage(a.id, now_unix);
      if (!used) return used.error();
      live->set_month(used.value(), next_month_start(now_unix), 0);
    }
    if (live->limits() != limits) {
      spdlog::info(
          "account {}: quota max_connections={} max_requests_per_second={} "
          "bandwidth={} bytes_per_month={} applied to live traffic",
          a.name, limits.max_connections, limits.max_requests_per_second, limits.bandwidth,
          limits.bytes_per_month);
      live->set_limits(limits);
    }
  }
  return common::success();
}

common::Status LiveControl::start() {
  auto view = build_view();
  if (!view) return common::fail("store: " + view.error().message);
  context_.control.store(std::move(view).value());
  if (auto applied = apply_quotas(unix_seconds(context_.time)); !applied) {
    return common::fail("store: " + applied.error().message);
  }
  return common::success();
}

void LiveControl::store_changed() {
  auto built = build_view();
  if (!built) {
    // The old view stays: live traffic keeps the last good state, the next change retries.
    spdlog::error("control plane: the change is stored but not applied to live traffic: {}",
                  built.error().message);
    return;
  }
  const std::shared_ptr<const ControlView> after = std::move(built).value();
  const std::shared_ptr<const ControlView> before = context_.control.exchange(after);
  if (before) apply(*before, *after);
  if (auto applied = apply_quotas(unix_seconds(context_.time)); !applied) {
    spdlog::error("control plane: quotas not applied to live traffic: {}", applied.error().message);
  }
}

void LiveControl::apply(const ControlView& before, const ControlView& after) {
  std::set<std::int64_t> registered;
  for (const auto& [hash, a] : after.agents_by_hash) registered.insert(a.id);
  for (const auto& agent : gateway_.agents()) {
    std::string reason;
    bool reconnect = false;
    if (agent->registered_id != 0 && !registered.contains(agent->registered_id)) {
      reason = "the agent was removed through the API";
    } else {
      reason = why_close(*agent, before, after);
    }
    if (reason.empty() && agent->assigned &&
        before.assigned_to(agent->registered_id) != after.assigned_to(agent->registered_id)) {
      reason = "its assigned tunnels changed";
      reconnect = true;
    }
    if (reason.empty()) continue;
    spdlog::info("agent {}@{} ({}): {}; {}", agent->agent_id, agent->account, agent->peer, reason,
                 reconnect ? "asked to reconnect" : "session closed");
    asio::post(agent->session->get_executor(), [session = agent->session, reason, reconnect] {
      if (reconnect) {
        session->go_away(protocol::ErrorCode::kGoingAway, reason);
      } else {
        session->close(reason);
      }
    });
  }
}

common::Status LiveControl::flush_usage(std::int64_t now_unix, std::chrono::seconds retention) {
  const std::int64_t hour = now_unix / 3600;
  std::map<std::pair<std::int64_t, std::int64_t>, store::Usage> rows;
  const auto add = [&](std::int64_t account, std::int64_t tunnel, const UsageBook::Sample& s) {
    store::Usage& row = rows[{account, tunnel}];
    row.account_id = account;
    row.tunnel_id = tunnel;
    row.hour = hour;
    row.requests += s.requests;
    row.bytes_in += s.bytes_in;
    row.bytes_out += s.bytes_out;
    row.errors += s.errors;
  };
  std::map<std::int64_t, std::uint64_t> flushed;  // bytes per account
  for (const UsageBook::Sample& s : context_.usage.take()) {
    if (s.tunnel_id != 0) add(s.account_id, s.tunnel_id, s);
    add(s.account_id, 0, s);
    flushed[s.account_id] += s.bytes_in + s.bytes_out;
  }
  if (!rows.empty()) {
    std::vector<store::Usage> samples;
    samples.reserve(rows.size());
    for (auto& [key, row] : rows) samples.push_back(row);
    if (auto added = store_.add_usage(samples); !added) {
      return common::fail("usage: " + added.error().message);
    }
  }
  // bytes_per_month: what the store now holds for the month replaces what was counted in
  // memory and just written (and after the month turned, the new month starts from the store).
  if (const auto view = context_.control.load()) {
    for (const auto& [name, id] : view->account_ids) {
      const std::shared_ptr<AccountQuota> quota = context_.quotas.find(name);
      if (!quota) continue;
      const auto it = flushed.find(id);
      const std::uint64_t bytes = it == flushed.end() ? 0 : it->second;
      std::uint64_t stored = 0;
      if (quota->limits().bytes_per_month != 0) {
        auto used = month_usage(id, now_unix);
        if (!used) return common::fail("usage: " + used.error().message);
        stored = used.value();
      }
      quota->set_month(stored, next_month_start(now_unix), bytes);
    }
  }
  if (hour != pruned_hour_) {
    pruned_hour_ = hour;
    const std::int64_t keep_hours = std::max<std::int64_t>(1, retention.count() / 3600);
    if (auto pruned = store_.prune_usage(hour - keep_hours); !pruned) {
      return common::fail("usage: " + pruned.error().message);
    }
  }
  return common::success();
}

void LiveControl::start_usage_flush(asio::any_io_executor executor,
                                    std::chrono::milliseconds interval,
                                    std::chrono::seconds retention) {
  asio::co_spawn(executor, flush_every(interval, retention), asio::detached);
}

asio::awaitable<void> LiveControl::flush_every(std::chrono::milliseconds interval,
                                               std::chrono::seconds retention) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(interval);
    transport::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    if (auto flushed = flush_usage(now, retention); !flushed) {
      spdlog::warn("control plane: {}", flushed.error().message);
    }
  }
}

std::vector<api::LiveSession> LiveControl::agent_sessions(store::Id agent_id) {
  std::vector<api::LiveSession> out;
  for (const auto& agent : gateway_.agents()) {
    if (agent->registered_id != agent_id) continue;
    api::LiveSession s;
    s.session_id = agent->agent_id;
    s.name = agent->name;
    s.group = agent->group;
    s.address = agent->peer;
    s.connected_at = agent->connected_at;
    s.protocol = agent->session->version();
    s.version = agent->version;
    for (const auto& served : agent->hostnames) {
      if (!served.empty()) s.serving.push_back(served);
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::uint64_t LiveControl::tunnel_sessions(store::Id tunnel_id) {
  const auto view = context_.control.load();
  if (!view) return 0;
  const ControlView::Reservation* reservation = nullptr;
  for (const auto& [key, r] : view->hosts) {
    if (r.tunnel_id == tunnel_id) reservation = &r;
  }
  for (const auto& r : view->host_patterns) {
    if (r.tunnel_id == tunnel_id) reservation = &r;
  }
  for (const auto& [key, r] : view->ports) {
    if (r.tunnel_id == tunnel_id) reservation = &r;
  }
  if (reservation == nullptr) return 0;
  std::uint64_t n = 0;
  for (const auto& agent : gateway_.agents()) {
    if (agent->account != reservation->account) continue;
    for (const auto& served : agent->hostnames) {
      if (!served.empty() && reservation_for(*view, served) == reservation) {
        ++n;
        break;
      }
    }
  }
  return n;
}

}  // namespace tunnel::core
