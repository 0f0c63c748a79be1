// The control plane's persistent store (issue 17): accounts, users, teams, role bindings,
// agents, API keys, tunnels, quotas, usage and the audit log, behind one interface with two
// backends (SQLite, the embedded default; PostgreSQL, for several cores sharing one registry).
//
// Threading: a Store is used from the control thread only (one connection, guarded by a
// mutex so that a stray call from elsewhere waits instead of corrupting it). The data path
// never calls it: it reads snapshot(), an immutable Snapshot that the store rebuilds after
// each change and swaps in atomically.
//
// Errors: every fallible call returns common::Result / common::Status. A lookup of an id that
// does not exist is not an error: get_* answer std::nullopt and remove_* answer false, so the
// API can answer 404. Conflicts and bad values are errors naming the field and the value.
//
// Secrets (agent credentials, API keys) are generated here, returned once by the create call
// and stored only as HMAC-SHA256(store key, secret): see hash_secret() and docs/adr/0006.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/time_source.hpp"

namespace tunnel::core::store {

using common::Result;
using common::Status;
using Id = std::int64_t;

enum class Role { kOwner, kAdmin, kMember, kViewer };
std::string_view to_string(Role role);
std::optional<Role> parse_role(std::string_view text);

enum class TunnelType { kHttp, kTcp, kUdp };
std::string_view to_string(TunnelType type);
std::optional<TunnelType> parse_tunnel_type(std::string_view text);

// Times are Unix seconds (UTC).
struct Account {
  Id id = 0;
  std::string name;
  // Declared in the YAML file: listed, never changed through the store (see configured_by).
  bool configured = false;
  std::int64_t created_at = 0;
  bool operator==(const Account&) const = default;
};

struct User {
  Id id = 0;
  Id account_id = 0;
  std::string name;
  std::string email;
  // A password hash in PHC string form ("$argon2id$..."), made by the caller; "" = no password
  // login. The store never sees a password.
  std::string password_hash;
  std::int64_t created_at = 0;
  bool operator==(const User&) const = default;
};

struct Team {
  Id id = 0;
  Id account_id = 0;
  std::string name;
  std::int64_t created_at = 0;
  bool operator==(const Team&) const = default;
};

// A role on an account, given to one user or to one team (exactly one of the two).
struct RoleBinding {
  Id id = 0;
  Id account_id = 0;
  std::optional<Id> user_id;
  std::optional<Id> team_id;
  Role role = Role::kViewer;
  bool operator==(const RoleBinding&) const = default;
};

// A registered agent: its credential is shown once, at creation, and stored hashed.
struct Agent {
  Id id = 0;
  Id account_id = 0;
  std::string name;
  std::int64_t created_at = 0;
  std::optional<Id> created_by;  // the user who registered it; nullopt = unknown or removed
  bool operator==(const Agent&) const = default;
};

struct ApiKey {
  Id id = 0;
  Id user_id = 0;
  std::string name;
  std::optional<Role> role;  // narrows the user's roles; nullopt = the user's own
  std::optional<std::int64_t> expires_at;
  std::optional<std::int64_t> revoked_at;
  std::int64_t created_at = 0;
  bool operator==(const ApiKey&) const = default;
};

// A reserved name owned by an account: an http tunnel has `name` (a DNS label or a "prefix-*"
// glob under the base domain) or `domain` (a custom domain, "example.org" or "*.example.org");
// a tcp or udp tunnel has `port`. Exactly one of the three is set.
struct Tunnel {
  Id id = 0;
  Id account_id = 0;
  TunnelType type = TunnelType::kHttp;
  std::string name;
  std::string domain;
  std::uint16_t port = 0;
  std::uint64_t bandwidth = 0;  // bytes per second, 0 = the account's limit
  bool proxy_protocol = false;
  std::optional<Id> agent_id;  // assigned to a registered agent of the same account
  std::string local;           // the assigned agent's local target, "host:port"
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
  std::optional<Id> created_by;  // the user who created it; nullopt = unknown or removed
  bool operator==(const Tunnel&) const = default;
};

// Per account; 0 = unlimited.
struct Quota {
  Id account_id = 0;
  std::uint64_t max_agents = 0;
  std::uint64_t max_tunnels = 0;
  std::uint64_t max_connections = 0;
  std::uint64_t max_requests_per_second = 0;
  std::uint64_t bandwidth = 0;  // bytes per second
  std::uint64_t bytes_per_month = 0;
  bool operator==(const Quota&) const = default;
};

// One hourly bucket; tunnel_id 0 = the account as a whole. add_usage() adds to the bucket.
struct Usage {
  Id account_id = 0;
  Id tunnel_id = 0;
  std::int64_t hour = 0;  // Unix seconds / 3600
  std::uint64_t requests = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t errors = 0;
  bool operator==(const Usage&) const = default;
};

// Who did what, when, from where; before/after are JSON documents ("" = none).
struct AuditEntry {
  Id id = 0;
  std::int64_t at = 0;
  std::string actor;   // "user:3", "key:7", "config", "cli"
  std::string action;  // "tunnel.create"
  std::string object;  // "tunnel:12"
  std::string source;  // the client's address
  std::string before;
  std::string after;
  bool operator==(const AuditEntry&) const = default;
};

// The registry's ownership of one hostname or port (core/agents/registry.hpp, Registry::Owned),
// kept across restarts (StoreOwnershipStore in core/store_ownership.hpp).
struct OwnershipEntry {
  std::string key;  // a hostname, or "tcp:15432" / "udp:5353"
  std::string account;
  std::string holder;
  bool explicit_name = false;
  std::int64_t offline_since = 0;
  bool operator==(const OwnershipEntry&) const = default;
};

// One page of a list, in id order (keyset pagination: the next page starts after the last id
// of this one, so a page costs the same wherever it is). limit 0 = every row.
struct TunnelQuery {
  std::optional<Id> account_id;
  std::optional<TunnelType> type;
  std::optional<Id> agent_id;
  Id after = 0;
  std::size_t limit = 0;
};
struct AgentQuery {
  std::optional<Id> account_id;
  Id after = 0;
  std::size_t limit = 0;
};

// A created object and its secret, which the store does not keep: show it once.
template <typename T>
struct WithSecret {
  T object;
  std::string secret;
};

// What the data path needs, immutable once published.
struct Snapshot {
  struct TunnelEntry {
    Id id = 0;
    Id account_id = 0;
    std::string account;
    TunnelType type = TunnelType::kHttp;
    std::uint64_t bandwidth = 0;
    bool proxy_protocol = false;
    std::optional<Id> agent_id;
    std::string local;
  };
  struct AgentEntry {
    Id id = 0;
    Id account_id = 0;
    std::string account;
    std::string name;
  };
  std::uint64_t generation = 0;
  std::map<std::string, TunnelEntry> by_name;    // http: lower-case name or "prefix-*"
  std::map<std::string, TunnelEntry> by_domain;  // http: lower-case custom domain
  std::map<std::pair<TunnelType, std::uint16_t>, TunnelEntry> by_port;  // tcp, udp
  std::map<std::string, AgentEntry> agents_by_hash;  // key: hash_secret() of the credential

