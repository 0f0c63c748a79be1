#include "core/agents/agent_gateway.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <boost/asio/post.hpp>
#include <chrono>
#include <set>

#include "common/async.hpp"
#include "common/net_address.hpp"
#include "http/host.hpp"
#include "protocol/health_notice.hpp"
#include "transport/tls.hpp"

namespace tunnel::core {
namespace {

using protocol::FrameType;
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
constexpr std::uint32_t kCoreInitialWindow = 256 * 1024;

std::string public_url(const CoreContext& context, const std::string& host) {
  const std::uint16_t port = context.public_http_port;
  return "http://" + host + (port == 80 || port == 0 ? "" : ":" + std::to_string(port));
}

namespace refusal = protocol::refusal;

// True if one of `patterns` (subdomains or domains of an account) is `name` itself, not a
// pattern that covers it: such a name wins over another account's pattern (see registry.hpp).
bool names_exactly(const std::vector<std::string>& patterns, std::string_view name) {
  for (const auto& p : patterns) {
    std::string_view text = p;
    if (text.ends_with('.')) text.remove_suffix(1);
    if (text.find('*') == std::string_view::npos && common::ascii_lower(text) == name) return true;
  }
  return false;
}

// Whether `account` may serve `host`: a tunnel of the control plane's store that reserves it
// decides (its account may, every other is refused, whatever its patterns say); otherwise
// `patterns_allow` (the account's configured subdomains or domains). A reservation counts as
// an explicit name.
common::Status may_serve(const ControlView* view, const Account& account, const std::string& host,
                         bool patterns_allow, const std::string& denied, bool& explicit_name,
                         std::string_view& code) {
  if (const auto* reserved = view != nullptr ? view->reservation_for_host(host) : nullptr) {
    if (reserved->account == account.name) {
      explicit_name = true;
      return common::success();
    }
    // The other account is not named to this tenant.
    code = refusal::kNotAllowed;
    return common::fail(host + " is reserved by another account");
  }
  if (!patterns_allow) {
    code = refusal::kNotAllowed;
    return common::fail(denied);
  }
  return common::success();
}

// A hostname an account may use, for one tunnel.
struct NamedHost {
  std::string host;
  // The account's config names the host exactly, or the store reserves it.
  bool explicit_name = false;
};

// Resolves what a tunnel request asks for into a hostname the account may use, or an error
// (and its refusal code in `code`).
common::Result<NamedHost> resolve_hostname(const CoreContext& context, const ControlView* view,
                                           const Account& account,
                                           const protocol::TunnelRequest& request,
                                           const std::string& agent_id, std::string_view& code) {
  code = refusal::kBadRequest;
  const std::string& domain = context.config.domain;
  std::string subdomain = common::ascii_lower(request.subdomain);
  NamedHost named;
  if (!request.hostname.empty()) {
    auto normalized = http::normalize_host(request.hostname);
    if (!normalized) {
      return common::fail("hostname \"" + request.hostname + "\" is not a valid host name");
    }
    const std::string suffix = "." + domain;
    if (normalized->size() > suffix.size() && normalized->ends_with(suffix) &&
        normalized->find('.') == normalized->size() - suffix.size()) {
      subdomain = normalized->substr(0, normalized->size() - suffix.size());
    } else {
      named.host = *normalized;
      named.explicit_name = names_exactly(account.domains, named.host);
      auto allowed = may_serve(view, account, named.host, account.may_use_domain(named.host),
                               "account " + account.name + " does not own the domain " + named.host,
                               named.explicit_name, code);
      if (!allowed) return allowed.error();
      return named;
    }
  }
  // v1 without subdomains: the agent's id, which is the JWT's agent_id when the token has one
  // (never the id the agent declares for itself, which a JWT holder could set to any name).
  if (subdomain.empty()) subdomain = common::ascii_lower(agent_id);
  if (subdomain.empty()) return common::fail("the tunnel names no subdomain or hostname");
  if (!common::is_valid_dns_label(subdomain)) {
    return common::fail("subdomain \"" + subdomain +
                        "\" is not a valid DNS label (letters, digits, '-')");
  }
  named.host = subdomain + "." + domain;
  named.explicit_name = names_exactly(account.subdomains, subdomain);
  auto allowed = may_serve(view, account, named.host, account.may_use_subdomain(subdomain),
                           "account " + account.name + " may not use the subdomain " + subdomain,
                           named.explicit_name, code);
  if (!allowed) return allowed.error();
  return named;
}

// The host named in tcp/udp tunnel results: the tunnels host, or the base domain when the
// tunnels host is every interface.
std::string public_port_host(const CoreContext& context) {
  const std::string& host = context.config.listen.tunnels_host;
  if (host == "0.0.0.0" || host == "::" || host.empty()) return context.config.domain;
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// The bandwidth limits of one tunnel: the tighter of what the agent asked for and the account's
// per-tunnel limit, plus the account's shared buckets.
std::shared_ptr<const Throttle> make_throttle(CoreContext& context, const Account& account,
                                              const protocol::TunnelRequest& request,
                                              const std::shared_ptr<AccountQuota>& quota) {
  const BandwidthRules rules = bandwidth_rules(context.config, account);
  std::uint64_t per_tunnel = rules.per_tunnel;
  if (request.bandwidth != 0 && (per_tunnel == 0 || request.bandwidth < per_tunnel)) {
    per_tunnel = request.bandwidth;
  }
  auto t = std::make_shared<Throttle>();
  for (const Direction d : {Direction::kIn, Direction::kOut}) {
    const auto i = static_cast<std::size_t>(d);
    if (per_tunnel != 0) {
      t->tunnel[i] = std::make_shared<TokenBucket>(
          per_tunnel, TokenBucket::default_burst(per_tunnel), context.time);
    }
    t->account[i] = context.account_buckets.get(account.name, d, rules.per_account);
  }
  t->quota = quota;
  if (!t->limited()) return nullptr;
  return t;
}

// Success when the tunnel's PROXY protocol request is acceptable, else why not.
common::Status check_proxy_protocol(const protocol::TunnelRequest& request) {
  const std::string& p = request.proxy_protocol;
  if (p.empty()) return common::success();
  if (p != "v1" && p != "v2") {
    return common::fail("proxy_protocol \"" + p + "\" is not supported (v1 or v2)");
  }
  if (request.type == "udp") {
    return common::fail("udp tunnels cannot send PROXY headers (tcp and http can)");
  }
  return common::success();
}

// A registered agent's credential (the control plane's store), else a configured token or JWT.
common::Result<Authenticated> authenticate(const CoreContext& context, const ControlView* view,
                                           std::string_view token) {
  if (view != nullptr && token.starts_with("tna_")) {
    if (const auto* agent = view->find_agent(token)) {
      Authenticated registered;
      registered.account = agent->account;
      registered.agent_id = agent->name;
      registered.registered_id = agent->id;
      return registered;
    }
  }
  return context.auth.authenticate(token);
}

bool asks_for_assignments(const protocol::AuthRequest& request) {
  return request.tunnels.empty() &&
         std::find(request.capabilities.begin(), request.capabilities.end(),
                   protocol::kAssignedTunnels) != request.capabilities.end();
}

// Whether the agent serves what the core assigns to it: a registered agent that says so and
// asks for nothing itself.
bool serves_assignments(const protocol::AuthRequest& request, const Authenticated& auth) {
  return auth.registered_id != 0 && asks_for_assignments(request);
}

// The tunnels the store assigns to a registered agent, as the requests it would have sent.
// A reservation by pattern ("app-*", "*.example.org") names no single host: not assignable.
std::vector<protocol::TunnelRequest> assignments_of(const CoreContext& context,
                                                    const ControlView* view,
                                                    std::int64_t agent_id) {
  std::vector<protocol::TunnelRequest> out;
  if (view == nullptr) return out;
  const std::string suffix = "." + context.config.domain;
  for (const ControlView::Reservation& r : view->assigned_to(agent_id)) {
    protocol::TunnelRequest t;
    t.type = r.type;
    t.local = r.local;
    t.bandwidth = r.bandwidth;
    if (r.type == "http") {
      if (r.key.find('*') != std::string::npos) continue;
      const bool under_domain = r.key.size() > suffix.size() && r.key.ends_with(suffix) &&
                                r.key.find('.') == r.key.size() - suffix.size();
      if (under_domain) {
        t.subdomain = r.key.substr(0, r.key.size() - suffix.size());
      } else {
        t.hostname = r.key;
      }
    } else {
      t.remote_port = static_cast<std::uint16_t>(std::stoul(r.key.substr(r.key.find(':') + 1)));
    }
    out.push_back(std::move(t));
  }
  return out;
}

// The usage counters of a route: the store tunnel that reserves `key` (a hostname, or
// ControlView::port_key()), else the account's own; null without a store.
std::shared_ptr<UsageCounters> usage_of(CoreContext& context, const ControlView* view,
                                        const std::string& account, const std::string& key,
                                        bool port) {
  if (view == nullptr) return nullptr;
  const auto id = view->account_ids.find(account);
  if (id == view->account_ids.end()) return nullptr;
  const ControlView::Reservation* reserved = nullptr;
  if (port) {
    const auto it = view->ports.find(key);
    if (it != view->ports.end()) reserved = &it->second;
  } else {
    reserved = view->reservation_for_host(key);
  }
  const std::int64_t tunnel =
      reserved != nullptr && reserved->account == account ? reserved->tunnel_id : 0;
  return context.usage.counters(id->second, tunnel);
}

// A configured account, else one created through the API.
const Account* find_account(const CoreContext& context, const ControlView* view,
                            std::string_view name) {
  if (const Account* configured = context.auth.find_account(name)) return configured;
  return view != nullptr ? view->find_account(name) : nullptr;
}

// Why the agent's name or group in AUTH is refused; "" when both are fine (or absent).
std::string bad_agent_name(const protocol::AuthRequest& request) {
  if (!request.name.empty()) {
    if (auto checked = protocol::check_agent_name(request.name); !checked) {
      return "the agent's name is invalid: " + checked.error().message;
    }
  }
  if (!request.group.empty()) {
    if (auto checked = protocol::check_agent_name(request.group); !checked) {
      return "the agent's group is invalid: " + checked.error().message;
    }
  }
  return {};
}

}  // namespace

HandshakeSlot::~HandshakeSlot() {
  release();
}

void HandshakeSlot::release() {
  if (!slot_) return;
  slot_.release();
  gauge_->dec();
}

HandshakeSlot AgentGateway::admit(const transport::tcp::socket& socket) {
  transport::error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return {};  // already gone
  const std::string address = endpoint.address().to_string();
  HandshakeLimiter& limiter = context_.handshake_limiter;
  HandshakeLimiter::Refusal why = HandshakeLimiter::Refusal::kNone;
  HandshakeLimiter::Slot slot = limiter.try_acquire(address, why);
  if (slot) {
    context_.metrics.agent_handshakes.inc();
    return HandshakeSlot(std::move(slot), context_.metrics.agent_handshakes);
  }
  const bool global = why == HandshakeLimiter::Refusal::kGlobal;
  (global ? context_.metrics.agent_handshakes_refused_global
          : context_.metrics.agent_handshakes_refused_address)
      .inc();
  if (limiter.record_refusal(address, why, context_.time.monotonic_time())) {
    spdlog::warn(
        "agent connection from {} closed before TLS: {} agent connections {} already in the "
        "handshake or waiting for AUTH ({}); further refusals are counted and logged once a "
        "minute",
        AuthLimiter::key_of(address),
        global ? limiter.options().global : limiter.options().per_address,
        global ? "are" : "from this address are",
        global ? "limits.max_agent_handshakes" : "limits.max_agent_handshakes_per_address");
  }
  return {};
}

asio::awaitable<void> AgentGateway::serve(transport::tcp::socket socket, asio::ssl::context& tls) {
  // Over a handshake cap the socket closes here, before any TLS work.
  HandshakeSlot slot = admit(socket);
  if (!slot) co_return;
  auto conn = co_await transport::accept_tls(std::move(socket), tls, kHandshakeTimeout);
  if (!conn) {
    spdlog::warn("agent connection refused: {}", conn.error().message);
    co_return;
  }
  co_await serve_conn(std::move(conn).value(), std::move(slot));
}

asio::awaitable<void> AgentGateway::serve_plain(transport::tcp::socket socket) {
  HandshakeSlot slot = admit(socket);
  if (!slot) co_return;
  transport::error_code ignored;
  socket.set_option(transport::tcp::no_delay(true), ignored);
  co_await serve_conn(transport::make_tcp_conn(std::move(socket)), std::move(slot));
}

asio::awaitable<void> AgentGateway::serve_conn(std::unique_ptr<transport::Conn> conn,
                                               HandshakeSlot slot) {
  try {
    co_await run_session(std::move(conn), slot);
  } catch (const std::exception& e) {
    spdlog::error("agent session failed: {}", e.what());
  }
}

asio::awaitable<void> AgentGateway::run_session(std::unique_ptr<transport::Conn> conn,
                                                HandshakeSlot& handshake) {
  const std::string peer = conn->peer();
  // Before AUTH a frame longer than an AUTH payload is refused from its header: nobody can make
  // the core allocate for a length it announces before authenticating.
  mux::FrameReader reader(protocol::kVersion1, protocol::kMaxAuthPayload);
  mux::Frame frame;
  transport::error_code ec;
  auto got = co_await with_timeout(reader.next(*conn, frame, ec), kHandshakeTimeout);
  if (!got || !*got) {
    spdlog::warn("agent {}: no valid AUTH frame: {}{}", peer,
                 !got ? "timed out after 10 s" : got->error().message,
                 conn->is_tls() ? ""
                                : " (on the plain-TCP agent listener; a TLS agent must use the "
                                  "TLS one)");
    context_.metrics.agent_auth_failures.inc();
    co_return;
  }
  protocol::AuthResponse response;
  response.server_time = context_.registry.now_unix();
  bool quiet = false;  // counted by the auth limiter, summarised later instead of logged
  const auto refuse = [&](std::string reason, std::string_view code) -> asio::awaitable<void> {
    context_.metrics.agent_auth_failures.inc();
    if (!quiet) spdlog::warn("agent {}: refused: {}", peer, reason);
    response.success = false;
    response.error = std::move(reason);
    response.code = code;
    const std::string body = protocol::serialize(response);
    transport::error_code wec;
    co_await mux::write_frame(*conn, protocol::kVersion1, FrameType::kAuth, protocol::flags::kAck,
                              0, mux::as_bytes(body), wec);
    co_await conn->shutdown_send();
  };

  if (frame.header.frame_type() != FrameType::kAuth || frame.header.stream_id != 0) {
    co_await refuse("expected an AUTH frame on stream 0, got " +
                        std::string(protocol::type_name(frame.header.type)) + " on stream " +
                        std::to_string(frame.header.stream_id),
                    refusal::kBadRequest);
    co_return;
  }
  auto parsed = protocol::parse_auth_request(mux::as_text(frame.payload));
  if (!parsed) {
    co_await refuse(parsed.error().message, refusal::kBadRequest);
    co_return;
  }
  const protocol::AuthRequest& request = parsed.value();
  // Too many failures from this address: refused before its token is looked at.
  if (const auto wait = context_.auth_limiter.retry_after(peer, context_.time.monotonic_time());
      wait.count() > 0) {
    context_.auth_limiter.record_throttled(peer);
    quiet = true;
    co_await refuse("too many failed authentications from this address; retry in " +
                        std::to_string((wait.count() + 999) / 1000) + " s",
                    refusal::kThrottled);
    co_return;
  }
  // One view of the store for the whole AUTH: credentials, accounts and reservations agree.
  const std::shared_ptr<const ControlView> view = context_.control.load();
  const auto authenticated = authenticate(context_, view.get(), request.token);
  if (!authenticated) {
    quiet = !context_.auth_limiter.record_failure(peer, context_.time.monotonic_time());
    co_await refuse("authentication failed: " + authenticated.error().message, refusal::kBadToken);
    co_return;
  }
  const Authenticated& auth = authenticated.value();
  const Account* account = find_account(context_, view.get(), auth.account);
  if (account == nullptr) {
    co_await refuse("authentication failed: unknown account", refusal::kBadToken);
    co_return;
  }
  // Authenticated: what it holds from now on is bounded by its account's limits.
  handshake.release();
  if (context_.draining) {
    co_await refuse("the core is shutting down; retry shortly", refusal::kShuttingDown);
    co_return;
  }
  const LimitsConfig& limits = context_.config.limits;
  // What it serves: what it asks for; a v1 agent without subdomains its agent id; a registered
  // agent that serves what the core assigns (kAssignedTunnels, no tunnels asked) its
  // assignments in the store, possibly none yet.
  std::vector<protocol::TunnelRequest> wanted = request.tunnels;
  const bool assigned = serves_assignments(request, auth);
  if (!assigned && wanted.empty() && asks_for_assignments(request)) {
    co_await refuse(
        "the agent has no tunnels of its own and its token is not a registered agent's: only an "
        "agent registered through the API (POST /api/v1/agents) gets tunnels assigned by the "
        "core; give the agent tunnels, or use the registered agent's token",
        refusal::kBadRequest);
    co_return;
  }
  if (assigned) {
    wanted = assignments_of(context_, view.get(), auth.registered_id);
  } else if (wanted.empty()) {
    wanted.emplace_back();
  }
  const std::size_t asked = wanted.size();
  if (limits.max_tunnels_per_agent != 0 && asked > limits.max_tunnels_per_agent) {
    co_await refuse("the agent asks for " + std::to_string(asked) + " tunnels; at most " +
                        std::to_string(limits.max_tunnels_per_agent) +
                        " per agent (limits.max_tunnels_per_agent in the core's config)",
                    refusal::kBadRequest);
    co_return;
  }
  if (std::string bad = bad_agent_name(request); !bad.empty()) {
    co_await refuse(std::move(bad), refusal::kBadRequest);
    co_return;
  }
  // Sessions of one agent (its --connections) count once against max_agents.
  std::string agent_id = !auth.agent_id.empty() ? auth.agent_id : request.agent_id;
  if (agent_id.empty()) agent_id = new_request_id().substr(0, 12);
  switch (context_.registry.add_agent(account->name, agent_id, account->max_agents)) {
    case AddAgent::kAdded:
      break;
    case AddAgent::kTooManyAgents:
      co_await refuse("account " + account->name + " already has " +
                          std::to_string(account->max_agents) +
                          " agents connected (max_agents; raise accounts[].max_agents in the "
                          "core's config, 0 = unlimited)",
                      refusal::kLimit);
      co_return;
    case AddAgent::kTooManySessions:
      co_await refuse("agent " + agent_id + " of account " + account->name + " already has " +
                          std::to_string(kMaxSessionsPerAgent) +
                          " sessions to this core (lower the agent's --connections)",
                      refusal::kLimit);
      co_return;
  }
  struct AgentSlot {
    Registry& registry;
    std::string account;
    std::string agent_id;
    ~AgentSlot() { registry.remove_agent(account, agent_id); }
  } slot{context_.registry, account->name, agent_id};
  std::size_t serving = 0;
  if (!context_.registry.add_tunnels(account->name, asked, limits.max_tunnels_per_account,
                                     serving)) {
    co_await refuse("account " + account->name + " already serves " + std::to_string(serving) +
                        " tunnels; " + std::to_string(asked) + " more would pass " +
                        std::to_string(limits.max_tunnels_per_account) +
                        " (limits.max_tunnels_per_account in the core's config)",
                    refusal::kLimit);
    co_return;
  }
  struct TunnelSlots {
    Registry& registry;
    std::string account;
    std::size_t count;
    ~TunnelSlots() { registry.remove_tunnels(account, count); }
  } tunnel_slots{context_.registry, account->name, asked};

  const bool v2 = std::find(request.protocol_versions.begin(), request.protocol_versions.end(),
                            protocol::kVersion2) != request.protocol_versions.end();
  mux::Options options;
  options.version = v2 ? protocol::kVersion2 : protocol::kVersion1;
  options.initial_window = kCoreInitialWindow;
  if (v2 && request.initial_window != 0) options.peer_initial_window = request.initial_window;
  options.max_streams = context_.config.limits.max_streams_per_agent;
  options.window_growth_budget = context_.config.limits.window_budget_per_agent;
  options.shared_window_budget = context_.window_budget;
  options.heartbeat_interval = context_.config.heartbeat.interval;
  options.heartbeat_timeout = context_.config.heartbeat.timeout;
  options.send_heartbeats = v2;  // a v1 agent pings us; we only answer

  auto agent = std::make_shared<AgentSession>();
  agent->account = account->name;
  agent->registered_id = auth.registered_id;
  agent->assigned = assigned;
  agent->peer = peer;
  agent->version = request.version;
  agent->connected_at = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  agent->agent_id = agent_id;
  agent->name = request.name.empty() ? agent_id : request.name;
  agent->group = request.group;
  const std::string name = agent->agent_id + "@" + account->name;
  agent->session = std::make_shared<mux::Session>(std::move(conn), std::move(reader),
                                                  mux::Role::kCore, options, name, context_.time);
  agent->session->on_window_growth = [&gauge = context_.metrics.window_growth](std::int64_t d) {
    gauge.inc(static_cast<double>(d));
  };
  response.agent_id = agent->agent_id;
  response.protocol_version = options.version;
  response.heartbeat_interval_ms =
      static_cast<std::uint32_t>(context_.config.heartbeat.interval.count());
  response.initial_window = v2 ? kCoreInitialWindow : 0;

  struct Registration {
    Registry& registry;
    const AgentSession* agent;
    ~Registration() { registry.release_agent(agent); }
  } registration{context_.registry, agent.get()};

  if (!register_tunnels(wanted, assigned, request, auth, *account, view.get(), agent, response)) {
    // Before the refusal is sent: a refused AUTH must not keep (or hold) any of its names.
    context_.registry.rollback_agent(agent.get());
    std::string reasons;
    for (const auto& t : response.tunnels) {
      if (t.ok) continue;
      reasons += (reasons.empty() ? "" : "; ") + t.error;
      // The AUTH's code: a final reason if any tunnel has one, else the first.
      if (response.code.empty() ||
          (protocol::refusal_kind(t.code) == protocol::RefusalKind::kFinal &&
           protocol::refusal_kind(response.code) != protocol::RefusalKind::kFinal)) {
        response.code = t.code;
      }
    }
    response.tunnels.clear();
    context_.metrics.agent_auth_failures.inc();
    spdlog::warn("agent {} ({}): tunnels refused: {}", name, peer, reasons);
    response.success = false;
    response.error = reasons;
    std::vector<std::uint8_t> out;
    mux::append_frame(out, protocol::kVersion1, FrameType::kAuth, protocol::flags::kAck, 0,
                      mux::as_bytes(protocol::serialize(response)));
    agent->session->queue_raw(out);
    agent->session->close("tunnels refused", false);
    co_await agent->session->run();  // flushes the refusal, then closes
    co_return;
  }
  response.success = true;
  const std::string body = protocol::serialize(response);
  {
    // The AUTH reply always travels as version 1; the session switches after it.
    std::vector<std::uint8_t> out;
    mux::append_frame(out, protocol::kVersion1, FrameType::kAuth, protocol::flags::kAck, 0,
                      mux::as_bytes(body));
    agent->session->queue_raw(out);
  }
  {
    std::lock_guard lock(mutex_);
    std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
    sessions_.push_back(agent);
  }
  context_.metrics.agents.inc();
  context_.metrics.agent_sessions.inc();
  std::string names;
  for (const auto& h : agent->hostnames) names += (names.empty() ? "" : ", ") + h;
  spdlog::info("agent {} connected from {} (protocol v{}, name {}{}{}): {}", name, peer,
               options.version, agent->name, agent->group.empty() ? "" : ", group ", agent->group,
               names);
  announce_shared_names(*agent);
  // The agent's health checks (a NOTICE from the agent, protocol/health_notice.hpp).
  agent->session->on_notice = [this, a = agent.get()](std::uint16_t index,
                                                      const std::string& message) {
    const auto health = protocol::parse_health_notice(message);
    if (!health) return;
    const std::string why(health->reason);
    if (!a->set_health(index, health->healthy, why)) return;
    if (health->healthy) {
      context_.metrics.unhealthy_tunnels.dec();
    } else {
      context_.metrics.unhealthy_tunnels.inc();
    }
    const std::string tunnel =
        index < a->hostnames.size() ? a->hostnames[index] : "tunnel #" + std::to_string(index);
    if (health->healthy) {
      spdlog::info("agent {}@{}: the app of {} is healthy again; it gets requests", a->agent_id,
                   a->account, tunnel);
    } else {
      spdlog::warn(
          "agent {}@{}: the app of {} is unhealthy ({}); its requests go to the "
          "name's other agents, or get 503 when none is healthy",
          a->agent_id, a->account, tunnel, why);
    }
  };
  // The agent rotates this session (or leaves): new requests go to its other sessions.
  agent->session->on_go_away = [a = agent.get()](protocol::ErrorCode, const std::string& why) {
    a->withdrawn.store(true, std::memory_order_relaxed);
    spdlog::info("agent {}@{} withdraws a session: {}", a->agent_id, a->account, why);
  };
  if (context_.draining) agent->session->go_away(protocol::ErrorCode::kGoingAway, "draining");
  const std::string reason = co_await agent->session->run();
  agent->session->on_go_away = nullptr;
  agent->session->on_notice = nullptr;
  context_.metrics.unhealthy_tunnels.dec(
      static_cast<double>(std::popcount(agent->unhealthy.load(std::memory_order_relaxed))));
  context_.metrics.agents.dec();
  spdlog::info("agent {} disconnected: {}", name, reason);
}

bool AgentGateway::register_tunnels(const std::vector<protocol::TunnelRequest>& tunnels,
                                    bool assigned, const protocol::AuthRequest& request,
                                    const Authenticated& auth, const Account& account,
                                    const ControlView* view,
                                    const std::shared_ptr<AgentSession>& agent,
                                    protocol::AuthResponse& response) {
  bool all_ok = true;
  const std::string& id_for_default_name =
      !auth.agent_id.empty() ? auth.agent_id : request.agent_id;
  for (std::size_t i = 0; i < tunnels.size(); ++i) {
    const auto& t = tunnels[i];
    protocol::TunnelResult result;
    result.type = t.type;
    std::string error;
    std::string_view code = refusal::kBadRequest;
    // The account's quotas on live traffic: only a core with a store has them.
    auto quota = view != nullptr ? context_.quotas.get(account.name) : nullptr;
    auto throttle = make_throttle(context_, account, t, quota);
    result.bandwidth = throttle ? throttle->tunnel_rate() : 0;
    if (auto proxy = check_proxy_protocol(t); !proxy) {
      error = std::move(proxy).error().message;
    } else if (t.type == "tcp" || t.type == "udp") {
      if (auto registered =
              register_port(account, view, t, i, agent, throttle, quota, result, code);
          !registered) {
        error = std::move(registered).error().message;
      }
    } else if (t.type != "http") {
      error = "tunnel type \"" + t.type + "\" is not supported by this core (http, tcp, udp)";
    } else if (auto named = resolve_hostname(context_, view, account, t, id_for_default_name, code);
               !named) {
      error = std::move(named).error().message;
    } else if (auto filters = tunnel_filters_
                                  ? tunnel_filters_(t, account, quota, named.value().host)
                                  : std::shared_ptr<const FilterChain>{};
               !filters) {
      code = refusal::kBadRequest;
      error = std::move(filters).error().message;
    } else {
      const std::string& host = named.value().host;
      Route route{agent,
                  static_cast<std::uint16_t>(i),
                  t.local,
                  throttle,
                  std::move(filters).value(),
                  nullptr,
                  usage_of(context_, view, account.name, host, false),
                  quota};
      route.metrics = context_.tunnel_metrics.series(host, account.name);
      code = refusal::kNameTaken;
      std::vector<Route> displaced;
      if (auto claimed =
              context_.registry.claim(host, account.name, std::move(route),
                                      named.value().explicit_name, &displaced, account.max_names)) {
        tell_displaced(host, account.name, displaced);
        result.ok = true;
        result.name = host;
        result.url = public_url(context_, host);
        agent->hostnames.push_back(host);
        agent->locals.push_back(t.local);
      } else {
        error = std::move(claimed).error().message;
        if (error.find("accounts[].max_names") != std::string::npos) code = refusal::kLimit;
      }
    }
    if (result.ok && assigned) result.local = t.local;
    if (!result.ok) {
      all_ok = false;
      result.error = error;
      result.code = code;
      agent->hostnames.emplace_back();
      agent->locals.push_back(t.local);
    }
    response.tunnels.push_back(std::move(result));
  }
  return all_ok;
}

common::Status AgentGateway::register_port(const Account& account, const ControlView* view,
                                           const protocol::TunnelRequest& request,
                                           std::size_t index,
                                           const std::shared_ptr<AgentSession>& agent,
                                           std::shared_ptr<const Throttle> throttle,
                                           const std::shared_ptr<AccountQuota>& quota,
                                           protocol::TunnelResult& result, std::string_view& code) {
  const PortProtocol protocol = request.type == "udp" ? PortProtocol::kUdp : PortProtocol::kTcp;
  PortRules rules = port_rules(context_.config, account);
  if (agent->session->version() < protocol::kVersion2) {
    return common::fail(request.type +
                        " tunnels need protocol version 2 (the agent offered only 1)");
  }
  // A port the store reserves belongs to its account: others are refused it (and the core never
  // chooses it for them), its own account may have it even outside its ranges.
  bool reserved_here = false;
  if (view != nullptr && !view->ports.empty()) {
    if (const auto* reserved = view->reservation_for_port(protocol, request.remote_port)) {
      if (reserved->account != account.name) {
        code = refusal::kNotAllowed;
        return common::fail("port " + std::to_string(request.remote_port) +
                            " is reserved by another account");
      }
      reserved_here = true;
    }
    rules.reserved_for_others = [view, protocol, &account](std::uint16_t port) {
      const auto* r = view->reservation_for_port(protocol, port);
      return r != nullptr && r->account != account.name;
    };
  }
  if (request.remote_port != 0 && !reserved_here && !rules.allows(request.remote_port)) {
    code = refusal::kNotAllowed;
    return common::fail("port " + std::to_string(request.remote_port) +
                        " is outside the ranges allowed for account " + account.name + " (" +
                        rules.describe_ranges() + ")");
  }
  // Every port is a descriptor, and so is every visitor's connection: keep some for those.
  if (auto reserve = check_descriptor_reserve(context_.config.limits.fd_reserve); !reserve) {
    code = refusal::kUnavailable;
    return reserve;
  }
  auto executor = agent->session->get_executor();
  const OpenPort open = [&](std::uint16_t port) { return open_port_(protocol, executor, port); };
  auto filters = connection_filters_ ? connection_filters_(request, account, quota)
                                     : std::shared_ptr<const ConnectionFilterChain>{};
  if (!filters) {
    code = refusal::kBadRequest;
    return std::move(filters).error();
  }
  // Usage: the store tunnel that reserves the port asked for, else the account's own.
  const std::string usage_key =
      request.remote_port != 0 ? ControlView::port_key(protocol, request.remote_port) : "";
  Route route{agent,
              static_cast<std::uint16_t>(index),
              request.local,
              std::move(throttle),
              {},
              std::move(filters).value(),
              usage_of(context_, view, account.name, usage_key, true),
              quota};
  auto claimed = context_.registry.claim_port(
      protocol, request.remote_port, account.name, rules, std::move(route), open,
      // The agent id changes when the agent restarts; the account and local target do not.
      request.local, account.max_names);
  if (!claimed) {
    // The registry's reasons, by what they say (registry.cpp): another account holds the port,
    // the account's port limit, or no port could be opened.
    const std::string& error = claimed.error().message;
    if (error.find("by another account") != std::string::npos) {
      code = refusal::kNameTaken;
    } else if (error.find("ports.max_per_account") != std::string::npos ||
               error.find("accounts[].max_names") != std::string::npos) {
      code = refusal::kLimit;
    } else {
      code = refusal::kUnavailable;
    }
    return claimed.error();
  }
  result.ok = true;
  result.name = public_port_host(context_) + ":" + std::to_string(claimed.value());
  result.url = request.type + "://" + result.name;
  agent->hostnames.push_back(result.url);
  agent->locals.push_back(request.local);
  return common::success();
}

std::string AgentSession::health_reason(std::uint16_t index) const {
  std::lock_guard lock(health_mutex_);
  auto it = health_reasons_.find(index);
  return it == health_reasons_.end() ? std::string() : it->second;
}

bool AgentSession::set_health(std::uint16_t index, bool healthy, const std::string& reason) {
  if (index >= 64) return false;
  {
    std::lock_guard lock(health_mutex_);
    if (healthy) {
      health_reasons_.erase(index);
    } else {
      health_reasons_[index] = reason.empty() ? std::string("health check failing") : reason;
    }
  }
  const std::uint64_t bit = std::uint64_t{1} << index;
  const std::uint64_t before = healthy ? unhealthy.fetch_and(~bit, std::memory_order_relaxed)
                                       : unhealthy.fetch_or(bit, std::memory_order_relaxed);
  return ((before & bit) != 0) == healthy;
}

void AgentGateway::tell_displaced(const std::string& host, const std::string& account,
                                  const std::vector<Route>& displaced) {
  for (const Route& route : displaced) {
    if (!route.agent || !route.agent->session) continue;
    const AgentSession& loser = *route.agent;
    spdlog::warn(
        "agent {}@{}: {} taken over by account {}, whose config names it exactly (an exact name "
        "wins over another account's pattern such as \"*\"); the agent's tunnel to {} stays "
        "connected but gets no traffic for it{}",
        loser.agent_id, loser.account, host, account, route.local,
        loser.session->version() < protocol::kVersion2 ? " (a v1 agent: not told)" : "");
    // The other account is not named to this tenant.
    std::string message = host +
                          " was taken over by another account whose configuration names it "
                          "exactly (an exact name wins over \"*\" and other patterns); this "
                          "tunnel no longer gets its traffic. Choose another name.";
    asio::post(loser.session->get_executor(),
               [session = loser.session, index = route.tunnel_index, message = std::move(message)] {
                 session->notice(index, message);
               });
  }
}

void AgentGateway::announce_shared_names(const AgentSession& agent) {
  for (const std::string& host : agent.hostnames) {
    if (host.empty() || host.find("://") != std::string::npos) continue;  // refused, or a port
    const std::vector<Route> routes = context_.registry.routes_of(host);
    // Several sessions of one agent (its --connections) are one agent here: tell only when
    // another agent serves the name, and only at this agent's first session.
    std::set<std::string> agents;
    std::size_t own_sessions = 0;
    for (const Route& route : routes) {
      if (!route.agent) continue;
      agents.insert(route.agent->agent_id);
      if (route.agent->agent_id == agent.agent_id) ++own_sessions;
    }
    if (agents.size() < 2 || own_sessions > 1) continue;
    const std::string shared =
        ": requests are shared round robin between " + std::to_string(agents.size()) + " agents";
    spdlog::info("{} is served by {} agents of account {} (round robin)", host, agents.size(),
                 agent.account);
    for (const Route& route : routes) {
      if (!route.agent || !route.agent->session) continue;
      if (route.agent.get() != &agent && route.agent->agent_id == agent.agent_id) continue;
      std::string message =
          route.agent.get() == &agent
              ? fmt::format("{} was already served by another agent of account {}{}", host,
                            agent.account, shared)
              : fmt::format("agent {} now serves {} too{}", agent.agent_id, host, shared);
      asio::post(route.agent->session->get_executor(),
                 [session = route.agent->session, index = route.tunnel_index,
                  message = std::move(message)] { session->notice(index, message); });
    }
  }
}

void AgentGateway::go_away_all() {
  std::lock_guard lock(mutex_);
  for (auto& weak : sessions_) {
    if (auto agent = weak.lock()) {
      asio::post(agent->session->get_executor(), [session = agent->session] {
        session->go_away(protocol::ErrorCode::kGoingAway, "the core is shutting down");
      });
    }
  }
}

void AgentGateway::close_all() {
  std::lock_guard lock(mutex_);
  for (auto& weak : sessions_) {
    if (auto agent = weak.lock()) {
      asio::post(agent->session->get_executor(),
                 [session = agent->session] { session->close("the core is shutting down"); });
    }
  }
}

std::size_t AgentGateway::session_count() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(sessions_.begin(), sessions_.end(),
                                                [](const auto& w) { return !w.expired(); }));
}

std::vector<std::shared_ptr<AgentSession>> AgentGateway::agents() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<AgentSession>> out;
  for (const auto& weak : sessions_) {
    if (auto agent = weak.lock()) out.push_back(std::move(agent));
  }
  return out;
}

}  // namespace tunnel::core
