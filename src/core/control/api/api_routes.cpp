// The API's routes: tunnels, agents, usage and quotas (issue 17). Each handler checks the
// caller's role on the object's account (another account's object is 404, a weaker role 403),
// validates every field before it changes anything, and audits what it changed.
#include <ctime>

#include "common/byte_rate.hpp"
#include "common/net_address.hpp"
#include "core/control/api/api_internal.hpp"

namespace tunnel::core::api {
namespace {

using store::Agent;
using store::Tunnel;
using store::TunnelType;

constexpr std::int64_t kMaxUsageRange = 366 * 24 * 3600;

std::optional<json> null_or(bool absent, json value) {
  if (absent) return json(nullptr);
  return value;
}

std::string public_url(const ApiOptions& o, const std::string& host) {
  if (o.https_port != 0) {
    return "https://" + host + (o.https_port == 443 ? "" : ":" + std::to_string(o.https_port));
  }
  return "http://" + host +
         (o.http_port == 0 || o.http_port == 80 ? "" : ":" + std::to_string(o.http_port));
}

json tunnel_json(const Tunnel& t, const ApiOptions& o) {
  std::string url;
  if (t.type == TunnelType::kHttp) {
    url = public_url(o, t.name.empty() ? t.domain : t.name + "." + o.domain);
  } else {
    url = std::string(store::to_string(t.type)) + "://" + o.domain + ":" + std::to_string(t.port);
  }
  return {{"id", t.id},
          {"account", t.account_id},
          {"type", store::to_string(t.type)},
          {"name", *null_or(t.name.empty(), t.name)},
          {"domain", *null_or(t.domain.empty(), t.domain)},
          {"port", *null_or(t.port == 0, t.port)},
          {"url", url},
          {"bandwidth", t.bandwidth},
          {"proxy_protocol", t.proxy_protocol},
          {"agent", *null_or(!t.agent_id, t.agent_id.value_or(0))},
          {"local", *null_or(t.local.empty(), t.local)},
          {"created_at", t.created_at},
          {"updated_at", t.updated_at},
          {"created_by", *null_or(!t.created_by, t.created_by.value_or(0))}};
}

json agent_json(const Agent& a) {
  return {{"id", a.id},
          {"account", a.account_id},
          {"name", a.name},
          {"created_at", a.created_at},
          {"created_by", *null_or(!a.created_by, a.created_by.value_or(0))}};
}

json quota_json(const store::Quota& q) {
  return {{"account", q.account_id},
          {"max_agents", q.max_agents},
          {"max_tunnels", q.max_tunnels},
          {"max_connections", q.max_connections},
          {"max_requests_per_second", q.max_requests_per_second},
          {"bandwidth", q.bandwidth},
          {"bytes_per_month", q.bytes_per_month}};
}

ApiResponse not_found(std::string_view what, Id id) {
  return problem(404, "not-found", "no " + std::string(what) + " " + std::to_string(id));
}

ApiResponse forbidden(Role have, Role need, std::string_view what) {
  return problem(403, "forbidden",
                 std::string(what) + " needs the " + std::string(store::to_string(need)) +
                     " role or stronger; this key has " + std::string(store::to_string(have)));
}

// A member manages only the tunnels and agents it created; admins and owners manage all of their
// account's. nullopt = `role` may change the object.
std::optional<ApiResponse> not_its_own(const Call& call, Role role,
                                       const std::optional<Id>& created_by, std::string_view what) {
  if (at_least(role, Role::kAdmin)) return std::nullopt;
  if (created_by && *created_by == call.who.user.id) return std::nullopt;
  return problem(403, "forbidden",
                 std::string(what) +
                     ": the member role manages only the tunnels and agents its user created; "
                     "this one was created by " +
                     (created_by ? "user " + std::to_string(*created_by)
                                 : std::string("a user that no longer exists")) +
                     " (an admin or owner of the account may change it)");
}

ApiResponse with_etag(ApiResponse r, const json& stored) {
  r.headers.emplace_back("ETag", etag_of(stored));
  return r;
}

// 412 when If-Match is given and names another version than `stored`'s.
std::optional<ApiResponse> precondition(const Call& call, const json& stored) {
  const std::string_view if_match = call.request.header("If-Match");
  if (if_match.empty() || if_match == "*") return std::nullopt;
  const std::string current = etag_of(stored);
  std::string_view rest = if_match;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view tag = rest.substr(0, comma);
    while (!tag.empty() && tag.front() == ' ') tag.remove_prefix(1);
    while (!tag.empty() && tag.back() == ' ') tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == current) return std::nullopt;
    if (comma == rest.npos) break;
    rest.remove_prefix(comma + 1);
  }
  return problem(412, "stale",
                 "If-Match " + std::string(if_match) + " is not the current version (" + current +
                     "); GET it again and retry");
}

// A bandwidth: bytes per second as an integer, or a rate as text ("10MiB/s").
std::optional<std::uint64_t> bandwidth_field(Fields& f, std::string_view name, const json& body) {
  if (!f.has(name)) return std::nullopt;
  if (body.at(name).is_string()) {
    auto rate = common::parse_byte_rate(body.at(name).get<std::string>());
    if (!rate) {
      f.error(std::string(name), rate.error().message);
      return std::nullopt;
    }
    return rate.value();
  }
  auto n = f.integer(name, 0, std::numeric_limits<std::int64_t>::max());
  if (!n) return std::nullopt;
  return static_cast<std::uint64_t>(*n);
}

// The account a new object goes to: "account" in the body, else the caller's. An account the
// caller cannot see is reported like one that does not exist.
std::optional<Id> target_account(Call& call, Fields& f) {
  bool ignored = false;
  if (!f.has("account")) return call.who.user.account_id;
  auto id = f.id("account", ignored);
  if (!id) {
    if (ignored) f.error("account", "must be an account id, not null");
    return std::nullopt;
  }
  auto account = call.store().get_account(*id);
  if (!account || !account.value() || !call.role_on(*id)) {
    f.error("account", "no account " + std::to_string(*id));
    return std::nullopt;
  }
  return *id;
}

