// The API's dispatcher: the route table, authentication and its rate limit, Idempotency-Key,
// the problem documents; and bootstrap(). The routes themselves are in api_routes.cpp.
#include "core/control/api/api.hpp"

#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "common/json.hpp"
#include "core/control/api/api_internal.hpp"

namespace tunnel::core::api {
namespace {

constexpr std::string_view kPrefix = "/api/v1";
constexpr std::size_t kMaxIdempotencyKey = 255;

std::int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() + 0 && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto part = query.substr(0, amp);
    if (!part.empty()) {
      const auto eq = part.find('=');
      out[percent_decode(part.substr(0, eq))] =
          eq == part.npos ? std::string() : percent_decode(part.substr(eq + 1));
    }
    if (amp == query.npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

// Matches `path` against `pattern`; each "{...}" segment must be a positive integer.
// 1 = match, 0 = no match, -1 = the shape matches but an id is not a number (`bad` names it).
int match(std::string_view pattern, std::string_view path, std::vector<Id>& ids, std::string& bad) {
  ids.clear();
  while (!pattern.empty() || !path.empty()) {
    if (pattern.empty() || path.empty() || pattern[0] != '/' || path[0] != '/') return 0;
    pattern.remove_prefix(1);
    path.remove_prefix(1);
    const auto pe = pattern.find('/');
    const auto se = path.find('/');
    const auto p = pattern.substr(0, pe);
    const auto s = path.substr(0, se);
    if (p.starts_with('{')) {
      if (s.empty()) return 0;
      Id value = 0;
      bool digits = s.size() <= 18 &&
                    std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (digits) value = std::stoll(std::string(s));
      if (!digits || value <= 0) {
        bad = std::string(p.substr(1, p.size() - 2)) + "=" + std::string(s);
        ids.push_back(0);
      } else {
        ids.push_back(value);
      }
    } else if (p != s) {
      return 0;
    }
    pattern.remove_prefix(pe == pattern.npos ? pattern.size() : pe);
    path.remove_prefix(se == path.npos ? path.size() : se);
  }
  return bad.empty() ? 1 : -1;
}

const char* json_type(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

// The caller's role on its account: the strongest of its bindings (its own and its teams'),
// narrowed by the key's role. nullopt = none.
common::Result<std::optional<Role>> role_of(store::Store& store, const store::User& user,
                                            const store::ApiKey& key) {
  auto bindings = store.list_role_bindings(user.account_id);
  if (!bindings) return bindings.error();
  std::optional<Role> best;
  for (const auto& b : bindings.value()) {
    bool mine = b.user_id && *b.user_id == user.id;
    if (!mine && b.team_id) {
      auto members = store.list_team_members(*b.team_id);
      if (!members) return members.error();
      mine = std::find(members.value().begin(), members.value().end(), user.id) !=
             members.value().end();
    }
    if (mine && (!best || at_least(b.role, *best))) best = b.role;
  }
  if (best && key.role && !at_least(*key.role, *best)) best = key.role;
  return best;
}

}  // namespace

ApiResponse openapi() {
  ApiResponse r;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = std::string(openapi_document());
  return r;
}

std::string_view ApiRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return {};
}

ApiResponse problem(int status, std::string_view slug, std::string detail,
                    std::vector<FieldError> errors) {
  static const std::map<int, const char*> kTitles = {{400, "Bad Request"},
                                                     {401, "Unauthorized"},
                                                     {403, "Forbidden"},
                                                     {404, "Not Found"},
                                                     {405, "Method Not Allowed"},
                                                     {409, "Conflict"},
                                                     {411, "Length Required"},
                                                     {412, "Precondition Failed"},
                                                     {413, "Content Too Large"},
                                                     {415, "Unsupported Media Type"},
                                                     {422, "Unprocessable Content"},
                                                     {429, "Too Many Requests"},
                                                     {500, "Internal Server Error"},
                                                     {503, "Service Unavailable"}};
  json body = {{"type", "urn:tunnel:problem:" + std::string(slug)},
               {"title", kTitles.contains(status) ? kTitles.at(status) : "Error"},
               {"status", status},
               {"detail", std::move(detail)}};
  if (!errors.empty()) {
    json list = json::array();
    for (auto& e : errors) list.push_back({{"field", e.field}, {"problem", e.problem}});
    body["errors"] = std::move(list);
  }
  ApiResponse r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/problem+json");
  r.body = body.dump();
  return r;
}

ApiResponse problem_response(int status, std::string_view slug, std::string detail) {
  return problem(status, slug, std::move(detail));
}

ApiResponse json_response(int status, const json& body) {
  ApiResponse r;
  r.status = status;
  if (status != 204) {
    r.headers.emplace_back("Content-Type", "application/json");
    r.body = body.dump();
  }
  return r;
}

std::optional<json> Fields::parse(const std::string& body, std::optional<ApiResponse>& error) {
  if (body.empty()) {
    error = problem(400, "malformed-json", "the request needs a JSON object as its body");
    return std::nullopt;
  }
  auto unique = common::parse_json_unique_keys(body);
  const std::string& duplicate = unique.duplicate;
  json& parsed = unique.value;
  if (!duplicate.empty()) {
    error = problem(400, "malformed-json", "the field \"" + duplicate + "\" appears twice",
                    {{duplicate, "appears twice"}});
    return std::nullopt;
  }
  if (parsed.is_discarded()) {
    error = problem(400, "malformed-json", "the body is not valid JSON");
    return std::nullopt;
  }
  if (!parsed.is_object()) {
    error = problem(400, "malformed-json",
                    std::string("the body must be a JSON object, not ") + json_type(parsed));
    return std::nullopt;
  }
  return std::move(parsed);
}

Fields::Fields(const json& object, std::vector<std::string_view> allowed) : object_(object) {
  for (const auto& [name, value] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string known;
      for (auto a : allowed) known += (known.empty() ? "" : ", ") + std::string(a);
      error(name, "unknown field (known: " + known + ")");
    }
  }
}

std::optional<std::string> Fields::string(std::string_view name, bool required) {
  if (!has(name)) {
    if (required) error(std::string(name), "required");
    return std::nullopt;
  }
  const json& v = object_.at(name);
  if (!v.is_string()) {
    error(std::string(name), std::string("must be a string, not ") + json_type(v));
    return std::nullopt;
  }
  auto s = v.get<std::string>();
  if (s.size() > 1024) {
    error(std::string(name), "at most 1024 characters");
    return std::nullopt;
  }
  return s;
}

std::optional<std::int64_t> Fields::integer(std::string_view name, std::int64_t min,
                                            std::int64_t max, bool required) {
  if (!has(name)) {
    if (required) error(std::string(name), "required");
    return std::nullopt;
  }
  const json& v = object_.at(name);
  if (!v.is_number_integer()) {
    error(std::string(name),
          std::string("must be an integer, not ") + (v.is_number() ? "a fraction" : json_type(v)));
    return std::nullopt;
  }
  const bool negative =
      v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() < 0;
  if (!negative && v.get<std::uint64_t>() > static_cast<std::uint64_t>(max)) {
    error(std::string(name), "must be at most " + std::to_string(max));
    return std::nullopt;
  }
  const std::int64_t n = v.get<std::int64_t>();
  if (n < min || n > max) {
    error(std::string(name), "must be from " + std::to_string(min) + " to " + std::to_string(max));
    return std::nullopt;
  }
  return n;
}

std::optional<bool> Fields::boolean(std::string_view name) {
  if (!has(name)) return std::nullopt;
  const json& v = object_.at(name);
  if (!v.is_boolean()) {
    error(std::string(name), std::string("must be true or false, not ") + json_type(v));
    return std::nullopt;
  }
  return v.get<bool>();
}

std::optional<Id> Fields::id(std::string_view name, bool& clear) {
  clear = false;
  if (is_null(name)) {
    clear = true;
    return std::nullopt;
  }
  return integer(name, 1, std::numeric_limits<std::int64_t>::max());
}

ApiResponse Fields::response() const {
  std::string detail;
  for (const auto& e : errors_) {
    detail += (detail.empty() ? "" : "; ") + e.field + ": " + e.problem;
  }
  return problem(422, "invalid-fields", detail, errors_);
}

ApiResponse store_error(const common::Error& error) {
  const std::string& m = error.message;
  switch (error.kind) {
    case common::ErrorKind::kConflict:
      // The name or port is taken (also when two writes raced for it), or the object is the
      // configuration file's.
      return problem(409,
                     m.find("declared in the configuration file") != m.npos ||
                             m.find("of the configuration file") != m.npos
                         ? "configured"
                         : "conflict",
                     m);
    case common::ErrorKind::kNotFound:
      return problem(404, "not-found", m);
    case common::ErrorKind::kInvalid: {
      // "tunnel.name \"a b\": ..." names the field; "tunnel: ..." the object.
      const auto space = m.find_first_of(" :");
      const auto dot = m.find('.');
      if (dot != m.npos && space != m.npos && dot < space) {
        return problem(422, "invalid-fields", m, {{m.substr(dot + 1, space - dot - 1), m}});
      }
      return problem(422, "invalid-fields", m);
    }
    case common::ErrorKind::kUnavailable: {
      // The database cannot be reached (PostgreSQL restarting, a network cut): try again.
      spdlog::warn("api: store: {}", m);
      auto r = problem(503, "store-unavailable", "the store cannot be reached now: " + m);
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    case common::ErrorKind::kInternal:
      break;
  }
  spdlog::error("api: store: {}", m);
  return problem(500, "store", "the store failed: " + m);
}

std::optional<PageQuery> page_query(Call& call, std::optional<ApiResponse>& error) {
  PageQuery q;
  std::vector<FieldError> errors;
  if (auto it = call.query.find("limit"); it != call.query.end()) {
    const auto& s = it->second;
    if (s.empty() || s.size() > 4 || !std::all_of(s.begin(), s.end(), ::isdigit) ||
        std::stoll(s) < 1 || std::stoll(s) > 1000) {
      errors.push_back({"limit", "must be an integer from 1 to 1000"});
    } else {
      q.limit = static_cast<std::size_t>(std::stoll(s));
    }
  }
  if (auto it = call.query.find("cursor"); it != call.query.end()) {
    const auto& s = it->second;
    if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), ::isdigit)) {
      errors.push_back({"cursor", "not a cursor of this API (use next_cursor of a page)"});
    } else {
      q.after = std::stoll(s);
    }
  }
  if (!errors.empty()) {
    error =
        problem(400, "invalid-query", errors.front().field + ": " + errors.front().problem, errors);
    return std::nullopt;
  }
  return q;
}

