#include "core/control/store/migrations.hpp"

namespace tunnel::core::store {
namespace {

constexpr Migration kMigrations[] = {
    {1, "accounts, users, teams, role bindings, agents, API keys, tunnels, quotas", R"sql(
CREATE TABLE accounts (
  id {ID},
  name TEXT NOT NULL UNIQUE,
  configured INTEGER NOT NULL DEFAULT 0,
  created_at {BIGINT} NOT NULL
);
CREATE TABLE users (
  id {ID},
  account_id {BIGINT} NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  email TEXT NOT NULL DEFAULT '',
  password_hash TEXT NOT NULL DEFAULT '',
  created_at {BIGINT} NOT NULL,
  UNIQUE (account_id, name)
);
CREATE TABLE teams (
  id {ID},
  account_id {BIGINT} NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  created_at {BIGINT} NOT NULL,
  UNIQUE (account_id, name)
);
CREATE TABLE team_members (
  team_id {BIGINT} NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
  user_id {BIGINT} NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  PRIMARY KEY (team_id, user_id)
);
CREATE TABLE role_bindings (
  id {ID},
  account_id {BIGINT} NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  user_id {BIGINT} REFERENCES users(id) ON DELETE CASCADE,
  team_id {BIGINT} REFERENCES teams(id) ON DELETE CASCADE,
  role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  CHECK ((user_id IS NULL) <> (team_id IS NULL))
);
CREATE TABLE agents (
  id {ID},
  account_id {BIGINT} NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  credential_hash TEXT NOT NULL UNIQUE,
  created_at {BIGINT} NOT NULL,
  UNIQUE (account_id, name)
);
CREATE TABLE api_keys (
  id {ID},
  user_id {BIGINT} NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  role TEXT CHECK (role IS NULL OR role IN ('owner', 'admin', 'member', 'viewer')),
  expires_at {BIGINT},
  revoked_at {BIGINT},
  created_at {BIGINT} NOT NULL
);
CREATE TABLE tunnels (
  id {ID},
  account_id {BIGINT} NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  type TEXT NOT NULL CHECK (type IN ('http', 'tcp', 'udp')),
  name TEXT UNIQUE,
  domain TEXT UNIQUE,
  port INTEGER CHECK (port IS NULL OR (port >= 1 AND port <= 65535)),
  bandwidth {BIGINT} NOT NULL DEFAULT 0,
  proxy_protocol INTEGER NOT NULL DEFAULT 0,
  agent_id {BIGINT} REFERENCES agents(id) ON DELETE SET NULL,
  local TEXT NOT NULL DEFAULT '',
  created_at {BIGINT} NOT NULL,
  updated_at {BIGINT} NOT NULL,
  UNIQUE (type, port)
);
CREATE INDEX tunnels_account ON tunnels(account_id);
CREATE TABLE quotas (
  account_id {BIGINT} PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
  max_agents {BIGINT} NOT NULL DEFAULT 0,
  max_tunnels {BIGINT} NOT NULL DEFAULT 0,
  max_connections {BIGINT} NOT NULL DEFAULT 0,
  max_requests_per_second {BIGINT} NOT NULL DEFAULT 0,
  bandwidth {BIGINT} NOT NULL DEFAULT 0,
  bytes_per_month {BIGINT} NOT NULL DEFAULT 0
);
)sql"},
    {2, "hourly usage buckets and the audit log", R"sql(
CREATE TABLE usage_hourly (
  account_id {BIGINT} NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  tunnel_id {BIGINT} NOT NULL DEFAULT 0,
  hour {BIGINT} NOT NULL,
  requests {BIGINT} NOT NULL DEFAULT 0,
  bytes_in {BIGINT} NOT NULL DEFAULT 0,
  bytes_out {BIGINT} NOT NULL DEFAULT 0,
  errors {BIGINT} NOT NULL DEFAULT 0,
  PRIMARY KEY (account_id, tunnel_id, hour)
);
CREATE INDEX usage_hourly_hour ON usage_hourly(hour);
CREATE TABLE audit (
  id {ID},
  at {BIGINT} NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  object TEXT NOT NULL,
  source TEXT NOT NULL DEFAULT '',
  before_json TEXT NOT NULL DEFAULT '',
  after_json TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit(at);
)sql"},
    {3, "the registry's ownership of names and ports across restarts", R"sql(
CREATE TABLE registry_ownership (
  key TEXT NOT NULL PRIMARY KEY,
  account TEXT NOT NULL,
  holder TEXT NOT NULL DEFAULT '',
  explicit_name INTEGER NOT NULL DEFAULT 0,
  offline_since {BIGINT} NOT NULL DEFAULT 0
);
)sql"},
    {4, "who created each tunnel and agent (a member manages only its own)", R"sql(
ALTER TABLE tunnels ADD COLUMN created_by {BIGINT} REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE agents ADD COLUMN created_by {BIGINT} REFERENCES users(id) ON DELETE SET NULL;
)sql"},
    {5,
     "the registry's ownership kept per core, so that cores sharing a store do not overwrite "
     "each other's",
     R"sql(
CREATE TABLE registry_ownership_v5 (
  core TEXT NOT NULL DEFAULT '',
  key TEXT NOT NULL,
  account TEXT NOT NULL,
  holder TEXT NOT NULL DEFAULT '',
  explicit_name INTEGER NOT NULL DEFAULT 0,
  offline_since {BIGINT} NOT NULL DEFAULT 0,
  PRIMARY KEY (core, key)
);
INSERT INTO registry_ownership_v5 (core, key, account, holder, explicit_name, offline_since)
  SELECT '', key, account, holder, explicit_name, offline_since FROM registry_ownership;
DROP TABLE registry_ownership;
ALTER TABLE registry_ownership_v5 RENAME TO registry_ownership;
)sql"},
};

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

}  // namespace

std::span<const Migration> migrations() {
  return kMigrations;
}

std::string migration_sql(const Migration& m, Dialect dialect) {
  std::string sql = m.sql;
  const bool sqlite = dialect == Dialect::kSqlite;
  replace_all(sql, "{ID}",
              sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT"
                     : "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY");
  replace_all(sql, "{BIGINT}", sqlite ? "INTEGER" : "BIGINT");
  return sql;
}

}  // namespace tunnel::core::store