// The checks of a tunnel that the store cannot make: the base domain, the port ranges, the
// agent of the same account (without saying whether another account's exists), the local
// target's form.
void check_tunnel(Call& call, const Tunnel& t, Fields& f) {
  const ApiOptions& o = call.state.options;
  if (t.type == TunnelType::kHttp) {
    if (t.name.empty() && t.domain.empty() && !f.has("name") && !f.has("domain")) {
      f.error("name", "required for an http tunnel (or give a domain)");
    }
    if (!t.name.empty() && t.name.size() + 1 + o.domain.size() > 253) {
      f.error("name", "too long for the base domain " + o.domain);
    }
    if (!t.domain.empty() && t.domain.size() > 253) f.error("domain", "at most 253 characters");
    if (t.port != 0) f.error("port", "only tcp and udp tunnels have a port");
  } else {
    if (!t.name.empty())
      f.error("name",
              "a " + std::string(store::to_string(t.type)) + " tunnel has a port, not a name");
    if (!t.domain.empty())
      f.error("domain",
              "a " + std::string(store::to_string(t.type)) + " tunnel has a port, not a domain");
    if (t.port == 0 && !f.has("port")) f.error("port", "required for a tcp or udp tunnel");
    if (t.port != 0) {
      bool allowed = false;
      std::string ranges;
      for (const auto& r : o.port_ranges) {
        allowed = allowed || r.contains(t.port);
        ranges += (ranges.empty() ? "" : ", ") + std::to_string(r.first) +
                  (r.first == r.last ? "" : "-" + std::to_string(r.last));
      }
      if (!allowed) {
        f.error("port", "port " + std::to_string(t.port) + " is outside the allowed ranges " +
                            ranges + " (the configuration's ports.ranges)");
      }
    }
  }
  if (o.reservation_check && (!t.name.empty() || !t.domain.empty())) {
    auto account = call.store().get_account(t.account_id);
    if (account && account.value()) {
      const std::string& owner = account.value()->name;
      if (!t.name.empty()) {
        if (auto why = o.reservation_check(owner, t.name, false); !why.empty())
          f.error("name", why);
      }
      if (!t.domain.empty()) {
        if (auto why = o.reservation_check(owner, t.domain, true); !why.empty())
          f.error("domain", why);
      }
    }
  }
  if (t.agent_id) {
    auto agent = call.store().get_agent(*t.agent_id);
    if (!agent || !agent.value() || agent.value()->account_id != t.account_id) {
      f.error("agent", "no agent " + std::to_string(*t.agent_id) + " in account " +
                           std::to_string(t.account_id));
    } else if (const auto role = call.role_on(t.account_id);
               role && not_its_own(call, *role, agent.value()->created_by, "")) {
      f.error("agent", "agent " + std::to_string(*t.agent_id) +
                           " was registered by another user; the member role assigns tunnels "
                           "only to agents its user registered");
    }
  }
  if (!t.local.empty()) {
    if (!t.agent_id) {
      f.error("local", "only a tunnel assigned to an agent has a local target (give \"agent\")");
    } else if (auto a = common::parse_dial_address(t.local, ""); !a || a.value().host.empty()) {
      f.error("local", "must be \"host:port\" (e.g. \"127.0.0.1:3000\")");
    }
  }
}

// Reads the tunnel fields of a POST or PATCH body into `t`.
void read_tunnel_fields(const json& body, Fields& f, Tunnel& t) {
  if (auto v = f.string("name")) t.name = common::ascii_lower(*v);
  if (f.is_null("name")) t.name.clear();
  if (auto v = f.string("domain")) t.domain = common::ascii_lower(*v);
  if (f.is_null("domain")) t.domain.clear();
  if (f.is_null("port")) {
    t.port = 0;
  } else if (auto v = f.integer("port", 1, 65535)) {
    t.port = static_cast<std::uint16_t>(*v);
  }
  if (auto v = bandwidth_field(f, "bandwidth", body)) t.bandwidth = *v;
  if (auto v = f.boolean("proxy_protocol")) t.proxy_protocol = *v;
  bool clear = false;
  if (auto v = f.id("agent", clear)) t.agent_id = *v;
  if (clear) {
    t.agent_id.reset();
    if (!f.has("local")) t.local.clear();
  }
  if (f.is_null("local")) {
    t.local.clear();
  } else if (auto v = f.string("local")) {
    t.local = *v;
  }
}

// 429 when the account holds `count` objects and its quota `limit` allows no more.
std::optional<ApiResponse> over_quota(std::string_view what, std::uint64_t limit, std::size_t count,
                                      Id account) {
  if (limit == 0 || count < limit) return std::nullopt;
  return problem(429, "quota-exceeded",
                 "account " + std::to_string(account) + " holds " + std::to_string(count) + " " +
                     std::string(what) + "s, its quota max_" + std::string(what) + "s is " +
                     std::to_string(limit));
}

// Tunnels.

ApiResponse create_tunnel(Call& call) {
  std::optional<ApiResponse> error;
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"name", "domain", "type", "port", "bandwidth", "proxy_protocol", "agent",
                   "local", "account"});
  Tunnel t;
  if (auto type = f.string("type")) {
    auto parsed = store::parse_tunnel_type(*type);
    if (!parsed) {
      f.error("type", "must be \"http\", \"tcp\" or \"udp\", not \"" + *type + "\"");
    } else {
      t.type = *parsed;
    }
  }
  read_tunnel_fields(*body, f, t);
  auto account = target_account(call, f);
  if (!account) return f.response();
  t.account_id = *account;
  t.created_by = call.who.user.id;
  const Role role = *call.role_on(t.account_id);
  if (!at_least(role, Role::kMember)) return forbidden(role, Role::kMember, "creating a tunnel");
  check_tunnel(call, t, f);  // every problem at once, also after the fields' own
  if (!f.ok()) return f.response();
  auto quota = call.store().get_quota(t.account_id);
  if (!quota) return store_error(quota.error());
  if (quota.value().max_tunnels != 0) {
    auto existing = call.store().list_tunnels(t.account_id);
    if (!existing) return store_error(existing.error());
    if (auto over = over_quota("tunnel", quota.value().max_tunnels, existing.value().size(),
                               t.account_id)) {
      return *over;
    }
  }
  auto created = call.store().create_tunnel(t);
  if (!created) return store_error(created.error());
  const json out = tunnel_json(created.value(), call.state.options);
  call.changed("tunnel.create", "tunnel:" + std::to_string(created.value().id), nullptr, out);
  auto r = with_etag(json_response(201, out), out);
  r.headers.emplace_back("Location", "/api/v1/tunnels/" + std::to_string(created.value().id));
  return r;
}

// The tunnel of the path, if the caller may see it.
std::optional<Tunnel> visible_tunnel(Call& call, std::optional<ApiResponse>& error) {
  auto t = call.store().get_tunnel(call.ids.at(0));
  if (!t) {
    error = store_error(t.error());
    return std::nullopt;
  }
  if (!t.value() || !call.role_on(t.value()->account_id)) {
    error = not_found("tunnel", call.ids.at(0));
    return std::nullopt;
  }
  return *t.value();
}

ApiResponse get_tunnel(Call& call) {
  std::optional<ApiResponse> error;
  auto t = visible_tunnel(call, error);
  if (!t) return *error;
  const json stored = tunnel_json(*t, call.state.options);
  json out = stored;
  out["live_sessions"] = call.state.hooks.tunnel_sessions(t->id);
  return with_etag(json_response(200, out), stored);
}