json page_of(std::vector<json> items, const PageQuery& q) {
  json next = nullptr;
  if (items.size() > q.limit) {
    items.resize(q.limit);
    next = std::to_string(items.back().at("id").get<Id>());
  }
  json out = json::array();
  for (auto& item : items) out.push_back(std::move(item));
  return {{"items", std::move(out)}, {"next_cursor", next}};
}

json page(std::vector<json> items, Call& call, std::optional<ApiResponse>& error) {
  const auto q = page_query(call, error);
  if (!q) return {};
  std::vector<json> kept;
  for (auto& item : items) {
    if (item.at("id").get<Id>() <= q->after) continue;
    kept.push_back(std::move(item));
    if (kept.size() > q->limit) break;
  }
  return page_of(std::move(kept), *q);
}

std::string etag_of(const json& representation) {
  return "\"" + sha256_hex(representation.dump()).substr(0, 32) + "\"";
}

std::int64_t Api::State::now() const {
  return options.now ? options.now() : system_now();
}

std::optional<Role> Call::role_on(Id account) const {
  if (who.operator_account || account == who.user.account_id) return who.role;
  return std::nullopt;
}

void Call::changed(std::string_view action, std::string_view object, const json& before,
                   const json& after) {
  store::AuditEntry e;
  e.at = state.now();
  e.actor = "key:" + std::to_string(who.key.id);
  e.action = action;
  e.object = object;
  e.source = request.peer;
  e.before = before.is_null() ? "" : before.dump();
  e.after = after.is_null() ? "" : after.dump();
  if (auto a = state.store.append_audit(e); !a) {
    spdlog::error("api: audit of {} {}: {}", action, object, a.error().message);
  }
  state.hooks.store_changed();
}

