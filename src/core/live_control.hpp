// The control plane's changes applied to live traffic (issue 17): implements the API's
// ControlHooks (core/control/api/hooks.hpp) on top of the registry and the gateway.
//
// After every committed change (and once at start) it turns the store's snapshot into a
// ControlView (core/agents/control_view.hpp) and publishes it in CoreContext::control, where
// the gateway reads it at each AUTH. Then it compares the new view with the old one and acts
// on the agents connected now:
// - a registered agent removed from the store: its sessions are closed (its credential is
//   refused from then on);
// - a name or port now reserved by another account, or whose reservation was deleted: the
//   sessions serving it are closed, and with them the name's open connections (the agents
//   reconnect with backoff and get what they are still allowed);
// - a registered agent whose assigned tunnels changed: told to reconnect (GOAWAY: its
//   in-flight streams finish on the old session while the new one gets the new set).
// And it sets each account's quota limits on its AccountQuota (core/agents/quota.hpp) in place,
// so a changed quota applies to the running traffic at once.
//
// Threading: every call runs on the control thread, as ControlHooks says. Closing a session is
// posted to its worker; nothing here waits for the data plane.
#pragma once

#include <memory>

#include "common/result.hpp"
#include "core/agents/agent_gateway.hpp"
#include "core/agents/context.hpp"
#include "core/control/api/hooks.hpp"
#include "core/control/store/store.hpp"

namespace tunnel::core {

class LiveControl : public api::ControlHooks {
 public:
  LiveControl(store::Store& store, CoreContext& context, AgentGateway& gateway)
      : store_(store), context_(context), gateway_(gateway) {}

  // Publishes the first view; call before the agent listeners accept.
  common::Status start();

  void store_changed() override;
  std::vector<api::LiveSession> agent_sessions(store::Id agent_id) override;
  std::uint64_t tunnel_sessions(store::Id tunnel_id) override;

  // Writes what the data path counted since the last call (CoreContext::usage) to the store's
  // hourly buckets: one row per store tunnel, and one per account (tunnel 0) summing all of
  // its traffic. At most once an hour it drops buckets older than `retention`. A failed write
  // is logged and its counts are lost (the store's usage is best effort; metrics are exact).
  common::Status flush_usage(std::int64_t now_unix, std::chrono::seconds retention);
  // Calls flush_usage() every `interval` on `executor` (the control thread) until it stops.
  void start_usage_flush(asio::any_io_executor executor, std::chrono::milliseconds interval,
                         std::chrono::seconds retention);

  // The view the store's current snapshot gives (exposed for tests).
  common::Result<std::shared_ptr<const ControlView>> build_view();

  // Sets the store's quota of every account on its AccountQuota (CoreContext::quotas), in
  // place: running routes and filters see the new limits at their next request. For accounts
  // with bytes_per_month, also the month's usage the store holds. Called by start() and
  // store_changed(); `now_unix` decides the month.
  common::Status apply_quotas(std::int64_t now_unix);

 private:
  // Acts on the connected agents that the change from `before` to `after` concerns.
  void apply(const ControlView& before, const ControlView& after);

  // Bytes in + out the store's hourly usage holds for `account_id` in the month of `now_unix`.
  common::Result<std::uint64_t> month_usage(std::int64_t account_id, std::int64_t now_unix);

  asio::awaitable<void> flush_every(std::chrono::milliseconds interval,
                                    std::chrono::seconds retention);

  store::Store& store_;
  CoreContext& context_;
  AgentGateway& gateway_;
  std::int64_t pruned_hour_ = 0;  // the hour of the last prune
};

// What an agent serving `served` (a hostname, or "tcp://host:port" / "udp://host:port" as the
// gateway records it) holds: the ControlView key ("app.example.com", "tcp:15432").
std::string control_key_of(const std::string& served);

}  // namespace tunnel::core