ApiResponse list_tunnels(Call& call) {
  std::optional<Id> account;
  std::vector<FieldError> errors;
  std::optional<TunnelType> type;
  std::optional<Id> agent;
  const auto id_param = [&](const std::string& name) -> std::optional<Id> {
    auto it = call.query.find(name);
    if (it == call.query.end()) return std::nullopt;
    const auto& s = it->second;
    if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), ::isdigit) ||
        std::stoll(s) <= 0) {
      errors.push_back({name, "not an id: \"" + s + "\""});
      return std::nullopt;
    }
    return std::stoll(s);
  };
  account = id_param("account");
  agent = id_param("agent");
  if (auto it = call.query.find("type"); it != call.query.end()) {
    type = store::parse_tunnel_type(it->second);
    if (!type) errors.push_back({"type", "must be http, tcp or udp, not \"" + it->second + "\""});
  }
  if (!errors.empty()) {
    return problem(400, "invalid-query", errors.front().field + ": " + errors.front().problem,
                   errors);
  }
  std::optional<ApiResponse> error;
  const auto q = page_query(call, error);
  if (!q) return *error;
  if (account && !call.role_on(*account)) return not_found("account", *account);
  if (!account && !call.who.operator_account) account = call.who.user.account_id;
  // One page from the store (keyset: id > cursor, LIMIT), however long the list.
  auto tunnels = call.store().find_tunnels({.account_id = account,
                                            .type = type,
                                            .agent_id = agent,
                                            .after = q->after,
                                            .limit = q->limit + 1});
  if (!tunnels) return store_error(tunnels.error());
  std::vector<json> items;
  items.reserve(tunnels.value().size());
  for (const auto& t : tunnels.value()) items.push_back(tunnel_json(t, call.state.options));
  return json_response(200, page_of(std::move(items), *q));
}

ApiResponse update_tunnel(Call& call) {
  std::optional<ApiResponse> error;
  auto t = visible_tunnel(call, error);
  if (!t) return *error;
  const Role role = *call.role_on(t->account_id);
  if (!at_least(role, Role::kMember)) return forbidden(role, Role::kMember, "changing a tunnel");
  if (auto refused = not_its_own(call, role, t->created_by, "changing a tunnel")) return *refused;
  const json before = tunnel_json(*t, call.state.options);
  if (auto stale = precondition(call, before)) return *stale;
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"name", "domain", "port", "bandwidth", "proxy_protocol", "agent", "local",
                   "type", "account"});
  for (const char* fixed : {"type", "account"}) {
    if (f.has(fixed)) f.error(fixed, "cannot change (delete the tunnel and create it again)");
  }
  Tunnel n = *t;
  read_tunnel_fields(*body, f, n);
  if (!f.ok()) return f.response();
  check_tunnel(call, n, f);
  if (!f.ok()) return f.response();
  auto updated = call.store().update_tunnel(n);
  if (!updated) return store_error(updated.error());
  const json after = tunnel_json(updated.value(), call.state.options);
  call.changed("tunnel.update", "tunnel:" + std::to_string(n.id), before, after);
  return with_etag(json_response(200, after), after);
}

ApiResponse delete_tunnel(Call& call) {
  std::optional<ApiResponse> error;
  auto t = visible_tunnel(call, error);
  if (!t) return *error;
  const Role role = *call.role_on(t->account_id);
  if (!at_least(role, Role::kMember)) return forbidden(role, Role::kMember, "deleting a tunnel");
  if (auto refused = not_its_own(call, role, t->created_by, "deleting a tunnel")) return *refused;
  const json before = tunnel_json(*t, call.state.options);
  if (auto stale = precondition(call, before)) return *stale;
  auto removed = call.store().remove_tunnel(t->id);
  if (!removed) return store_error(removed.error());
  if (!removed.value()) return not_found("tunnel", t->id);
  call.changed("tunnel.delete", "tunnel:" + std::to_string(t->id), before, nullptr);
  return json_response(204, nullptr);
}

// Agents.

ApiResponse create_agent(Call& call) {
  std::optional<ApiResponse> error;
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"name", "account"});
  Agent a;
  if (auto name = f.string("name", true)) a.name = *name;
  auto account = target_account(call, f);
  if (!f.ok()) return f.response();
  a.account_id = *account;
  a.created_by = call.who.user.id;
  const Role role = *call.role_on(a.account_id);
  if (!at_least(role, Role::kMember)) return forbidden(role, Role::kMember, "registering an agent");
  auto quota = call.store().get_quota(a.account_id);
  if (!quota) return store_error(quota.error());
  if (quota.value().max_agents != 0) {
    auto existing = call.store().list_agents(a.account_id);
    if (!existing) return store_error(existing.error());
    if (auto over =
            over_quota("agent", quota.value().max_agents, existing.value().size(), a.account_id)) {
      return *over;
    }
  }
  auto created = call.store().create_agent(a);
  if (!created) return store_error(created.error());
  const json stored = agent_json(created.value().object);
  call.changed("agent.create", "agent:" + std::to_string(created.value().object.id), nullptr,
               stored);
  json out = stored;
  out["token"] = created.value().secret;
  const ApiOptions& o = call.state.options;
  if (!o.agent_server.empty()) out["server"] = o.agent_server;
  if (!o.agent_fingerprint.empty()) out["fingerprint"] = o.agent_fingerprint;
  auto r = json_response(201, out);
  r.headers.emplace_back("Location", "/api/v1/agents/" + std::to_string(created.value().object.id));
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

std::optional<Agent> visible_agent(Call& call, std::optional<ApiResponse>& error) {
  auto a = call.store().get_agent(call.ids.at(0));
  if (!a) {
    error = store_error(a.error());
    return std::nullopt;
  }
  if (!a.value() || !call.role_on(a.value()->account_id)) {
    error = not_found("agent", call.ids.at(0));
    return std::nullopt;
  }
  return *a.value();
}

ApiResponse get_agent(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_agent(call, error);
  if (!a) return *error;
  const json stored = agent_json(*a);
  json out = stored;
  json sessions = json::array();
  for (const auto& s : call.state.hooks.agent_sessions(a->id)) {
    sessions.push_back({{"session_id", s.session_id},
                        {"name", s.name},
                        {"group", s.group},
                        {"address", s.address},
                        {"connected_at", s.connected_at},
                        {"protocol", s.protocol},
                        {"version", s.version},
                        {"open_streams", s.open_streams},
                        {"serving", s.serving}});
  }
  out["connected"] = !sessions.empty();
  out["sessions"] = std::move(sessions);
  return with_etag(json_response(200, out), stored);
}