Api::Api(store::Store& store, ControlHooks& hooks, ApiOptions options)
    : state_(new State{store, hooks, options, AuthLimiter(options.auth_limits), {}, {}, {}}) {}

Api::~Api() = default;

void Api::set_public_ports(std::uint16_t http, std::uint16_t https) {
  state_->options.http_port = http;
  state_->options.https_port = https;
}

void Api::set_agent_server(std::string server, std::string fingerprint) {
  state_->options.agent_server = std::move(server);
  state_->options.agent_fingerprint = std::move(fingerprint);
}

std::vector<std::string> Api::routes() {
  std::vector<std::string> out;
  for (const auto& r : route_table())
    out.push_back(std::string(r.method) + " " + std::string(r.pattern));
  return out;
}

ApiResponse Api::handle(const ApiRequest& request) {
  State& s = *state_;
  const auto q = request.target.find('?');
  const std::string path = request.target.substr(0, q);
  if (path != kPrefix && !path.starts_with(std::string(kPrefix) + "/")) {
    return problem(404, "not-found", "no API route " + path);
  }
  if (path == "/api/v1/openapi.json" && request.method == "GET") return openapi();  // no key
  if (request.body.size() > s.options.max_body) {
    return problem(413, "too-large",
                   "the body is larger than " + std::to_string(s.options.max_body) + " bytes");
  }

  // Authentication, before anything about the routes is said.
  const auto auth_now = s.monotonic_now();
  const auto unauthorized = [&](std::string detail) {
    // Logged once per address and minute (the limiter says when); the rest are only counted.
    if (s.limiter.record_failure(request.peer, auth_now)) {
      spdlog::warn("api {}: failed authentication: {}", request.peer, detail);
    }
    auto r = problem(401, "unauthorized", std::move(detail));
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"tunnel\"");
    return r;
  };
  if (const auto wait = s.limiter.retry_after(request.peer, auth_now); wait.count() > 0) {
    s.limiter.record_throttled(request.peer);
    auto r = problem(429, "rate-limited",
                     "too many failed authentications from this address; retry later");
    r.headers.emplace_back("Retry-After", std::to_string((wait.count() + 999) / 1000));
    return r;
  }
  const std::string_view authorization = request.header("Authorization");
  if (authorization.empty()) {
    return unauthorized("send an API key: Authorization: Bearer <key>");
  }
  if (authorization.size() < 7 || !iequals(authorization.substr(0, 7), "Bearer ")) {
    return unauthorized("the Authorization field must be \"Bearer <API key>\"");
  }
  std::string_view secret = authorization.substr(7);
  while (!secret.empty() && secret.front() == ' ') secret.remove_prefix(1);
  while (!secret.empty() && secret.back() == ' ') secret.remove_suffix(1);
  if (secret.empty() || secret.size() > 256)
    return unauthorized("unknown, revoked or expired API key");
  auto key = s.store.authenticate_api_key(secret);
  if (!key) return store_error(key.error());
  if (!key.value()) return unauthorized("unknown, revoked or expired API key");

  Call call{request, s, {}, {}, {}};
  call.who.key = *key.value();
  auto user = s.store.get_user(call.who.key.user_id);
  if (!user) return store_error(user.error());
  if (!user.value()) return unauthorized("unknown, revoked or expired API key");
  call.who.user = *user.value();
  auto account = s.store.get_account(call.who.user.account_id);
  if (!account) return store_error(account.error());
  auto role = role_of(s.store, call.who.user, call.who.key);
  if (!role) return store_error(role.error());
  if (!role.value()) {
    return problem(403, "forbidden",
                   "the key's user " + std::to_string(call.who.user.id) +
                       " has no role on its account; give it one with a role binding");
  }
  call.who.role = *role.value();
  call.who.operator_account =
      account.value() && account.value()->name == kOperatorAccount && !account.value()->configured;

  // The route.
  const Route* found = nullptr;
  std::string allowed;
  std::string bad_id;
  for (const auto& route : route_table()) {
    std::string bad;
    std::vector<Id> ids;
    const int m = match(route.pattern, path, ids, bad);
    if (m == 0) continue;
    if (m < 0) {
      bad_id = bad;
      continue;
    }
    if (route.method != request.method) {
      allowed += (allowed.empty() ? "" : ", ") + std::string(route.method);
      continue;
    }
    found = &route;
    call.ids = std::move(ids);
    break;
  }
  if (!found) {
    if (!bad_id.empty()) {
      const auto eq = bad_id.find('=');
      return problem(400, "bad-id",
                     "not an id: \"" + bad_id.substr(eq + 1) + "\" (ids are positive integers)",
                     {{bad_id.substr(0, eq), "not an id: \"" + bad_id.substr(eq + 1) + "\""}});
    }
    if (!allowed.empty()) {
      auto r =
          problem(405, "method-not-allowed",
                  request.method + " is not allowed on " + path + " (allowed: " + allowed + ")");
      r.headers.emplace_back("Allow", allowed);
      return r;
    }
    return problem(404, "not-found", "no API route " + path);
  }
  if (q != std::string::npos)
    call.query = parse_query(std::string_view(request.target).substr(q + 1));

  // Idempotency-Key: the same key and body answer what the first call answered.
  const std::string_view idempotency_key = request.header("Idempotency-Key");
  std::string remembered_as;
  const std::string body_hash = sha256_hex(request.body);
  if (request.method == "POST" && !idempotency_key.empty()) {
    if (idempotency_key.size() > kMaxIdempotencyKey) {
      return problem(400, "bad-idempotency-key", "Idempotency-Key: at most 255 characters",
                     {{"Idempotency-Key", "at most 255 characters"}});
    }
    const std::int64_t now = s.now();
    while (!s.idempotent_order.empty()) {
      auto it = s.idempotent.find(s.idempotent_order.front());
      if (it != s.idempotent.end() && it->second.at + s.options.idempotency_ttl.count() > now &&
          s.idempotent.size() <= s.options.idempotency_entries) {
        break;
      }
      if (it != s.idempotent.end()) s.idempotent.erase(it);
      s.idempotent_order.pop_front();
    }
    remembered_as =
        "key:" + std::to_string(call.who.key.id) + " " + path + "\n" + std::string(idempotency_key);
    if (auto it = s.idempotent.find(remembered_as); it != s.idempotent.end()) {
      if (it->second.body_hash != body_hash) {
        return problem(422, "idempotency-key-reused",
                       "Idempotency-Key \"" + std::string(idempotency_key) +
                           "\" was used with another body; use a new key for a new request",
                       {{"Idempotency-Key", "used before with another body"}});
      }
      ApiResponse replay = it->second.response;
      replay.headers.emplace_back("Idempotent-Replayed", "true");
      return replay;
    }
  }

  ApiResponse response = found->handler(call);
  if (!remembered_as.empty() && response.status >= 200 && response.status < 300) {
    s.idempotent[remembered_as] = {path, body_hash, response, s.now()};
    s.idempotent_order.push_back(remembered_as);
    while (s.idempotent.size() > s.options.idempotency_entries && !s.idempotent_order.empty()) {
      s.idempotent.erase(s.idempotent_order.front());
      s.idempotent_order.pop_front();
    }
  }
  return response;
}

