// The control plane's REST API (issue 17), under /api/v1: a pure handler from one request to
// one response, testable without sockets. The admin listener (core/admin.cpp) reads the
// request and runs Api::handle on the control thread, the only thread that uses the Store.
//
// Routes are a table (method + path pattern -> handler, api_routes.cpp); JSON in and out;
// errors are RFC 9457 problem documents naming the field. Authentication is a bearer API key
// (Store::authenticate_api_key); failures are rate-limited per source address. Every change is
// audited and followed by ControlHooks::store_changed(). Roles and the operator account are in
// docs/adr/0007-api.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/time_source.hpp"
#include "core/control/api/hooks.hpp"
#include "core/control/auth_limiter.hpp"
#include "core/control/config.hpp"
#include "core/control/store/store.hpp"

namespace tunnel::core::api {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct ApiRequest {
  std::string method;  // "GET"
  std::string target;  // path and query: "/api/v1/tunnels?limit=10"
  Headers headers;     // names in any case
  std::string body;
  std::string peer;  // the client's address, "127.0.0.1:51234"

  // The first field named `name` (case-insensitive); "" when absent.
  std::string_view header(std::string_view name) const;
};

struct ApiResponse {
  int status = 200;
  Headers headers;  // Content-Type included when there is a body
  std::string body;
};

struct ApiOptions {
  std::string domain = "localhost";  // http tunnels are NAME.<domain>
  // Ports tcp and udp tunnels may reserve (the configuration's top-level `ports.ranges`).
  std::vector<PortRange> port_ranges{{1024, 65535}};
  // Where the public listeners are, for the URLs in answers (0 = off).
  std::uint16_t http_port = 0;
  std::uint16_t https_port = 0;
  std::size_t max_body = 1024 * 1024;
  // What a registered agent needs to dial the core, answered by POST /api/v1/agents as
  // "server" (host:port, listen.agent_public or <domain>:<agent port>) and "fingerprint" (the
  // SHA-256 of the agent listener's certificate, as `tunnel-agent --fingerprint` takes it).
  // "" = left out.
  std::string agent_server;
  std::string agent_fingerprint;
  AuthLimiter::Options auth_limits;
  // The clock of the failed-key throttle (the core's TimeSource); nullptr = the real clock.
  const TimeSource* time = nullptr;
  // Idempotency-Key answers kept (in memory): at most this many, for this long.
  std::size_t idempotency_entries = 1000;
  std::chrono::seconds idempotency_ttl{24 * 3600};
  // Unix seconds; nullptr = the system clock.
  std::int64_t (*now)() = nullptr;
  // Why account ACCOUNT (by name) may not reserve the subdomain or custom domain NAME; "" = it
  // may (the core passes reservation_refusal() over the configuration's accounts). Empty
  // function = no such rule.
  std::function<std::string(std::string_view account, std::string_view name, bool domain)>
      reservation_check;
};

// An RFC 9457 problem document ("urn:tunnel:problem:<slug>"), for answers made outside Api
// (the listener's 411 and 413).
ApiResponse problem_response(int status, std::string_view slug, std::string detail);

// docs/openapi.json, compiled in; served at GET /api/v1/openapi.json without a key.
std::string_view openapi_document();

// The account that administers the whole installation (made by bootstrap()): a role there
// applies to every account.
inline constexpr std::string_view kOperatorAccount = "operator";

// What bootstrap() made: the operator's first API key, shown once.
struct Bootstrapped {
  store::Id account_id = 0;
  store::Id user_id = 0;
  store::Id key_id = 0;
  std::string secret;
};

// Makes sure the operator can log in: creates the operator account if missing (with its user
// "admin", role owner) and, when none of its users holds a usable key (not revoked, not expired
// at `now`), an API key "bootstrap" for its owner. nullopt when nothing was needed. A configured
// (YAML) account named "operator" is refused: the name is reserved.
common::Result<std::optional<Bootstrapped>> bootstrap(store::Store& store, std::int64_t now);

class Api {
 public:
  Api(store::Store& store, ControlHooks& hooks, ApiOptions options);
  ~Api();
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  // Any request whose path starts with /api/v1 (others answer 404).
  ApiResponse handle(const ApiRequest& request);

  // The route table, "METHOD /api/v1/path/{id}" (OpenAPI's notation), for the document test.
  static std::vector<std::string> routes();

  // The public listeners' ports, known once they are bound.
  void set_public_ports(std::uint16_t http, std::uint16_t https);
  // The agent listener's address and certificate fingerprint (see ApiOptions), known once it
  // is bound.
  void set_agent_server(std::string server, std::string fingerprint);

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace tunnel::core::api