ApiResponse list_agents(Call& call) {
  std::optional<Id> account;
  if (auto it = call.query.find("account"); it != call.query.end()) {
    const auto& s = it->second;
    if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), ::isdigit) ||
        std::stoll(s) <= 0) {
      return problem(400, "invalid-query", "account: not an id: \"" + s + "\"",
                     {{"account", "not an id: \"" + s + "\""}});
    }
    account = std::stoll(s);
    if (!call.role_on(*account)) return not_found("account", *account);
  }
  if (!account && !call.who.operator_account) account = call.who.user.account_id;
  std::optional<ApiResponse> error;
  const auto q = page_query(call, error);
  if (!q) return *error;
  // One page from the store (keyset: id > cursor, LIMIT).
  auto agents =
      call.store().find_agents({.account_id = account, .after = q->after, .limit = q->limit + 1});
  if (!agents) return store_error(agents.error());
  std::vector<json> items;
  items.reserve(agents.value().size());
  for (const auto& a : agents.value()) items.push_back(agent_json(a));
  json out = page_of(std::move(items), *q);
  return json_response(200, out);
}

ApiResponse delete_agent(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_agent(call, error);
  if (!a) return *error;
  const Role role = *call.role_on(a->account_id);
  if (!at_least(role, Role::kMember)) return forbidden(role, Role::kMember, "removing an agent");
  if (auto refused = not_its_own(call, role, a->created_by, "removing an agent")) return *refused;
  const json before = agent_json(*a);
  if (auto stale = precondition(call, before)) return *stale;
  auto removed = call.store().remove_agent(a->id);
  if (!removed) return store_error(removed.error());
  if (!removed.value()) return not_found("agent", a->id);
  call.changed("agent.delete", "agent:" + std::to_string(a->id), before, nullptr);
  return json_response(204, nullptr);
}

// Accounts' usage and quota.

// The account of the path if the caller may see it.
std::optional<store::Account> visible_account(Call& call, std::optional<ApiResponse>& error) {
  auto a = call.store().get_account(call.ids.at(0));
  if (!a) {
    error = store_error(a.error());
    return std::nullopt;
  }
  if (!a.value() || !call.role_on(a.value()->id)) {
    error = not_found("account", call.ids.at(0));
    return std::nullopt;
  }
  return *a.value();
}

// Unix seconds, or RFC 3339 in UTC ("2026-12-07T13:00:00Z").
std::optional<std::int64_t> parse_time(const std::string& s) {
  if (!s.empty() && s.size() <= 12 && std::all_of(s.begin(), s.end(), ::isdigit)) {
    return std::stoll(s);
  }
  std::tm tm{};
  char z = 0;
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z, &consumed) != 7 ||
      z != 'Z' || static_cast<std::size_t>(consumed) != s.size() || tm.tm_mon < 1 ||
      tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<std::int64_t>(::timegm(&tm));
}

ApiResponse get_usage(Call& call) {
  std::optional<ApiResponse> error;
  auto account = visible_account(call, error);
  if (!account) return *error;
  std::vector<FieldError> errors;
  const std::int64_t now = call.state.now();
  std::int64_t to = now;
  std::int64_t from = now - 24 * 3600;
  if (auto it = call.query.find("to"); it != call.query.end()) {
    if (auto t = parse_time(it->second)) {
      to = *t;
    } else {
      errors.push_back({"to", "use Unix seconds or RFC 3339 UTC (2026-12-07T13:00:00Z)"});
    }
  }
  if (auto it = call.query.find("from"); it != call.query.end()) {
    if (auto t = parse_time(it->second)) {
      from = *t;
    } else {
      errors.push_back({"from", "use Unix seconds or RFC 3339 UTC (2026-12-07T13:00:00Z)"});
    }
  } else {
    from = to - 24 * 3600;
  }
  std::string by = "hour";
  if (auto it = call.query.find("by"); it != call.query.end()) {
    by = it->second;
    if (by != "hour" && by != "day") errors.push_back({"by", "must be hour or day"});
  }
  std::optional<Id> tunnel;
  if (auto it = call.query.find("tunnel"); it != call.query.end()) {
    const auto& s = it->second;
    if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), ::isdigit) ||
        std::stoll(s) <= 0) {
      errors.push_back({"tunnel", "not an id: \"" + s + "\""});
    } else {
      tunnel = std::stoll(s);
    }
  }
  if (errors.empty() && from >= to) errors.push_back({"from", "must be before to"});
  if (errors.empty() && to - from > kMaxUsageRange) {
    errors.push_back({"from", "at most 366 days before to"});
  }
  if (!errors.empty()) {
    return problem(400, "invalid-query", errors.front().field + ": " + errors.front().problem,
                   errors);
  }
  // Hours that start in [from, to).
  auto rows = call.store().list_usage(account->id, (from + 3599) / 3600, (to + 3599) / 3600);
  if (!rows) return store_error(rows.error());
  const std::int64_t width = by == "day" ? 86400 : 3600;
  std::map<std::pair<std::int64_t, Id>, store::Usage> buckets;
  store::Usage total;
  for (const auto& u : rows.value()) {
    if (tunnel ? u.tunnel_id != *tunnel : false) continue;
    const std::int64_t start = u.hour * 3600 / width * width;
    auto& b = buckets[{start, u.tunnel_id}];
    b.tunnel_id = u.tunnel_id;
    b.hour = start;
    b.requests += u.requests;
    b.bytes_in += u.bytes_in;
    b.bytes_out += u.bytes_out;
    b.errors += u.errors;
    if (u.tunnel_id == (tunnel ? *tunnel : 0)) {
      total.requests += u.requests;
      total.bytes_in += u.bytes_in;
      total.bytes_out += u.bytes_out;
      total.errors += u.errors;
    }
  }
  json list = json::array();
  for (const auto& [key, b] : buckets) {
    list.push_back({{"start", b.hour},
                    {"tunnel", *null_or(b.tunnel_id == 0, b.tunnel_id)},
                    {"requests", b.requests},
                    {"bytes_in", b.bytes_in},
                    {"bytes_out", b.bytes_out},
                    {"errors", b.errors}});
  }
  return json_response(200, {{"account", account->id},
                             {"from", from},
                             {"to", to},
                             {"by", by},
                             {"tunnel", *null_or(!tunnel, tunnel.value_or(0))},
                             {"buckets", std::move(list)},
                             {"total",
                              {{"requests", total.requests},
                               {"bytes_in", total.bytes_in},
                               {"bytes_out", total.bytes_out},
                               {"errors", total.errors}}}});
}

ApiResponse get_quota(Call& call) {
  std::optional<ApiResponse> error;
  auto account = visible_account(call, error);
  if (!account) return *error;
  auto q = call.store().get_quota(account->id);
  if (!q) return store_error(q.error());
  const json out = quota_json(q.value());
  return with_etag(json_response(200, out), out);
}