  const AgentEntry* find_agent(std::string_view credential_hash) const;
};

// HMAC-SHA256(key, secret), 32 raw bytes.
std::string hash_secret(std::string_view key, std::string_view secret);
// The same, as 64 lower-case hex digits (the form the store keeps).
std::string hash_secret_hex(std::string_view key, std::string_view secret);
// A new secret: `prefix` + 64 hex digits of 256 random bits ("tna_", "tnk_").
std::string new_secret(std::string_view prefix);

// The PostgreSQL channel on which a store announces its committed changes.
inline constexpr const char* kChangeChannel = "tunnel_store_changed";

struct StoreOptions {
  // "" or "sqlite:PATH" = SQLite at PATH (default <data_dir>/store.db);
  // "postgres://..." or "postgresql://..." = PostgreSQL.
  std::string url;
  std::string data_dir;
  // The HMAC key for secrets: at least 32 bytes. "" = <data_dir>/store.key (made 0600 if
  // missing).
  std::string secret_key;
  // The YAML file that declares the configured accounts, for messages.
  std::string config_file;
  // Migrate to this version instead of the latest (tests write older fixtures this way).
  std::optional<int> migrate_to;
  // The clock of created_at, updated_at, audit times and usage hours (the core's TimeSource, in
  // unix seconds; it must outlive the store); nullptr = the system clock.
  const TimeSource* time = nullptr;
};

class Store {
 public:
  virtual ~Store() = default;

