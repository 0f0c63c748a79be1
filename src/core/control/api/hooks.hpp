// What the control plane's REST API (core/control/api) needs from the running core, and how it
// tells the core that the store changed. The API knows the store and this interface only; the
// server implements it (core/server.cpp) on top of the registry and the gateway, so the control
// plane never reaches into the data plane's types.
//
// Threading: every call comes from the control thread (the thread that owns the Store). An
// implementation must return promptly: it may post work to the data plane's workers but never
// waits for them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/control/store/store.hpp"

namespace tunnel::core::api {

// One live agent session, as the registry sees it.
struct LiveSession {
  std::string session_id;         // the registry's holder id of the session
  std::string name;               // what routes call the agent (its agent id by default)
  std::string group;              // the group it declared; "" = none
  std::string address;            // the agent's address, "203.0.113.7:51234"
  std::int64_t connected_at = 0;  // Unix seconds
  int protocol = 2;               // 1 or 2
  std::string version;            // the agent's version as it said in AUTH ("" when unknown)
  std::uint64_t open_streams = 0;
  std::vector<std::string> serving;  // what it serves: "app.example.com", "tcp:15432"
};

class ControlHooks {
 public:
  virtual ~ControlHooks() = default;
  // Called after every committed change (the store already published its new snapshot). The
  // core applies the snapshot to live traffic within a second: a removed agent's sessions are
  // closed, a removed tunnel's connections are closed and its name released, a changed quota
  // applies to running traffic, an assigned tunnel reaches its agent.
  virtual void store_changed() = 0;
  // The live sessions of a registered agent (store id); empty when it is not connected.
  virtual std::vector<LiveSession> agent_sessions(store::Id agent_id) = 0;
  // How many live agent sessions serve a tunnel (store id) right now.
  virtual std::uint64_t tunnel_sessions(store::Id tunnel_id) = 0;
};

// For tests and for a core without live traffic: changes go nowhere, nothing is live.
class NoLiveTraffic : public ControlHooks {
 public:
  void store_changed() override {}
  std::vector<LiveSession> agent_sessions(store::Id) override { return {}; }
  std::uint64_t tunnel_sessions(store::Id) override { return 0; }
};

}  // namespace tunnel::core::api
