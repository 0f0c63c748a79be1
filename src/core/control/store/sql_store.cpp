// The Store on a Connection: the same SQL for SQLite and PostgreSQL (see connection.hpp).
#include <fcntl.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>

#include "common/net_address.hpp"
#include "core/control/config.hpp"
#include "core/control/store/connection.hpp"
#include "core/control/store/migrations.hpp"
#include "core/control/store/store.hpp"

// GCC 12 warns that a std::string inside a std::variant in an initializer list "may be used
// uninitialized" (a false positive of its inliner on the parameter vectors below).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace tunnel::core::store {
namespace {

using common::ErrorKind;
using common::fail;
using common::success;

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::int64_t as_int(const std::optional<std::string>& column) {
  return column ? std::stoll(*column) : 0;
}
std::optional<std::int64_t> as_optional_int(const std::optional<std::string>& column) {
  if (!column) return std::nullopt;
  return std::stoll(*column);
}
Value optional_value(const std::optional<std::int64_t>& v) {
  return v ? Value(*v) : Value();
}
Value u64(std::uint64_t v) {
  return static_cast<std::int64_t>(v);
}
// A LIMIT: 0 = no limit.
Value limit_value(std::size_t limit) {
  return limit == 0 ? std::numeric_limits<std::int64_t>::max() : static_cast<std::int64_t>(limit);
}

bool valid_label(std::string_view s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

// A tunnel name: one lower-case DNS label, or a label prefix ending in "*" ("dev-*").
bool valid_tunnel_name(std::string_view s) {
  if (s.ends_with('*')) {
    s.remove_suffix(1);
    return !s.empty() && s.front() != '-' && valid_label(std::string(s) + "x");
  }
  return valid_label(s);
}

bool valid_domain(std::string_view s) {
  if (s.starts_with("*.")) s.remove_prefix(2);
  if (s.size() > 253 || s.find('.') == std::string_view::npos) return false;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto dot = s.find('.', start);
    const auto label = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (!valid_label(label)) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

// Letters, digits, '_', '.', '-', as config.cpp's account names; 1..64 characters.
bool valid_object_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
         std::string_view::npos;
}

Status check_name(std::string_view what, std::string_view name) {
  if (valid_object_name(name)) return success();
  return fail(ErrorKind::kInvalid, std::string(what) + ".name " + quoted(name) +
                                       ": use 1 to 64 letters, digits, '_', '.' and '-'");
}

// Runs `body` in a write transaction; commits if it succeeded, rolls back otherwise.
template <typename F>
auto in_transaction(Connection& db, F&& body) -> decltype(body()) {
  if (auto s = db.begin(); !s) return s.error();
  auto result = body();
  if (!result) {
    db.rollback();
    return result;
  }
  if (auto s = db.commit(); !s) {
    db.rollback();
    return s.error();
  }
  return result;
}

// How many times a write that PostgreSQL refused as not serializable is run again.
constexpr int kWriteRetries = 8;

// The PostgreSQL advisory lock key held while migrating ("tunnelmg" in ASCII).
constexpr std::int64_t kMigrationLock = 0x74756e6e656c6d67;

constexpr const char* kAccountColumns = "id, name, configured, created_at";
constexpr const char* kUserColumns = "id, account_id, name, email, password_hash, created_at";
constexpr const char* kTeamColumns = "id, account_id, name, created_at";
constexpr const char* kBindingColumns = "id, account_id, user_id, team_id, role";
constexpr const char* kAgentColumns = "id, account_id, name, created_at, created_by";
constexpr const char* kKeyColumns = "id, user_id, name, role, expires_at, revoked_at, created_at";
constexpr const char* kTunnelColumns =
    "id, account_id, type, name, domain, port, bandwidth, proxy_protocol, agent_id, local, "
    "created_at, updated_at, created_by";
constexpr const char* kQuotaColumns =
    "account_id, max_agents, max_tunnels, max_connections, max_requests_per_second, bandwidth, "
    "bytes_per_month";
constexpr const char* kUsageColumns =
    "account_id, tunnel_id, hour, requests, bytes_in, bytes_out, errors";
constexpr const char* kAuditColumns =
    "id, at, actor, action, object, source, before_json, after_json";

Account account_of(const Row& r) {
  return {as_int(r[0]), r[1].value_or(""), as_int(r[2]) != 0, as_int(r[3])};
}
User user_of(const Row& r) {
  return {as_int(r[0]),      as_int(r[1]),      r[2].value_or(""),
          r[3].value_or(""), r[4].value_or(""), as_int(r[5])};
}
Team team_of(const Row& r) {
  return {as_int(r[0]), as_int(r[1]), r[2].value_or(""), as_int(r[3])};
}
RoleBinding binding_of(const Row& r) {
  return {as_int(r[0]), as_int(r[1]), as_optional_int(r[2]), as_optional_int(r[3]),
          parse_role(r[4].value_or("")).value_or(Role::kViewer)};
}
Agent agent_of(const Row& r) {
  return {as_int(r[0]), as_int(r[1]), r[2].value_or(""), as_int(r[3]), as_optional_int(r[4])};
}
ApiKey key_of(const Row& r) {
  ApiKey k;
  k.id = as_int(r[0]);
  k.user_id = as_int(r[1]);
  k.name = r[2].value_or("");
  if (r[3]) k.role = parse_role(*r[3]);
  k.expires_at = as_optional_int(r[4]);
  k.revoked_at = as_optional_int(r[5]);
  k.created_at = as_int(r[6]);
  return k;
}
Tunnel tunnel_of(const Row& r) {
  Tunnel t;
  t.id = as_int(r[0]);
  t.account_id = as_int(r[1]);
  t.type = parse_tunnel_type(r[2].value_or("")).value_or(TunnelType::kHttp);
  t.name = r[3].value_or("");
  t.domain = r[4].value_or("");
  t.port = static_cast<std::uint16_t>(as_int(r[5]));
  t.bandwidth = static_cast<std::uint64_t>(as_int(r[6]));
  t.proxy_protocol = as_int(r[7]) != 0;
  t.agent_id = as_optional_int(r[8]);
  t.local = r[9].value_or("");
  t.created_at = as_int(r[10]);
  t.updated_at = as_int(r[11]);
  t.created_by = as_optional_int(r[12]);
  return t;
}
Quota quota_of(const Row& r) {
  const auto u = [&](std::size_t i) { return static_cast<std::uint64_t>(as_int(r[i])); };
  return {as_int(r[0]), u(1), u(2), u(3), u(4), u(5), u(6)};
}
Usage usage_of(const Row& r) {
  const auto u = [&](std::size_t i) { return static_cast<std::uint64_t>(as_int(r[i])); };
  return {as_int(r[0]), as_int(r[1]), as_int(r[2]), u(3), u(4), u(5), u(6)};
}
AuditEntry audit_of(const Row& r) {
  return {as_int(r[0]),      as_int(r[1]),      r[2].value_or(""), r[3].value_or(""),
          r[4].value_or(""), r[5].value_or(""), r[6].value_or(""), r[7].value_or("")};
}

std::string select(const char* columns, std::string_view rest) {
  return std::string("SELECT ") + columns + " " + std::string(rest);
}

// The tunnel's reserved name as people write it, for messages.
std::string describe(const Tunnel& t) {
  if (t.type != TunnelType::kHttp) {
    return std::string(to_string(t.type)) + " port " + std::to_string(t.port);
  }
  return t.name.empty() ? "domain " + quoted(t.domain) : "name " + quoted(t.name);
}

class SqlStore : public Store {
 public:
  SqlStore(std::unique_ptr<Connection> db, const StoreOptions& options)
      : db_(std::move(db)),
        key_(options.secret_key),
        config_file_(options.config_file),
        time_(options.time != nullptr ? *options.time : real_time_),
        origin_(new_secret("").substr(0, 16)) {}

  Status open(std::optional<int> to) {
    std::lock_guard lock(mutex_);
    if (auto s = migrate_locked(to); !s) return s;
    return refresh_locked();
  }

  Result<int> schema_version() override {
    std::lock_guard lock(mutex_);
    return version_locked();
  }

  Status migrate(std::optional<int> to) override {
    std::lock_guard lock(mutex_);
    if (auto s = migrate_locked(to); !s) return s;
    return refresh_locked();
  }

  Status check_integrity() override {
    std::lock_guard lock(mutex_);
    return db_->check_integrity();
  }

  Status reload() override {
    std::lock_guard lock(mutex_);
    return refresh_locked();
  }
  bool shared() const override { return db_->dialect() == Dialect::kPostgres; }
  const std::string& change_origin() const override { return origin_; }

  Status sync_configured_accounts(const std::vector<std::string>& names) override {
    for (const auto& name : names) {
      if (auto s = check_name("account", name); !s) return s;
    }
    return write([&]() -> Status {
      auto rows = run("SELECT id, name, configured FROM accounts", {});
      if (!rows) return rows.error();
      std::map<std::string, std::pair<Id, bool>, std::less<>> existing;
      for (const auto& r : rows.value()) {
        existing.emplace(r[1].value_or(""), std::pair(as_int(r[0]), as_int(r[2]) != 0));
      }
      for (const auto& name : names) {
        const auto it = existing.find(name);
        if (it == existing.end()) {
          auto created = run(
              "INSERT INTO accounts (name, configured, created_at) VALUES ($1, 1, $2) RETURNING id",
              {name, now_()});
          if (!created) return created.error();
        } else if (!it->second.second) {
          return fail(ErrorKind::kConflict,
                      "account " + quoted(name) + " of the configuration file" +
                          (config_file_.empty() ? std::string() : " " + config_file_) +
                          " exists in the store as an account made through the API (id " +
                          std::to_string(it->second.first) + "); rename one of them");
        }
      }
      for (const auto& [name, row] : existing) {
        if (!row.second) continue;
        if (std::find(names.begin(), names.end(), name) != names.end()) continue;
        auto freed = run("UPDATE accounts SET configured = 0 WHERE id = $1", {row.first});
        if (!freed) return freed.error();
      }
      return success();
    });
  }

  // Accounts.
  Result<Account> create_account(const Account& a) override {
    if (auto s = check_name("account", a.name); !s) return s.error();
    return write([&]() -> Result<Account> {
      auto rows = run("SELECT id FROM accounts WHERE name = $1", {a.name});
      if (!rows) return rows.error();
      if (!rows.value().empty()) {
        return fail(ErrorKind::kConflict, "account " + quoted(a.name) + " exists");
      }
      auto created =
          run(std::string("INSERT INTO accounts (name, configured, created_at) VALUES ($1, $2, "
                          "$3) RETURNING ") +
                  kAccountColumns,
              {a.name, std::int64_t{a.configured}, now_()});
      if (!created) return created.error();
      return account_of(created.value().at(0));
    });
  }
  Result<std::optional<Account>> get_account(Id id) override {
    return get<Account>(select(kAccountColumns, "FROM accounts WHERE id = $1"), {id}, account_of);
  }
  Result<std::optional<Account>> find_account(std::string_view name) override {
    return get<Account>(select(kAccountColumns, "FROM accounts WHERE name = $1"),
                        {std::string(name)}, account_of);
  }
  Result<std::vector<Account>> list_accounts() override {
    return list<Account>(select(kAccountColumns, "FROM accounts ORDER BY id"), {}, account_of);
  }
  Result<Account> update_account(const Account& a) override {
    if (auto s = check_name("account", a.name); !s) return s.error();
    return write([&]() -> Result<Account> {
      if (auto s = refuse_configured(a.id, "changed"); !s) return s.error();
      auto rows = run(
          std::string("UPDATE accounts SET name = $2 WHERE id = $1 RETURNING ") + kAccountColumns,
          {a.id, a.name});
      if (!rows) return rows.error();
      if (rows.value().empty())
        return fail(ErrorKind::kNotFound, "no account " + std::to_string(a.id));
      return account_of(rows.value()[0]);
    });
  }
  Result<bool> remove_account(Id id) override {
    return write([&]() -> Result<bool> {
      if (auto s = refuse_configured(id, "removed"); !s) return s.error();
      return removed("DELETE FROM accounts WHERE id = $1 RETURNING id", id);
    });
  }

  // Users.
  Result<User> create_user(const User& u) override {
    if (auto s = check_name("user", u.name); !s) return s.error();
    return write([&]() -> Result<User> {
      return one<User>(std::string("INSERT INTO users (account_id, name, email, password_hash, "
                                   "created_at) VALUES ($1, $2, $3, $4, $5) RETURNING ") +
                           kUserColumns,
                       {u.account_id, u.name, u.email, u.password_hash, now_()}, user_of,
                       "user " + quoted(u.name) + " in account " + std::to_string(u.account_id));
    });
  }
  Result<std::optional<User>> get_user(Id id) override {
    return get<User>(select(kUserColumns, "FROM users WHERE id = $1"), {id}, user_of);
  }
  Result<std::vector<User>> list_users(Id account_id) override {
    return list<User>(select(kUserColumns, "FROM users WHERE account_id = $1 ORDER BY id"),
                      {account_id}, user_of);
  }
  Result<User> update_user(const User& u) override {
    if (auto s = check_name("user", u.name); !s) return s.error();
    return write([&]() -> Result<User> {
      return one<User>(std::string("UPDATE users SET name = $2, email = $3, password_hash = $4 "
                                   "WHERE id = $1 RETURNING ") +
                           kUserColumns,
                       {u.id, u.name, u.email, u.password_hash}, user_of, "user " + quoted(u.name));
    });
  }
  Result<bool> remove_user(Id id) override {
    return write([&] { return removed("DELETE FROM users WHERE id = $1 RETURNING id", id); });
  }

  // Teams.
  Result<Team> create_team(const Team& t) override {
    if (auto s = check_name("team", t.name); !s) return s.error();
    return write([&]() -> Result<Team> {
      return one<Team>(std::string("INSERT INTO teams (account_id, name, created_at) VALUES ($1, "
                                   "$2, $3) RETURNING ") +
                           kTeamColumns,
                       {t.account_id, t.name, now_()}, team_of,
                       "team " + quoted(t.name) + " in account " + std::to_string(t.account_id));
    });
  }
  Result<std::optional<Team>> get_team(Id id) override {
    return get<Team>(select(kTeamColumns, "FROM teams WHERE id = $1"), {id}, team_of);
  }
  Result<std::vector<Team>> list_teams(Id account_id) override {
    return list<Team>(select(kTeamColumns, "FROM teams WHERE account_id = $1 ORDER BY id"),
                      {account_id}, team_of);
  }
  Result<Team> update_team(const Team& t) override {
    if (auto s = check_name("team", t.name); !s) return s.error();
    return write([&]() -> Result<Team> {
      return one<Team>(
          std::string("UPDATE teams SET name = $2 WHERE id = $1 RETURNING ") + kTeamColumns,
          {t.id, t.name}, team_of, "team " + quoted(t.name));
    });
  }
  Result<bool> remove_team(Id id) override {
    return write([&] { return removed("DELETE FROM teams WHERE id = $1 RETURNING id", id); });
  }
  Status add_team_member(Id team_id, Id user_id) override {
    return write([&]() -> Status {
      auto team = run("SELECT account_id FROM teams WHERE id = $1", {team_id});
      if (!team) return team.error();
      auto user = run("SELECT account_id FROM users WHERE id = $1", {user_id});
      if (!user) return user.error();
      if (team.value().empty()) {
        return fail(ErrorKind::kNotFound, "no team " + std::to_string(team_id));
      }
      if (user.value().empty()) {
        return fail(ErrorKind::kNotFound, "no user " + std::to_string(user_id));
      }
      if (team.value()[0][0] != user.value()[0][0]) {
        return fail(ErrorKind::kInvalid, "user " + std::to_string(user_id) +
                                             " belongs to another account than team " +
                                             std::to_string(team_id));
      }
      auto rows =
          run("INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
              {team_id, user_id});
      if (!rows) return rows.error();
      return success();
    });
  }
  Result<bool> remove_team_member(Id team_id, Id user_id) override {
    return write([&]() -> Result<bool> {
      auto rows =
          run("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2 RETURNING team_id",
              {team_id, user_id});
      if (!rows) return rows.error();
      return !rows.value().empty();
    });
  }
  Result<std::vector<Id>> list_team_members(Id team_id) override {
    return list<Id>("SELECT user_id FROM team_members WHERE team_id = $1 ORDER BY user_id",
                    {team_id}, [](const Row& r) { return as_int(r[0]); });
  }

  // Role bindings.
  Result<RoleBinding> create_role_binding(const RoleBinding& b) override {
    return write([&]() -> Result<RoleBinding> {
      if (auto s = check_binding(b); !s) return s.error();
      return one<RoleBinding>(
          std::string("INSERT INTO role_bindings (account_id, user_id, team_id, role) VALUES ($1, "
                      "$2, $3, $4) RETURNING ") +
              kBindingColumns,
          {b.account_id, optional_value(b.user_id), optional_value(b.team_id),
           std::string(to_string(b.role))},
          binding_of, "role binding");
    });
  }
  Result<std::optional<RoleBinding>> get_role_binding(Id id) override {
    return get<RoleBinding>(select(kBindingColumns, "FROM role_bindings WHERE id = $1"), {id},
                            binding_of);
  }
  Result<std::vector<RoleBinding>> list_role_bindings(Id account_id) override {
    return list<RoleBinding>(
        select(kBindingColumns, "FROM role_bindings WHERE account_id = $1 ORDER BY id"),
        {account_id}, binding_of);
  }
  Result<RoleBinding> update_role_binding(const RoleBinding& b) override {
    return write([&]() -> Result<RoleBinding> {
      if (auto s = check_binding(b); !s) return s.error();
      return one<RoleBinding>(
          std::string("UPDATE role_bindings SET user_id = $2, team_id = $3, role = $4 WHERE id = "
                      "$1 AND account_id = $5 RETURNING ") +
              kBindingColumns,
          {b.id, optional_value(b.user_id), optional_value(b.team_id),
           std::string(to_string(b.role)), b.account_id},
          binding_of, "role binding " + std::to_string(b.id));
    });
  }
  Result<bool> remove_role_binding(Id id) override {
    return write(
        [&] { return removed("DELETE FROM role_bindings WHERE id = $1 RETURNING id", id); });
  }

  // Agents.
  Result<WithSecret<Agent>> create_agent(const Agent& a) override {
    if (auto s = check_name("agent", a.name); !s) return s.error();
    std::string secret = new_secret("tna_");
    const std::string hash = to_hex(hash_secret(key_, secret));
    return write([&]() -> Result<WithSecret<Agent>> {
      auto agent =
          one<Agent>(std::string("INSERT INTO agents (account_id, name, credential_hash, "
                                 "created_at, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING ") +
                         kAgentColumns,
                     {a.account_id, a.name, hash, now_(), optional_value(a.created_by)}, agent_of,
                     "agent " + quoted(a.name) + " in account " + std::to_string(a.account_id));
      if (!agent) return agent.error();
      return WithSecret<Agent>{agent.value(), secret};
    });
  }
  Result<std::optional<Agent>> get_agent(Id id) override {
    return get<Agent>(select(kAgentColumns, "FROM agents WHERE id = $1"), {id}, agent_of);
  }
  Result<std::vector<Agent>> list_agents(Id account_id) override {
    return list<Agent>(select(kAgentColumns, "FROM agents WHERE account_id = $1 ORDER BY id"),
                       {account_id}, agent_of);
  }
  Result<Agent> update_agent(const Agent& a) override {
    if (auto s = check_name("agent", a.name); !s) return s.error();
    return write([&]() -> Result<Agent> {
      return one<Agent>(
          std::string("UPDATE agents SET name = $2 WHERE id = $1 RETURNING ") + kAgentColumns,
          {a.id, a.name}, agent_of, "agent " + quoted(a.name));
    });
  }
  Result<bool> remove_agent(Id id) override {
    return write([&] { return removed("DELETE FROM agents WHERE id = $1 RETURNING id", id); });
  }
  std::function<std::string(std::string_view)> credential_hasher() const override {
    return [key = key_](std::string_view secret) { return hash_secret_hex(key, secret); };
  }

  Result<std::vector<Agent>> find_agents(const AgentQuery& q) override {
    return list<Agent>(select(kAgentColumns,
                              "FROM agents WHERE id > $1 AND (CAST($2 AS BIGINT) = 0 OR "
                              "account_id = $2) ORDER BY id LIMIT $3"),
                       {q.after, q.account_id.value_or(0), limit_value(q.limit)}, agent_of);
  }

  Result<std::optional<Agent>> find_agent_by_credential(std::string_view credential) override {
    return get<Agent>(select(kAgentColumns, "FROM agents WHERE credential_hash = $1"),
                      {to_hex(hash_secret(key_, credential))}, agent_of);
  }

  // API keys.
  Result<WithSecret<ApiKey>> create_api_key(const ApiKey& k) override {
    if (auto s = check_name("api_key", k.name); !s) return s.error();
    std::string secret = new_secret("tnk_");
    const std::string hash = to_hex(hash_secret(key_, secret));
    return write([&]() -> Result<WithSecret<ApiKey>> {
      auto key = one<ApiKey>(
          std::string("INSERT INTO api_keys (user_id, name, key_hash, role, expires_at, "
                      "created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ") +
              kKeyColumns,
          {k.user_id, k.name, hash, k.role ? Value(std::string(to_string(*k.role))) : Value(),
           optional_value(k.expires_at), now_()},
          key_of, "API key " + quoted(k.name) + " of user " + std::to_string(k.user_id));
      if (!key) return key.error();
      return WithSecret<ApiKey>{key.value(), secret};
    });
  }
  Result<std::optional<ApiKey>> get_api_key(Id id) override {
    return get<ApiKey>(select(kKeyColumns, "FROM api_keys WHERE id = $1"), {id}, key_of);
  }
  Result<std::vector<ApiKey>> list_api_keys(Id user_id) override {
    return list<ApiKey>(select(kKeyColumns, "FROM api_keys WHERE user_id = $1 ORDER BY id"),
                        {user_id}, key_of);
  }
  Result<ApiKey> update_api_key(const ApiKey& k) override {
    if (auto s = check_name("api_key", k.name); !s) return s.error();
    return write([&]() -> Result<ApiKey> {
      return one<ApiKey>(std::string("UPDATE api_keys SET name = $2, role = $3, expires_at = $4 "
                                     "WHERE id = $1 RETURNING ") +
                             kKeyColumns,
                         {k.id, k.name, k.role ? Value(std::string(to_string(*k.role))) : Value(),
                          optional_value(k.expires_at)},
                         key_of, "API key " + quoted(k.name));
    });
  }
  Result<bool> revoke_api_key(Id id) override {
    return write([&]() -> Result<bool> {
      auto rows = run(
          "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id",
          {id, now_()});
      if (!rows) return rows.error();
      return !rows.value().empty();
    });
  }
  Result<bool> remove_api_key(Id id) override {
    return write([&] { return removed("DELETE FROM api_keys WHERE id = $1 RETURNING id", id); });
  }
  Result<std::optional<ApiKey>> authenticate_api_key(std::string_view secret) override {
    auto key = get<ApiKey>(select(kKeyColumns, "FROM api_keys WHERE key_hash = $1"),
                           {to_hex(hash_secret(key_, secret))}, key_of);
    if (!key || !key.value()) return key;
    const ApiKey& k = *key.value();
    if (k.revoked_at || (k.expires_at && *k.expires_at <= now_())) {
      return std::optional<ApiKey>();
    }
    return key;
  }

  // Tunnels.
  Result<Tunnel> create_tunnel(const Tunnel& t) override {
    Tunnel n = normalized(t);
    if (auto s = check_tunnel(n); !s) return s.error();
    return write([&]() -> Result<Tunnel> {
      if (auto s = check_tunnel_refs(n); !s) return s.error();
      if (auto s = check_ownership(n); !s) return s.error();
      auto values = tunnel_values(n, now_());
      values.push_back(optional_value(n.created_by));
      return one<Tunnel>(
          std::string("INSERT INTO tunnels (account_id, type, name, domain, port, bandwidth, "
                      "proxy_protocol, agent_id, local, created_at, updated_at, created_by) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) RETURNING ") +
              kTunnelColumns,
          values, tunnel_of, describe(n));
    });
  }
  Result<std::optional<Tunnel>> get_tunnel(Id id) override {
    return get<Tunnel>(select(kTunnelColumns, "FROM tunnels WHERE id = $1"), {id}, tunnel_of);
  }
  Result<std::vector<Tunnel>> list_tunnels(std::optional<Id> account_id) override {
    if (account_id) {
      return list<Tunnel>(select(kTunnelColumns, "FROM tunnels WHERE account_id = $1 ORDER BY id"),
                          {*account_id}, tunnel_of);
    }
    return list<Tunnel>(select(kTunnelColumns, "FROM tunnels ORDER BY id"), {}, tunnel_of);
  }
  Result<std::vector<Tunnel>> find_tunnels(const TunnelQuery& q) override {
    return list<Tunnel>(
        select(kTunnelColumns,
               "FROM tunnels WHERE id > $1 AND (CAST($2 AS BIGINT) = 0 OR account_id = $2) AND "
               "($3 = '' OR type = $3) AND (CAST($4 AS BIGINT) = 0 OR agent_id = $4) ORDER BY "
               "id LIMIT $5"),
        {q.after, q.account_id.value_or(0),
         q.type ? std::string(to_string(*q.type)) : std::string(), q.agent_id.value_or(0),
         limit_value(q.limit)},
        tunnel_of);
  }
  Result<Tunnel> update_tunnel(const Tunnel& t) override {
    Tunnel n = normalized(t);
    if (auto s = check_tunnel(n); !s) return s.error();
    return write([&]() -> Result<Tunnel> {
      auto old = run("SELECT account_id FROM tunnels WHERE id = $1", {n.id});
      if (!old) return old.error();
      if (old.value().empty()) {
        return fail(ErrorKind::kNotFound, "no tunnel " + std::to_string(n.id));
      }
      if (as_int(old.value()[0][0]) != n.account_id) {
        return fail(ErrorKind::kInvalid,
                    "tunnel " + std::to_string(n.id) +
                        ": account_id cannot change (delete the tunnel and create it again)");
      }
      if (auto s = check_tunnel_refs(n); !s) return s.error();
      if (auto s = check_ownership(n); !s) return s.error();
      auto values = tunnel_values(n, now_());
      values.emplace_back(n.id);
      return one<Tunnel>(
          std::string("UPDATE tunnels SET type = $2, name = $3, domain = $4, port = $5, "
                      "bandwidth = $6, proxy_protocol = $7, agent_id = $8, local = $9, "
                      "updated_at = $10 WHERE id = $11 AND account_id = $1 RETURNING ") +
              kTunnelColumns,
          values, tunnel_of, describe(n));
    });
  }
  Result<bool> remove_tunnel(Id id) override {
    return write([&] { return removed("DELETE FROM tunnels WHERE id = $1 RETURNING id", id); });
  }

  // Quotas.
  Result<Quota> get_quota(Id account_id) override {
    auto q = get<Quota>(select(kQuotaColumns, "FROM quotas WHERE account_id = $1"), {account_id},
                        quota_of);
    if (!q) return q.error();
    if (q.value()) return *q.value();
    Quota d;
    d.account_id = account_id;
    return d;
  }
  Result<Quota> set_quota(const Quota& q) override {
    return write([&]() -> Result<Quota> {
      return one<Quota>(
          std::string("INSERT INTO quotas (") + kQuotaColumns +
              ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id) DO UPDATE SET "
              "max_agents = $2, max_tunnels = $3, max_connections = $4, "
              "max_requests_per_second = $5, bandwidth = $6, bytes_per_month = $7 RETURNING " +
              kQuotaColumns,
          {q.account_id, u64(q.max_agents), u64(q.max_tunnels), u64(q.max_connections),
           u64(q.max_requests_per_second), u64(q.bandwidth), u64(q.bytes_per_month)},
          quota_of, "quota of account " + std::to_string(q.account_id));
    });
  }

  // Usage.
  Status add_usage(const std::vector<Usage>& samples) override {
    std::lock_guard lock(mutex_);
    return in_transaction(*db_, [&]() -> Status {
      for (const auto& u : samples) {
        auto rows = run(
            std::string("INSERT INTO usage_hourly (") + kUsageColumns +
                ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id, tunnel_id, hour) "
                "DO UPDATE SET requests = usage_hourly.requests + $4, bytes_in = "
                "usage_hourly.bytes_in + $5, bytes_out = usage_hourly.bytes_out + $6, errors = "
                "usage_hourly.errors + $7",
            {u.account_id, u.tunnel_id, u.hour, u64(u.requests), u64(u.bytes_in), u64(u.bytes_out),
             u64(u.errors)});
        if (!rows) return explain(rows.error(), "usage of account " + std::to_string(u.account_id));
      }
      return success();
    });
  }
  Result<std::vector<Usage>> list_usage(Id account_id, std::int64_t from_hour,
                                        std::int64_t to_hour) override {
    return list<Usage>(select(kUsageColumns,
                              "FROM usage_hourly WHERE account_id = $1 AND hour >= $2 AND hour < "
                              "$3 ORDER BY hour, tunnel_id"),
                       {account_id, from_hour, to_hour}, usage_of);
  }
  Result<std::uint64_t> prune_usage(std::int64_t before_hour) override {
    std::lock_guard lock(mutex_);
    auto rows = run("DELETE FROM usage_hourly WHERE hour < $1 RETURNING hour", {before_hour});
    if (!rows) return rows.error();
    return static_cast<std::uint64_t>(rows.value().size());
  }