ApiResponse set_quota(Call& call) {
  std::optional<ApiResponse> error;
  auto account = visible_account(call, error);
  if (!account) return *error;
  if (!call.who.operator_account || !at_least(call.who.role, Role::kAdmin)) {
    return problem(403, "forbidden",
                   "quotas are set by the operator (an owner or admin of the operator account)");
  }
  auto q = call.store().get_quota(account->id);
  if (!q) return store_error(q.error());
  const json before = quota_json(q.value());
  if (auto stale = precondition(call, before)) return *stale;
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"max_agents", "max_tunnels", "max_connections", "max_requests_per_second",
                   "bandwidth", "bytes_per_month"});
  store::Quota n = q.value();
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  const auto set = [&](std::string_view name, std::uint64_t& field) {
    if (auto v = f.integer(name, 0, kMax)) field = static_cast<std::uint64_t>(*v);
  };
  set("max_agents", n.max_agents);
  set("max_tunnels", n.max_tunnels);
  set("max_connections", n.max_connections);
  set("max_requests_per_second", n.max_requests_per_second);
  set("bytes_per_month", n.bytes_per_month);
  if (auto v = bandwidth_field(f, "bandwidth", *body)) n.bandwidth = *v;
  if (!f.ok()) return f.response();
  auto saved = call.store().set_quota(n);
  if (!saved) return store_error(saved.error());
  const json after = quota_json(saved.value());
  call.changed("quota.update", "account:" + std::to_string(account->id), before, after);
  return with_etag(json_response(200, after), after);
}

// Accounts, users, teams, role bindings, API keys.

json account_json(const store::Account& a) {
  return {
      {"id", a.id}, {"name", a.name}, {"configured", a.configured}, {"created_at", a.created_at}};
}
json user_json(const store::User& u) {
  return {{"id", u.id},
          {"account", u.account_id},
          {"name", u.name},
          {"email", u.email},
          {"created_at", u.created_at}};
}
json team_json(const store::Team& t) {
  return {{"id", t.id}, {"account", t.account_id}, {"name", t.name}, {"created_at", t.created_at}};
}
json binding_json(const store::RoleBinding& b) {
  return {{"id", b.id},
          {"account", b.account_id},
          {"user", *null_or(!b.user_id, b.user_id.value_or(0))},
          {"team", *null_or(!b.team_id, b.team_id.value_or(0))},
          {"role", store::to_string(b.role)}};
}
json key_json(const store::ApiKey& k, Id account) {
  return {{"id", k.id},
          {"user", k.user_id},
          {"account", account},
          {"name", k.name},
          {"role", *null_or(!k.role, k.role ? std::string(store::to_string(*k.role)) : "")},
          {"expires_at", *null_or(!k.expires_at, k.expires_at.value_or(0))},
          {"revoked_at", *null_or(!k.revoked_at, k.revoked_at.value_or(0))},
          {"created_at", k.created_at}};
}

bool operator_admin(const Call& call) {
  return call.who.operator_account && at_least(call.who.role, Role::kAdmin);
}

ApiResponse list_accounts(Call& call) {
  std::vector<json> items;
  if (call.who.operator_account) {
    auto all = call.store().list_accounts();
    if (!all) return store_error(all.error());
    for (const auto& a : all.value()) items.push_back(account_json(a));
  } else {
    auto own = call.store().get_account(call.who.user.account_id);
    if (!own) return store_error(own.error());
    if (own.value()) items.push_back(account_json(*own.value()));
  }
  std::optional<ApiResponse> error;
  json out = page(std::move(items), call, error);
  if (error) return *error;
  return json_response(200, out);
}

ApiResponse create_account(Call& call) {
  if (!operator_admin(call)) {
    return problem(403, "forbidden",
                   "accounts are created by the operator (an owner or admin "
                   "of the operator account)");
  }
  std::optional<ApiResponse> error;
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"name"});
  store::Account a;
  if (auto name = f.string("name", true)) a.name = *name;
  if (!f.ok()) return f.response();
  auto created = call.store().create_account(a);
  if (!created) return store_error(created.error());
  const json out = account_json(created.value());
  call.changed("account.create", "account:" + std::to_string(created.value().id), nullptr, out);
  auto r = with_etag(json_response(201, out), out);
  r.headers.emplace_back("Location", "/api/v1/accounts/" + std::to_string(created.value().id));
  return r;
}

ApiResponse get_account(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_account(call, error);
  if (!a) return *error;
  const json out = account_json(*a);
  return with_etag(json_response(200, out), out);
}

ApiResponse update_account(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_account(call, error);
  if (!a) return *error;
  const Role role = *call.role_on(a->id);
  if (!at_least(role, Role::kOwner) && !operator_admin(call)) {
    return forbidden(role, Role::kOwner, "renaming an account");
  }
  const json before = account_json(*a);
  if (auto stale = precondition(call, before)) return *stale;
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"name"});
  store::Account n = *a;
  if (auto name = f.string("name")) n.name = *name;
  if (a->name == kOperatorAccount && n.name != a->name) {
    f.error("name", "the operator account keeps its name");
  }
  if (!f.ok()) return f.response();
  auto updated = call.store().update_account(n);
  if (!updated) return store_error(updated.error());
  const json after = account_json(updated.value());
  call.changed("account.update", "account:" + std::to_string(a->id), before, after);
  return with_etag(json_response(200, after), after);
}

ApiResponse delete_account(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_account(call, error);
  if (!a) return *error;
  if (!operator_admin(call)) {
    return problem(403, "forbidden",
                   "accounts are removed by the operator (an owner or admin "
                   "of the operator account)");
  }
  if (a->name == kOperatorAccount && !a->configured) {
    return problem(409, "conflict", "the operator account cannot be removed");
  }
  const json before = account_json(*a);
  if (auto stale = precondition(call, before)) return *stale;
  auto removed = call.store().remove_account(a->id);
  if (!removed) return store_error(removed.error());
  if (!removed.value()) return not_found("account", a->id);
  call.changed("account.delete", "account:" + std::to_string(a->id), before, nullptr);
  return json_response(204, nullptr);
}

// Users.

std::optional<store::User> visible_user(Call& call, Id id, std::optional<ApiResponse>& error) {
  auto u = call.store().get_user(id);
  if (!u) {
    error = store_error(u.error());
    return std::nullopt;
  }
  if (!u.value() || !call.role_on(u.value()->account_id)) {
    error = not_found("user", id);
    return std::nullopt;
  }
  return *u.value();
}

ApiResponse list_users(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_account(call, error);
  if (!a) return *error;
  auto users = call.store().list_users(a->id);
  if (!users) return store_error(users.error());
  std::vector<json> items;
  for (const auto& u : users.value()) items.push_back(user_json(u));
  json out = page(std::move(items), call, error);
  if (error) return *error;
  return json_response(200, out);
}