common::Result<std::optional<Bootstrapped>> bootstrap(store::Store& store, std::int64_t now) {
  auto existing = store.find_account(kOperatorAccount);
  if (!existing) return existing.error();
  Bootstrapped made;
  std::optional<store::Id> owner;
  if (existing.value()) {
    if (existing.value()->configured) {
      return common::fail(
          "account \"operator\" is declared in the configuration file; the name "
          "is reserved for the API's operator account: rename it there");
    }
    made.account_id = existing.value()->id;
    // An operator with a usable key needs nothing.
    auto users = store.list_users(made.account_id);
    if (!users) return users.error();
    for (const auto& user : users.value()) {
      auto keys = store.list_api_keys(user.id);
      if (!keys) return keys.error();
      for (const auto& key : keys.value()) {
        if (!key.revoked_at && (!key.expires_at || *key.expires_at > now)) {
          return std::optional<Bootstrapped>();
        }
      }
    }
    auto bindings = store.list_role_bindings(made.account_id);
    if (!bindings) return bindings.error();
    for (const auto& b : bindings.value()) {
      if (b.user_id && b.role == Role::kOwner) owner = b.user_id;
    }
  } else {
    store::Account a;
    a.name = std::string(kOperatorAccount);
    auto account = store.create_account(a);
    if (!account) return account.error();
    made.account_id = account.value().id;
  }
  if (!owner) {
    store::User u;
    u.account_id = made.account_id;
    u.name = "admin";
    auto user = store.create_user(u);
    if (!user) return user.error();
    store::RoleBinding b;
    b.account_id = made.account_id;
    b.user_id = user.value().id;
    b.role = Role::kOwner;
    if (auto bound = store.create_role_binding(b); !bound) return bound.error();
    owner = user.value().id;
  }
  made.user_id = *owner;
  store::ApiKey k;
  k.user_id = made.user_id;
  k.name = "bootstrap";
  auto key = store.create_api_key(k);
  if (!key) return key.error();
  made.key_id = key.value().object.id;
  made.secret = key.value().secret;
  store::AuditEntry e;
  e.actor = "bootstrap";
  e.action = "operator.bootstrap";
  e.object = "account:" + std::to_string(made.account_id);
  e.after =
      json({{"account", made.account_id}, {"user", made.user_id}, {"key", made.key_id}}).dump();
  if (auto audited = store.append_audit(e); !audited) return audited.error();
  return std::optional<Bootstrapped>(std::move(made));
}

}  // namespace tunnel::core::api