  // Audit.
  Result<AuditEntry> append_audit(const AuditEntry& e) override {
    std::lock_guard lock(mutex_);
    auto rows =
        run(std::string("INSERT INTO audit (at, actor, action, object, source, "
                        "before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                        "RETURNING ") +
                kAuditColumns,
            {e.at ? e.at : now_(), e.actor, e.action, e.object, e.source, e.before, e.after});
    if (!rows) return rows.error();
    return audit_of(rows.value().at(0));
  }
  Result<std::vector<AuditEntry>> list_audit(std::size_t limit, Id before_id) override {
    return list<AuditEntry>(
        select(kAuditColumns, "FROM audit WHERE ($1 = 0 OR id < $1) ORDER BY id DESC LIMIT $2"),
        {before_id, static_cast<std::int64_t>(limit)}, audit_of);
  }

  Result<std::vector<OwnershipEntry>> load_ownership(const std::string& core) override {
    return list<OwnershipEntry>(
        "SELECT key, account, holder, explicit_name, offline_since FROM registry_ownership "
        "WHERE core = $1 OR core = '' ORDER BY key, core DESC",
        {core}, [](const Row& r) {
          return OwnershipEntry{r[0].value_or(""), r[1].value_or(""), r[2].value_or(""),
                                as_int(r[3]) != 0, as_int(r[4])};
        });
  }
  Status save_ownership(const std::string& core,
                        const std::vector<OwnershipEntry>& entries) override {
    std::lock_guard lock(mutex_);
    return in_transaction(*db_, [&]() -> Status {
      if (auto cleared = run("DELETE FROM registry_ownership WHERE core = $1 OR core = ''", {core});
          !cleared) {
        return cleared.error();
      }
      for (const auto& e : entries) {
        auto rows =
            run("INSERT INTO registry_ownership (core, key, account, holder, explicit_name, "
                "offline_since) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (core, key) DO NOTHING",
                {core, e.key, e.account, e.holder, std::int64_t{e.explicit_name}, e.offline_since});
        if (!rows) return rows.error();
      }
      return success();
    });
  }

 private:
  Result<std::vector<Row>> run(std::string_view sql, const std::vector<Value>& params) {
    return db_->query(sql, params);
  }

  // A constraint failure named for people: "<what>: conflicts with an existing object or
  // refers to one that does not exist (<database's words>)". A conflict (a UNIQUE constraint,
  // and so for the API 409, whichever of two racing writes lost), unless the connection said
  // more precisely what it was.
  common::Error explain(const common::Error& e, const std::string& what) const {
    if (!db_->last_error_was_constraint()) return e;
    return fail(
        e.kind == ErrorKind::kInternal ? ErrorKind::kConflict : e.kind,
        what + ": exists already, or refers to an object that does not exist (" + e.message + ")");
  }

  template <typename T, typename F>
  Result<std::optional<T>> get(const std::string& sql, const std::vector<Value>& params, F of) {
    std::lock_guard lock(mutex_);
    auto rows = run(sql, params);
    if (!rows) return rows.error();
    if (rows.value().empty()) return std::optional<T>();
    return std::optional<T>(of(rows.value()[0]));
  }

  template <typename T, typename F>
  Result<std::vector<T>> list(const std::string& sql, const std::vector<Value>& params, F of) {
    std::lock_guard lock(mutex_);
    auto rows = run(sql, params);
    if (!rows) return rows.error();
    std::vector<T> out;
    out.reserve(rows.value().size());
    for (const auto& row : rows.value()) out.push_back(of(row));
    return out;
  }

  // One row from a write, or a clear error.
  template <typename T, typename F>
  Result<T> one(const std::string& sql, const std::vector<Value>& params, F of,
                const std::string& what) {
    auto rows = run(sql, params);
    if (!rows) return explain(rows.error(), what);
    if (rows.value().empty()) return fail(ErrorKind::kNotFound, what + ": no such object");
    return of(rows.value()[0]);
  }

  Result<bool> removed(const std::string& sql, Id id) {
    auto rows = run(sql, {id});
    if (!rows) return explain(rows.error(), "remove " + std::to_string(id));
    return !rows.value().empty();
  }

  // A change: under the lock, in a transaction, followed by a new snapshot. On a shared
  // database the transaction also sends NOTIFY, delivered to the other cores at its commit.
  // A transaction that overlapped another core's (SERIALIZABLE refused it) runs again, a few
  // times, as PostgreSQL asks.
  template <typename F>
  auto write(F&& body) -> decltype(body()) {
    std::lock_guard lock(mutex_);
    const auto attempt = [&] {
      return in_transaction(*db_, [&]() -> decltype(body()) {
        auto r = body();
        if (r && shared()) {
          auto notified = run("SELECT pg_notify($1, $2)", {std::string(kChangeChannel), origin_});
          if (!notified) return notified.error();
        }
        return r;
      });
    };
    auto result = attempt();
    for (int retries = 0; !result && db_->last_error_was_retryable() && retries < kWriteRetries;
         ++retries) {
      result = attempt();
    }
    if (result) {
      if (auto s = refresh_locked(); !s) return s.error();
    }
    return result;
  }

  Status refuse_configured(Id account_id, std::string_view verb) {
    auto rows = run("SELECT name, configured FROM accounts WHERE id = $1", {account_id});
    if (!rows) return rows.error();
    if (!rows.value().empty() && as_int(rows.value()[0][1]) != 0) {
      return fail(ErrorKind::kConflict,
                  "account " + quoted(rows.value()[0][0].value_or("")) +
                      " is declared in the configuration file" +
                      (config_file_.empty() ? std::string() : " " + config_file_) +
                      " and cannot be " + std::string(verb) + " here; change it there");
    }
    return success();
  }

  Status check_binding(const RoleBinding& b) {
    if (b.user_id.has_value() == b.team_id.has_value()) {
      return fail(ErrorKind::kInvalid,
                  "role binding: give either user_id or team_id, not both or neither");
    }
    const char* sql = b.user_id ? "SELECT account_id FROM users WHERE id = $1"
                                : "SELECT account_id FROM teams WHERE id = $1";
    auto rows = run(sql, {b.user_id ? *b.user_id : *b.team_id});
    if (!rows) return rows.error();
    const std::string what =
        b.user_id ? "user " + std::to_string(*b.user_id) : "team " + std::to_string(*b.team_id);
    if (rows.value().empty()) return fail(ErrorKind::kInvalid, "role binding: no " + what);
    if (as_int(rows.value()[0][0]) != b.account_id) {
      return fail(ErrorKind::kInvalid, "role binding: " + what + " belongs to another account");
    }
    return success();
  }

  static Tunnel normalized(Tunnel t) {
    t.name = common::ascii_lower(t.name);
    t.domain = common::ascii_lower(t.domain);
    return t;
  }

  static Status check_tunnel(const Tunnel& t) {
    if (t.type == TunnelType::kHttp) {
      if (t.port != 0)
        return fail(ErrorKind::kInvalid, "tunnel.port: only tcp and udp tunnels have a port");
      if (t.name.empty() == t.domain.empty()) {
        return fail(ErrorKind::kInvalid,
                    "tunnel: an http tunnel has a name or a domain (one of the two)");
      }
      if (!t.name.empty() && !valid_tunnel_name(t.name)) {
        return fail(ErrorKind::kInvalid,
                    "tunnel.name " + quoted(t.name) +
                        ": use one DNS label (letters, digits, '-') or a prefix ending in '*'");
      }
      if (!t.domain.empty() && !valid_domain(t.domain)) {
        return fail(ErrorKind::kInvalid,
                    "tunnel.domain " + quoted(t.domain) +
                        ": use a domain name (\"example.org\" or \"*.example.org\")");
      }
    } else {
      if (!t.name.empty() || !t.domain.empty()) {
        return fail(ErrorKind::kInvalid, "tunnel: a " + std::string(to_string(t.type)) +
                                             " tunnel has a port, not a name or domain");
      }
      if (t.port == 0) return fail(ErrorKind::kInvalid, "tunnel.port: give a port from 1 to 65535");
    }
    if (!t.local.empty() && !t.agent_id) {
      return fail(ErrorKind::kInvalid,
                  "tunnel.local: only a tunnel assigned to an agent has a local target");
    }
    if (t.local.size() > 255)
      return fail(ErrorKind::kInvalid, "tunnel.local: at most 255 characters");
    return success();
  }

  Status check_tunnel_refs(const Tunnel& t) {
    if (!t.agent_id) return success();
    auto rows = run("SELECT account_id FROM agents WHERE id = $1", {*t.agent_id});
    if (!rows) return rows.error();
    if (rows.value().empty())
      return fail(ErrorKind::kInvalid, "tunnel.agent: no agent " + std::to_string(*t.agent_id));
    if (as_int(rows.value()[0][0]) != t.account_id) {
      return fail(ErrorKind::kInvalid, "tunnel.agent: agent " + std::to_string(*t.agent_id) +
                                           " belongs to another account");
    }
    return success();
  }

  // The rules of check-config (config.cpp): a name belongs to one account. Subdomain patterns
  // ("dev-*") and wildcard domains of different accounts must not overlap; the same account
  // may hold overlapping ones. Exact duplicates are refused by the UNIQUE constraints too.
  Status check_ownership(const Tunnel& t) {
    if (t.type != TunnelType::kHttp) {
      auto rows =
          run("SELECT id, account_id FROM tunnels WHERE type = $1 AND port = $2 AND id <> $3",
              {std::string(to_string(t.type)), std::int64_t{t.port}, t.id});
      if (!rows) return rows.error();
      if (!rows.value().empty()) {
        return fail(ErrorKind::kConflict, describe(t) + " is taken by tunnel " +
                                              rows.value()[0][0].value_or("") + " (account " +
                                              rows.value()[0][1].value_or("") + ")");
      }
      return success();
    }
    auto rows =
        run("SELECT id, account_id, name, domain FROM tunnels WHERE type = 'http' AND id <> $1",
            {t.id});
    if (!rows) return rows.error();
    for (const auto& row : rows.value()) {
      const Id account = as_int(row[1]);
      const std::string name = row[2].value_or("");
      const std::string domain = row[3].value_or("");
      const bool same =
          (!t.name.empty() && name == t.name) || (!t.domain.empty() && domain == t.domain);
      const bool overlaps =
          account != t.account_id &&
          ((!t.name.empty() && !name.empty() && subdomains_overlap(t.name, name)) ||
           (!t.domain.empty() && !domain.empty() && domains_overlap(t.domain, domain)));
      if (same || overlaps) {
        return fail(ErrorKind::kConflict,
                    describe(t) + (same ? " is taken by tunnel " : " overlaps tunnel ") +
                        row[0].value_or("") + " (" +
                        (name.empty() ? quoted(domain) : quoted(name)) + ", account " +
                        row[1].value_or("") + "): a name belongs to one account");
      }
    }
    return success();
  }

  static std::vector<Value> tunnel_values(const Tunnel& t, std::int64_t now) {
    return {t.account_id,
            std::string(to_string(t.type)),
            t.name.empty() ? Value() : Value(t.name),
            t.domain.empty() ? Value() : Value(t.domain),
            t.port ? Value(std::int64_t{t.port}) : Value(),
            u64(t.bandwidth),
            std::int64_t{t.proxy_protocol},
            optional_value(t.agent_id),
            t.local,
            now};
  }

  Result<int> version_locked() {
    auto exists = run(db_->dialect() == Dialect::kSqlite
                          ? "SELECT name FROM sqlite_master WHERE type = 'table' AND name = "
                            "'schema_version'"
                          : "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                            "AND tablename = 'schema_version'",
                      {});
    if (!exists) return exists.error();
    if (exists.value().empty()) return 0;
    auto rows = run("SELECT MAX(version) FROM schema_version", {});
    if (!rows) return rows.error();
    return static_cast<int>(rows.value().empty() ? 0 : as_int(rows.value()[0][0]));
  }

  Status migrate_locked(std::optional<int> to) {
    const int latest = Store::latest_schema_version();
    const int target = to.value_or(latest);
    if (target > latest) {
      return fail("cannot migrate to schema version " + std::to_string(target) +
                  ": this binary knows versions up to " + std::to_string(latest));
    }
    // Several cores starting at once on one PostgreSQL database: one migrates, the others wait
    // here and then find nothing left to do (the lock is the session's, freed on disconnect).
    const bool lock = db_->dialect() == Dialect::kPostgres;
    if (lock) {
      if (auto locked = run("SELECT pg_advisory_lock($1)", {kMigrationLock}); !locked) {
        return fail("schema migration: cannot take the migration lock: " + locked.error().message);
      }
    }
    auto migrated = migrate_steps(latest, target);
    if (lock) {
      if (auto unlocked = run("SELECT pg_advisory_unlock($1)", {kMigrationLock}); !unlocked) {
        if (migrated) return unlocked.error();
      }
    }
    return migrated;
  }

  Status migrate_steps(int latest, int target) {
    auto created = in_transaction(*db_, [&]() -> Status {
      return db_->exec_script(
          "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY, "
          "applied_at BIGINT NOT NULL)");
    });
    if (!created) return created;
    auto current = version_locked();
    if (!current) return current.error();
    if (current.value() > latest) {
      return fail("the store's schema is version " + std::to_string(current.value()) +
                  ", newer than this binary's " + std::to_string(latest) +
                  ": run a tunnel-core at least as new as the one that wrote it");
    }
    for (const auto& m : migrations()) {
      if (m.version <= current.value() || m.version > target) continue;
      auto step = in_transaction(*db_, [&]() -> Status {
        // Re-read inside the transaction: another core may have migrated meanwhile.
        auto now_at = version_locked();
        if (!now_at) return now_at.error();
        if (now_at.value() >= m.version) return success();
        if (auto s = db_->exec_script(migration_sql(m, db_->dialect())); !s) {
          return fail("schema migration " + std::to_string(m.version) + " (" + m.what +
                      "): " + s.error().message);
        }
        auto rows = run("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                        {std::int64_t{m.version}, now_()});
        if (!rows) return rows.error();
        return success();
      });
      if (!step) return step;
    }
    return success();
  }

  // Builds the data path's snapshot from the tables and publishes it.
  Status refresh_locked() {
    auto version = version_locked();
    if (!version) return version.error();
    auto next = std::make_shared<Snapshot>();
    const auto old = snapshot();
    next->generation = old ? old->generation + 1 : 1;
    if (version.value() < 1) {
      publish(std::move(next));
      return success();
    }
    auto tunnels =
        run("SELECT t.id, t.account_id, a.name, t.type, t.name, t.domain, t.port, t.bandwidth, "
            "t.proxy_protocol, t.agent_id, t.local FROM tunnels t JOIN accounts a ON a.id = "
            "t.account_id",
            {});
    if (!tunnels) return tunnels.error();
    for (const auto& r : tunnels.value()) {
      Snapshot::TunnelEntry e;
      e.id = as_int(r[0]);
      e.account_id = as_int(r[1]);
      e.account = r[2].value_or("");
      e.type = parse_tunnel_type(r[3].value_or("")).value_or(TunnelType::kHttp);
      e.bandwidth = static_cast<std::uint64_t>(as_int(r[7]));
      e.proxy_protocol = as_int(r[8]) != 0;
      e.agent_id = as_optional_int(r[9]);
      e.local = r[10].value_or("");
      if (e.type != TunnelType::kHttp) {
        next->by_port.emplace(std::pair(e.type, static_cast<std::uint16_t>(as_int(r[6]))), e);
      } else if (r[4]) {
        next->by_name.emplace(*r[4], e);
      } else if (r[5]) {
        next->by_domain.emplace(*r[5], e);
      }
    }
    auto agents =
        run("SELECT g.id, g.account_id, a.name, g.name, g.credential_hash FROM agents g JOIN "
            "accounts a ON a.id = g.account_id",
            {});
    if (!agents) return agents.error();
    for (const auto& r : agents.value()) {
      next->agents_by_hash.emplace(
          r[4].value_or(""),
          Snapshot::AgentEntry{as_int(r[0]), as_int(r[1]), r[2].value_or(""), r[3].value_or("")});
    }
    publish(std::move(next));
    return success();
  }

  std::mutex mutex_;
  std::unique_ptr<Connection> db_;
  std::string key_;
  std::string config_file_;
  RealTimeSource real_time_;  // when the options give no clock
  const TimeSource& time_;
  // Unix seconds on the store's clock, for the rows it writes.
  std::int64_t now_() const { return unix_seconds(time_); }
  std::string origin_;
};

}  // namespace

std::string_view to_string(Role role) {
  switch (role) {
    case Role::kOwner:
      return "owner";
    case Role::kAdmin:
      return "admin";
    case Role::kMember:
      return "member";
    case Role::kViewer:
      return "viewer";
  }
  return "viewer";
}

std::optional<Role> parse_role(std::string_view text) {
  for (Role r : {Role::kOwner, Role::kAdmin, Role::kMember, Role::kViewer}) {
    if (to_string(r) == text) return r;
  }
  return std::nullopt;
}

std::string_view to_string(TunnelType type) {
  switch (type) {
    case TunnelType::kHttp:
      return "http";
    case TunnelType::kTcp:
      return "tcp";
    case TunnelType::kUdp:
      return "udp";
  }
  return "http";
}

std::optional<TunnelType> parse_tunnel_type(std::string_view text) {
  for (TunnelType t : {TunnelType::kHttp, TunnelType::kTcp, TunnelType::kUdp}) {
    if (to_string(t) == text) return t;
  }
  return std::nullopt;
}

const Snapshot::AgentEntry* Snapshot::find_agent(std::string_view credential_hash) const {
  const auto it = agents_by_hash.find(std::string(credential_hash));
  return it == agents_by_hash.end() ? nullptr : &it->second;
}

std::string hash_secret(std::string_view key, std::string_view secret) {
  unsigned char out[32];
  unsigned int size = sizeof out;
  static const char kNoKey = 0;
  HMAC(EVP_sha256(), key.empty() ? &kNoKey : key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), out, &size);
  return std::string(reinterpret_cast<const char*>(out), size);
}