void read_user_fields(Fields& f, store::User& u, bool create) {
  if (auto name = f.string("name", create)) u.name = *name;
  if (auto email = f.string("email")) {
    if (!email->empty() && (email->find('@') == std::string::npos || email->size() > 254)) {
      f.error("email", "not an email address");
    }
    u.email = *email;
  }
}

ApiResponse create_user(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_account(call, error);
  if (!a) return *error;
  const Role role = *call.role_on(a->id);
  if (!at_least(role, Role::kAdmin)) return forbidden(role, Role::kAdmin, "adding a user");
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"name", "email"});
  store::User u;
  u.account_id = a->id;
  read_user_fields(f, u, true);
  if (!f.ok()) return f.response();
  auto created = call.store().create_user(u);
  if (!created) return store_error(created.error());
  const json out = user_json(created.value());
  call.changed("user.create", "user:" + std::to_string(created.value().id), nullptr, out);
  auto r = with_etag(json_response(201, out), out);
  r.headers.emplace_back("Location", "/api/v1/users/" + std::to_string(created.value().id));
  return r;
}

ApiResponse get_user(Call& call) {
  std::optional<ApiResponse> error;
  auto u = visible_user(call, call.ids.at(0), error);
  if (!u) return *error;
  const json out = user_json(*u);
  return with_etag(json_response(200, out), out);
}

ApiResponse update_user(Call& call) {
  std::optional<ApiResponse> error;
  auto u = visible_user(call, call.ids.at(0), error);
  if (!u) return *error;
  const Role role = *call.role_on(u->account_id);
  if (!at_least(role, Role::kAdmin) && u->id != call.who.user.id) {
    return forbidden(role, Role::kAdmin, "changing another user");
  }
  const json before = user_json(*u);
  if (auto stale = precondition(call, before)) return *stale;
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"name", "email"});
  store::User n = *u;
  read_user_fields(f, n, false);
  if (!f.ok()) return f.response();
  auto updated = call.store().update_user(n);
  if (!updated) return store_error(updated.error());
  const json after = user_json(updated.value());
  call.changed("user.update", "user:" + std::to_string(u->id), before, after);
  return with_etag(json_response(200, after), after);
}

ApiResponse delete_user(Call& call) {
  std::optional<ApiResponse> error;
  auto u = visible_user(call, call.ids.at(0), error);
  if (!u) return *error;
  const Role role = *call.role_on(u->account_id);
  if (!at_least(role, Role::kAdmin)) return forbidden(role, Role::kAdmin, "removing a user");
  if (u->id == call.who.user.id) {
    return problem(409, "conflict", "a key cannot remove its own user (use another user's key)");
  }
  const json before = user_json(*u);
  if (auto stale = precondition(call, before)) return *stale;
  auto removed = call.store().remove_user(u->id);
  if (!removed) return store_error(removed.error());
  if (!removed.value()) return not_found("user", u->id);
  call.changed("user.delete", "user:" + std::to_string(u->id), before, nullptr);
  return json_response(204, nullptr);
}

// Teams.

std::optional<store::Team> visible_team(Call& call, std::optional<ApiResponse>& error) {
  auto t = call.store().get_team(call.ids.at(0));
  if (!t) {
    error = store_error(t.error());
    return std::nullopt;
  }
  if (!t.value() || !call.role_on(t.value()->account_id)) {
    error = not_found("team", call.ids.at(0));
    return std::nullopt;
  }
  return *t.value();
}

json team_with_members(Call& call, const store::Team& t, std::optional<ApiResponse>& error) {
  json out = team_json(t);
  auto members = call.store().list_team_members(t.id);
  if (!members) {
    error = store_error(members.error());
    return out;
  }
  out["members"] = members.value();
  return out;
}

ApiResponse list_teams(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_account(call, error);
  if (!a) return *error;
  auto teams = call.store().list_teams(a->id);
  if (!teams) return store_error(teams.error());
  std::vector<json> items;
  for (const auto& t : teams.value()) {
    items.push_back(team_with_members(call, t, error));
    if (error) return *error;
  }
  json out = page(std::move(items), call, error);
  if (error) return *error;
  return json_response(200, out);
}

ApiResponse create_team(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_account(call, error);
  if (!a) return *error;
  const Role role = *call.role_on(a->id);
  if (!at_least(role, Role::kAdmin)) return forbidden(role, Role::kAdmin, "creating a team");
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"name"});
  store::Team t;
  t.account_id = a->id;
  if (auto name = f.string("name", true)) t.name = *name;
  if (!f.ok()) return f.response();
  auto created = call.store().create_team(t);
  if (!created) return store_error(created.error());
  const json out = team_json(created.value());
  call.changed("team.create", "team:" + std::to_string(created.value().id), nullptr, out);
  auto r = with_etag(json_response(201, out), out);
  r.headers.emplace_back("Location", "/api/v1/teams/" + std::to_string(created.value().id));
  return r;
}

ApiResponse get_team(Call& call) {
  std::optional<ApiResponse> error;
  auto t = visible_team(call, error);
  if (!t) return *error;
  json out = team_with_members(call, *t, error);
  if (error) return *error;
  return with_etag(json_response(200, out), team_json(*t));
}

ApiResponse update_team(Call& call) {
  std::optional<ApiResponse> error;
  auto t = visible_team(call, error);
  if (!t) return *error;
  const Role role = *call.role_on(t->account_id);
  if (!at_least(role, Role::kAdmin)) return forbidden(role, Role::kAdmin, "changing a team");
  const json before = team_json(*t);
  if (auto stale = precondition(call, before)) return *stale;
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"name"});
  store::Team n = *t;
  if (auto name = f.string("name")) n.name = *name;
  if (!f.ok()) return f.response();
  auto updated = call.store().update_team(n);
  if (!updated) return store_error(updated.error());
  const json after = team_json(updated.value());
  call.changed("team.update", "team:" + std::to_string(t->id), before, after);
  return with_etag(json_response(200, after), after);
}

ApiResponse delete_team(Call& call) {
  std::optional<ApiResponse> error;
  auto t = visible_team(call, error);
  if (!t) return *error;
  const Role role = *call.role_on(t->account_id);
  if (!at_least(role, Role::kAdmin)) return forbidden(role, Role::kAdmin, "removing a team");
  const json before = team_json(*t);
  if (auto stale = precondition(call, before)) return *stale;
  auto removed = call.store().remove_team(t->id);
  if (!removed) return store_error(removed.error());
  if (!removed.value()) return not_found("team", t->id);
  call.changed("team.delete", "team:" + std::to_string(t->id), before, nullptr);
  return json_response(204, nullptr);
}