  // The schema version of the database and of this binary.
  virtual Result<int> schema_version() = 0;
  static int latest_schema_version();
  // Runs the pending migrations (open_store() already did, up to options.migrate_to).
  virtual Status migrate(std::optional<int> to = std::nullopt) = 0;
  // The database's own consistency check (SQLite: PRAGMA integrity_check).
  virtual Status check_integrity() = 0;

  // Makes the accounts named in the YAML file the store's configured ones, in one transaction:
  // a missing one is created (configured), an existing ordinary one with the same name is
  // refused (rename one of them), and a configured account the file no longer names becomes an
  // ordinary one (kept with what it owns; the API may then change or remove it).
  virtual Status sync_configured_accounts(const std::vector<std::string>& names) = 0;

  virtual Result<Account> create_account(const Account& a) = 0;
  virtual Result<std::optional<Account>> get_account(Id id) = 0;
  virtual Result<std::optional<Account>> find_account(std::string_view name) = 0;
  virtual Result<std::vector<Account>> list_accounts() = 0;
  virtual Result<Account> update_account(const Account& a) = 0;
  virtual Result<bool> remove_account(Id id) = 0;

  virtual Result<User> create_user(const User& u) = 0;
  virtual Result<std::optional<User>> get_user(Id id) = 0;
  virtual Result<std::vector<User>> list_users(Id account_id) = 0;
  virtual Result<User> update_user(const User& u) = 0;
  virtual Result<bool> remove_user(Id id) = 0;

  virtual Result<Team> create_team(const Team& t) = 0;
  virtual Result<std::optional<Team>> get_team(Id id) = 0;
  virtual Result<std::vector<Team>> list_teams(Id account_id) = 0;
  virtual Result<Team> update_team(const Team& t) = 0;
  virtual Result<bool> remove_team(Id id) = 0;
  virtual Status add_team_member(Id team_id, Id user_id) = 0;
  virtual Result<bool> remove_team_member(Id team_id, Id user_id) = 0;
  virtual Result<std::vector<Id>> list_team_members(Id team_id) = 0;

  virtual Result<RoleBinding> create_role_binding(const RoleBinding& b) = 0;
  virtual Result<std::optional<RoleBinding>> get_role_binding(Id id) = 0;
  virtual Result<std::vector<RoleBinding>> list_role_bindings(Id account_id) = 0;
  virtual Result<RoleBinding> update_role_binding(const RoleBinding& b) = 0;
  virtual Result<bool> remove_role_binding(Id id) = 0;

  // The credential is in .secret, once.
  virtual Result<WithSecret<Agent>> create_agent(const Agent& a) = 0;
  virtual Result<std::optional<Agent>> get_agent(Id id) = 0;
  virtual Result<std::vector<Agent>> list_agents(Id account_id) = 0;
  virtual Result<Agent> update_agent(const Agent& a) = 0;
  virtual Result<bool> remove_agent(Id id) = 0;
  virtual Result<std::optional<Agent>> find_agent_by_credential(std::string_view credential) = 0;
  virtual Result<std::vector<Agent>> find_agents(const AgentQuery& query) = 0;