std::string hash_secret_hex(std::string_view key, std::string_view secret) {
  return to_hex(hash_secret(key, secret));
}

std::string new_secret(std::string_view prefix) {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) std::abort();  // no randomness: nothing is safe
  return std::string(prefix) +
         to_hex(std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
}

int Store::latest_schema_version() {
  return migrations().back().version;
}

Result<std::string> load_or_create_store_key(const std::string& data_dir) {
  const std::string path = data_dir + "/store.key";
  std::ifstream in(path, std::ios::binary);
  if (in) {
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (text.size() < 32) {
      return fail(path + ": the store key is too short (" + std::to_string(text.size()) +
                  " bytes, at least 32); it hashes every stored credential, so restore it from a "
                  "backup rather than replacing it");
    }
    return text;
  }
  const std::string key = new_secret("");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return fail(tmp + ": cannot create the store key: " + std::strerror(errno));
  const std::string line = key + "\n";
  const bool wrote = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
                     ::fsync(fd) == 0;
  ::close(fd);
  // link() does not replace: if another core made the key meanwhile, use that one.
  const bool linked = wrote && (::link(tmp.c_str(), path.c_str()) == 0 || errno == EEXIST);
  ::unlink(tmp.c_str());
  if (!linked) return fail(path + ": cannot write the store key: " + std::strerror(errno));
  return load_or_create_store_key(data_dir);
}