ApiResponse add_team_member(Call& call) {
  std::optional<ApiResponse> error;
  auto t = visible_team(call, error);
  if (!t) return *error;
  const Role role = *call.role_on(t->account_id);
  if (!at_least(role, Role::kAdmin)) return forbidden(role, Role::kAdmin, "changing a team");
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"user"});
  bool clear = false;
  auto user = f.id("user", clear);
  if (!user && !clear && !f.has("user")) f.error("user", "required");
  if (clear) f.error("user", "must be a user id, not null");
  if (user) {
    auto u = call.store().get_user(*user);
    if (!u || !u.value() || u.value()->account_id != t->account_id) {
      f.error("user",
              "no user " + std::to_string(*user) + " in account " + std::to_string(t->account_id));
    }
  }
  if (!f.ok()) return f.response();
  const json before = team_with_members(call, *t, error);
  if (auto added = call.store().add_team_member(t->id, *user); !added) {
    return store_error(added.error());
  }
  json after = team_with_members(call, *t, error);
  if (error) return *error;
  call.changed("team.add_member", "team:" + std::to_string(t->id), before, after);
  return json_response(200, after);
}

ApiResponse remove_team_member(Call& call) {
  std::optional<ApiResponse> error;
  auto t = visible_team(call, error);
  if (!t) return *error;
  const Role role = *call.role_on(t->account_id);
  if (!at_least(role, Role::kAdmin)) return forbidden(role, Role::kAdmin, "changing a team");
  const json before = team_with_members(call, *t, error);
  auto removed = call.store().remove_team_member(t->id, call.ids.at(1));
  if (!removed) return store_error(removed.error());
  if (!removed.value()) return not_found("member", call.ids.at(1));
  json after = team_with_members(call, *t, error);
  call.changed("team.remove_member", "team:" + std::to_string(t->id), before, after);
  return json_response(204, nullptr);
}

// Role bindings.

ApiResponse list_bindings(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_account(call, error);
  if (!a) return *error;
  auto bindings = call.store().list_role_bindings(a->id);
  if (!bindings) return store_error(bindings.error());
  std::vector<json> items;
  for (const auto& b : bindings.value()) items.push_back(binding_json(b));
  json out = page(std::move(items), call, error);
  if (error) return *error;
  return json_response(200, out);
}

// Admins manage bindings up to admin; only owners touch owner bindings.
std::optional<ApiResponse> may_bind(const Call& call, Id account, Role role) {
  const Role have = *call.role_on(account);
  if (!at_least(have, Role::kAdmin)) return forbidden(have, Role::kAdmin, "managing roles");
  if (role == Role::kOwner && !at_least(have, Role::kOwner)) {
    return forbidden(have, Role::kOwner, "giving or taking the owner role");
  }
  return std::nullopt;
}

ApiResponse create_binding(Call& call) {
  std::optional<ApiResponse> error;
  auto a = visible_account(call, error);
  if (!a) return *error;
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"user", "team", "role"});
  store::RoleBinding b;
  b.account_id = a->id;
  bool clear = false;
  if (auto user = f.id("user", clear)) b.user_id = *user;
  if (auto team = f.id("team", clear)) b.team_id = *team;
  if (f.has("user") == f.has("team")) {
    f.error("user", "give either user or team (one of the two)");
  }
  if (auto role = f.string("role", true)) {
    if (auto parsed = store::parse_role(*role)) {
      b.role = *parsed;
    } else {
      f.error("role", "must be owner, admin, member or viewer, not \"" + *role + "\"");
    }
  }
  if (b.user_id) {
    auto u = call.store().get_user(*b.user_id);
    if (!u || !u.value() || u.value()->account_id != a->id) {
      f.error("user",
              "no user " + std::to_string(*b.user_id) + " in account " + std::to_string(a->id));
    }
  }
  if (b.team_id) {
    auto t = call.store().get_team(*b.team_id);
    if (!t || !t.value() || t.value()->account_id != a->id) {
      f.error("team",
              "no team " + std::to_string(*b.team_id) + " in account " + std::to_string(a->id));
    }
  }
  if (auto refused = may_bind(call, a->id, b.role)) return *refused;
  if (!f.ok()) return f.response();
  auto created = call.store().create_role_binding(b);
  if (!created) return store_error(created.error());
  const json out = binding_json(created.value());
  call.changed("role_binding.create", "role_binding:" + std::to_string(created.value().id), nullptr,
               out);
  auto r = json_response(201, out);
  r.headers.emplace_back("Location", "/api/v1/role-bindings/" + std::to_string(created.value().id));
  return r;
}

ApiResponse delete_binding(Call& call) {
  auto b = call.store().get_role_binding(call.ids.at(0));
  if (!b) return store_error(b.error());
  if (!b.value() || !call.role_on(b.value()->account_id)) {
    return not_found("role binding", call.ids.at(0));
  }
  if (auto refused = may_bind(call, b.value()->account_id, b.value()->role)) return *refused;
  const json before = binding_json(*b.value());
  auto removed = call.store().remove_role_binding(b.value()->id);
  if (!removed) return store_error(removed.error());
  if (!removed.value()) return not_found("role binding", call.ids.at(0));
  call.changed("role_binding.delete", "role_binding:" + std::to_string(b.value()->id), before,
               nullptr);
  return json_response(204, nullptr);
}

// API keys.

// The key of the path with its user's account, if the caller may see it: its own keys, or any
// key of an account where it is an admin.
std::optional<std::pair<store::ApiKey, Id>> visible_key(Call& call,
                                                        std::optional<ApiResponse>& error) {
  auto k = call.store().get_api_key(call.ids.at(0));
  if (!k) {
    error = store_error(k.error());
    return std::nullopt;
  }
  if (k.value()) {
    auto u = call.store().get_user(k.value()->user_id);
    if (u && u.value()) {
      const Id account = u.value()->account_id;
      const auto role = call.role_on(account);
      if (k.value()->user_id == call.who.user.id || (role && at_least(*role, Role::kAdmin))) {
        return std::pair(*k.value(), account);
      }
    }
  }
  error = not_found("API key", call.ids.at(0));
  return std::nullopt;
}

ApiResponse list_keys(Call& call) {
  Id user = call.who.user.id;
  Id account = call.who.user.account_id;
  if (auto it = call.query.find("user"); it != call.query.end()) {
    const auto& s = it->second;
    if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), ::isdigit) ||
        std::stoll(s) <= 0) {
      return problem(400, "invalid-query", "user: not an id: \"" + s + "\"",
                     {{"user", "not an id: \"" + s + "\""}});
    }
    std::optional<ApiResponse> error;
    auto u = visible_user(call, std::stoll(s), error);
    if (!u) return *error;
    const Role role = *call.role_on(u->account_id);
    if (u->id != call.who.user.id && !at_least(role, Role::kAdmin)) {
      return forbidden(role, Role::kAdmin, "listing another user's keys");
    }
    user = u->id;
    account = u->account_id;
  }
  auto keys = call.store().list_api_keys(user);
  if (!keys) return store_error(keys.error());
  std::vector<json> items;
  for (const auto& k : keys.value()) items.push_back(key_json(k, account));
  std::optional<ApiResponse> error;
  json out = page(std::move(items), call, error);
  if (error) return *error;
  return json_response(200, out);
}