  virtual Result<WithSecret<ApiKey>> create_api_key(const ApiKey& k) = 0;
  virtual Result<std::optional<ApiKey>> get_api_key(Id id) = 0;
  virtual Result<std::vector<ApiKey>> list_api_keys(Id user_id) = 0;
  virtual Result<ApiKey> update_api_key(const ApiKey& k) = 0;  // name, role, expiry
  virtual Result<bool> revoke_api_key(Id id) = 0;
  virtual Result<bool> remove_api_key(Id id) = 0;
  // The key the secret belongs to if it is known, not revoked and not expired; nullopt
  // otherwise (the caller answers 401 without saying which).
  virtual Result<std::optional<ApiKey>> authenticate_api_key(std::string_view secret) = 0;

  virtual Result<Tunnel> create_tunnel(const Tunnel& t) = 0;
  virtual Result<std::optional<Tunnel>> get_tunnel(Id id) = 0;
  // All tunnels, or one account's.
  virtual Result<std::vector<Tunnel>> list_tunnels(std::optional<Id> account_id) = 0;
  virtual Result<std::vector<Tunnel>> find_tunnels(const TunnelQuery& query) = 0;
  virtual Result<Tunnel> update_tunnel(const Tunnel& t) = 0;
  virtual Result<bool> remove_tunnel(Id id) = 0;

  // An account without a quota row has the default (all 0, unlimited).
  virtual Result<Quota> get_quota(Id account_id) = 0;
  virtual Result<Quota> set_quota(const Quota& q) = 0;

  // Adds each sample to its bucket, in one transaction.
  virtual Status add_usage(const std::vector<Usage>& samples) = 0;
  // Buckets of [from_hour, to_hour) of one account, by hour then tunnel.
  virtual Result<std::vector<Usage>> list_usage(Id account_id, std::int64_t from_hour,
                                                std::int64_t to_hour) = 0;
  // Drops buckets older than `before_hour`; answers how many.
  virtual Result<std::uint64_t> prune_usage(std::int64_t before_hour) = 0;

  virtual Result<AuditEntry> append_audit(const AuditEntry& e) = 0;
  // Newest first: up to `limit` entries with id < before_id (0 = from the newest).
  virtual Result<std::vector<AuditEntry>> list_audit(std::size_t limit, Id before_id = 0) = 0;

  // The registry's ownership as `core` (a core's stable id; cores sharing a store each keep
  // their own) saved it; rows saved before schema version 5 (core "") count as every core's
  // until one saves. save replaces all of `core`'s in one transaction.
  virtual Result<std::vector<OwnershipEntry>> load_ownership(const std::string& core) = 0;
  virtual Status save_ownership(const std::string& core,
                                const std::vector<OwnershipEntry>& entries) = 0;

  // hash_secret_hex() with this store's key, as a function the data path may keep and call from
  // any thread (it holds a copy of the key, not the store): how a registered agent's
  // credential is recognised without asking the database.
  virtual std::function<std::string(std::string_view)> credential_hasher() const = 0;

  // Rebuilds the snapshot from the tables: another core sharing the database changed them
  // (PostgreSQL: see change_follower.hpp).
  virtual Status reload() = 0;
  // Whether other processes may change this database (PostgreSQL): then every committed change
  // sends NOTIFY on kChangeChannel, in its transaction, with change_origin() as the payload.
  virtual bool shared() const = 0;
  // This store's own name in those notifications (random per open), so that a core can skip
  // its own.
  virtual const std::string& change_origin() const = 0;

  // The current snapshot; never null after open_store() succeeded.
  std::shared_ptr<const Snapshot> snapshot() const { return snapshot_.load(); }

 protected:
  void publish(std::shared_ptr<const Snapshot> s) { snapshot_.store(std::move(s)); }

 private:
  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
};

// Opens (creating if needed) the store named by options.url, runs its migrations and builds
// the first snapshot. Refuses a database newer than this binary, naming both versions.
Result<std::unique_ptr<Store>> open_store(const StoreOptions& options);

// The store key of a data dir: <data_dir>/store.key, 32 random bytes made 0600 if missing.
Result<std::string> load_or_create_store_key(const std::string& data_dir);

}  // namespace tunnel::core::store