Result<std::unique_ptr<Store>> open_store(const StoreOptions& options) {
  StoreOptions o = options;
  const bool postgres = o.url.starts_with("postgres://") || o.url.starts_with("postgresql://");
  if (o.secret_key.empty()) {
    if (o.data_dir.empty()) return fail("the store needs a data dir for its key (store.key)");
    auto key = load_or_create_store_key(o.data_dir);
    if (!key) return key.error();
    o.secret_key = key.value();
  }
  if (o.secret_key.size() < 32) return fail("the store key must be at least 32 bytes");
  Result<std::unique_ptr<Connection>> connection = fail("");
  if (postgres) {
    connection = open_postgres(o.url);
  } else {
    std::string path = o.url.starts_with("sqlite:") ? o.url.substr(7) : o.url;
    if (path.empty()) {
      if (o.data_dir.empty()) return fail("the store needs store.url or a data dir");
      path = o.data_dir + "/store.db";
    } else if (!o.url.starts_with("sqlite:")) {
      return fail("store.url " + quoted(o.url) +
                  ": use sqlite:PATH or postgres://user@host:port/database");
    }
    // The database holds hashes and account data: only the core's user reads it.
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return fail(path + ": cannot open the store: " + std::strerror(errno));
    ::close(fd);
    connection = open_sqlite(path);
  }
  if (!connection) return connection.error();
  auto store = std::make_unique<SqlStore>(std::move(connection).value(), o);
  if (auto s = store->open(o.migrate_to); !s) return s.error();
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace tunnel::core::store