ApiResponse create_key(Call& call) {
  std::optional<ApiResponse> error;
  auto body = Fields::parse(call.request.body, error);
  if (!body) return *error;
  Fields f(*body, {"name", "user", "role", "expires_at"});
  store::ApiKey k;
  k.user_id = call.who.user.id;
  Id account = call.who.user.account_id;
  if (auto name = f.string("name", true)) k.name = *name;
  bool clear = false;
  if (auto user = f.id("user", clear)) {
    auto u = call.store().get_user(*user);
    if (!u || !u.value() || !call.role_on(u.value()->account_id)) {
      f.error("user", "no user " + std::to_string(*user));
    } else {
      k.user_id = *user;
      account = u.value()->account_id;
    }
  }
  if (f.has("role") && !f.is_null("role")) {
    if (auto role = f.string("role")) {
      if (auto parsed = store::parse_role(*role)) {
        k.role = *parsed;
      } else {
        f.error("role", "must be owner, admin, member or viewer, not \"" + *role + "\"");
      }
    }
  }
  if (f.has("expires_at") && !f.is_null("expires_at")) {
    const json& v = body->at("expires_at");
    std::optional<std::int64_t> at;
    if (v.is_string()) {
      at = parse_time(v.get<std::string>());
    } else if (v.is_number_integer()) {
      at = f.integer("expires_at", 0, std::numeric_limits<std::int64_t>::max());
    }
    if (!at) {
      f.error("expires_at", "use Unix seconds or RFC 3339 UTC (2027-01-01T00:00:00Z)");
    } else if (*at <= call.state.now()) {
      f.error("expires_at", "must be in the future");
    } else {
      k.expires_at = *at;
    }
  }
  if (!f.ok()) return f.response();
  // No key stronger than the caller: another user's key, or a key without a role, is
  // narrowed to the caller's role.
  const Role have = *call.role_on(account);
  if (k.user_id != call.who.user.id && !at_least(have, Role::kAdmin)) {
    return forbidden(have, Role::kAdmin, "creating a key for another user");
  }
  if (k.role && !at_least(have, *k.role)) {
    return forbidden(have, *k.role,
                     "creating a key with the " + std::string(store::to_string(*k.role)) + " role");
  }
  if (!k.role && (k.user_id != call.who.user.id || call.who.key.role)) k.role = have;
  auto created = call.store().create_api_key(k);
  if (!created) return store_error(created.error());
  const json stored = key_json(created.value().object, account);
  call.changed("api_key.create", "api_key:" + std::to_string(created.value().object.id), nullptr,
               stored);
  json out = stored;
  out["key"] = created.value().secret;
  auto r = json_response(201, out);
  r.headers.emplace_back("Location", "/api/v1/keys/" + std::to_string(created.value().object.id));
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

ApiResponse get_key(Call& call) {
  std::optional<ApiResponse> error;
  auto k = visible_key(call, error);
  if (!k) return *error;
  const json out = key_json(k->first, k->second);
  return with_etag(json_response(200, out), out);
}

ApiResponse revoke_key(Call& call) {
  std::optional<ApiResponse> error;
  auto k = visible_key(call, error);
  if (!k) return *error;
  const json before = key_json(k->first, k->second);
  if (k->first.revoked_at) return json_response(204, nullptr);
  auto revoked = call.store().revoke_api_key(k->first.id);
  if (!revoked) return store_error(revoked.error());
  auto now = call.store().get_api_key(k->first.id);
  const json after = now && now.value() ? key_json(*now.value(), k->second) : json(nullptr);
  call.changed("api_key.revoke", "api_key:" + std::to_string(k->first.id), before, after);
  return json_response(204, nullptr);
}

constexpr Route kRoutes[] = {
    {"POST", "/api/v1/tunnels", create_tunnel},
    {"GET", "/api/v1/tunnels", list_tunnels},
    {"GET", "/api/v1/tunnels/{id}", get_tunnel},
    {"PATCH", "/api/v1/tunnels/{id}", update_tunnel},
    {"DELETE", "/api/v1/tunnels/{id}", delete_tunnel},
    {"POST", "/api/v1/agents", create_agent},
    {"GET", "/api/v1/agents", list_agents},
    {"GET", "/api/v1/agents/{id}", get_agent},
    {"DELETE", "/api/v1/agents/{id}", delete_agent},
    {"GET", "/api/v1/accounts/{id}/usage", get_usage},
    {"GET", "/api/v1/accounts/{id}/quota", get_quota},
    {"POST", "/api/v1/accounts/{id}/quota", set_quota},
    {"GET", "/api/v1/accounts", list_accounts},
    {"POST", "/api/v1/accounts", create_account},
    {"GET", "/api/v1/accounts/{id}", get_account},
    {"PATCH", "/api/v1/accounts/{id}", update_account},
    {"DELETE", "/api/v1/accounts/{id}", delete_account},
    {"GET", "/api/v1/accounts/{id}/users", list_users},
    {"POST", "/api/v1/accounts/{id}/users", create_user},
    {"GET", "/api/v1/users/{id}", get_user},
    {"PATCH", "/api/v1/users/{id}", update_user},
    {"DELETE", "/api/v1/users/{id}", delete_user},
    {"GET", "/api/v1/accounts/{id}/teams", list_teams},
    {"POST", "/api/v1/accounts/{id}/teams", create_team},
    {"GET", "/api/v1/teams/{id}", get_team},
    {"PATCH", "/api/v1/teams/{id}", update_team},
    {"DELETE", "/api/v1/teams/{id}", delete_team},
    {"POST", "/api/v1/teams/{id}/members", add_team_member},
    {"DELETE", "/api/v1/teams/{id}/members/{user}", remove_team_member},
    {"GET", "/api/v1/accounts/{id}/role-bindings", list_bindings},
    {"POST", "/api/v1/accounts/{id}/role-bindings", create_binding},
    {"DELETE", "/api/v1/role-bindings/{id}", delete_binding},
    {"GET", "/api/v1/keys", list_keys},
    {"POST", "/api/v1/keys", create_key},
    {"GET", "/api/v1/keys/{id}", get_key},
    {"DELETE", "/api/v1/keys/{id}", revoke_key},
    {"GET", "/api/v1/openapi.json", [](Call&) { return openapi(); }},
};

}  // namespace

std::span<const Route> route_table() {
  return kRoutes;
}

}  // namespace tunnel::core::api
