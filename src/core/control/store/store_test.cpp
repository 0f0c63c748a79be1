// The store's behaviour, the same on every backend (a typed suite: SQLite always; PostgreSQL
// when its binaries are installed, on a cluster the fixture starts; see test_backends.hpp).
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

// Designated initializers leave the other members at their defaults, which is the point.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include "core/control/store/store.hpp"
#include "core/control/store/test_backends.hpp"

namespace tunnel::core::store {
namespace {

template <typename B>
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = B::unavailable(); !why.empty()) GTEST_SKIP() << why;
    backend_ = std::make_unique<B>();
    store_ = open();
    ASSERT_TRUE(store_);
  }
  void TearDown() override {
    store_.reset();
    backend_.reset();
  }

  std::unique_ptr<Store> open(std::optional<int> to = std::nullopt) {
    auto o = backend_->options();
    o.migrate_to = to;
    o.config_file = "/etc/tunnel/core.yaml";
    o.time = &time_;
    auto s = open_store(o);
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    return s ? std::move(s).value() : nullptr;
  }

  Account account(const std::string& name) {
    auto a = store_->create_account({.name = name});
    EXPECT_TRUE(a) << (a ? "" : a.error().message);
    return a ? a.value() : Account{};
  }

  Tunnel http(Id account, std::string name) {
    Tunnel t;
    t.account_id = account;
    t.name = std::move(name);
    return t;
  }

  SimulatedTimeSource time_;  // the store's clock: moves only when a test advances it
  std::unique_ptr<B> backend_;
  std::unique_ptr<Store> store_;
};

TYPED_TEST_SUITE(StoreTest, Backends, BackendNames);

// The store writes its times on the clock it is given (the core's TimeSource), not the
// system's: here a simulated one that starts at 2026-01-01 and moves by hand.
TYPED_TEST(StoreTest, TimestampsComeFromTheStoresClock) {
  auto& s = *this->store_;
  const std::int64_t start = SimulatedTimeSource::kStartSinceEpoch.count();
  EXPECT_EQ(this->account("acme").created_at, start);
  this->time_.advance(std::chrono::hours(1));
  const Account later = this->account("later");
  EXPECT_EQ(later.created_at, start + 3600);
  auto tunnel = s.create_tunnel(this->http(later.id, "web"));
  ASSERT_TRUE(tunnel) << tunnel.error().message;
  EXPECT_EQ(tunnel.value().created_at, start + 3600);
  this->time_.advance(std::chrono::seconds(60));
  Tunnel changed = tunnel.value();
  changed.bandwidth = 1000;
  auto updated = s.update_tunnel(changed);
  ASSERT_TRUE(updated) << updated.error().message;
  EXPECT_EQ(updated.value().created_at, start + 3600);
  EXPECT_EQ(updated.value().updated_at, start + 3660);
}

// Errors say their kind, which the REST API answers by: a name taken is a conflict (also when
// the UNIQUE constraint catches it), a bad name invalid, a missing object not found.
TYPED_TEST(StoreTest, ErrorsHaveKinds) {
  auto& s = *this->store_;
  const Account a = this->account("acme");
  auto dup = s.create_account({.name = "acme"});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().kind, common::ErrorKind::kConflict) << dup.error().message;
  auto bad = s.create_account({.name = "a b"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, common::ErrorKind::kInvalid) << bad.error().message;
  auto web = s.create_tunnel(this->http(a.id, "web"));
  ASSERT_TRUE(web) << web.error().message;
  auto taken = s.create_tunnel(this->http(a.id, "web"));
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().kind, common::ErrorKind::kConflict) << taken.error().message;
  Tunnel missing = web.value();
  missing.id += 100;
  auto gone = s.update_tunnel(missing);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().kind, common::ErrorKind::kNotFound) << gone.error().message;
  // A UNIQUE constraint: two users of one name in one account.
  ASSERT_TRUE(s.create_user({.account_id = a.id, .name = "ann"}));
  auto twin = s.create_user({.account_id = a.id, .name = "ann"});
  ASSERT_FALSE(twin);
  EXPECT_EQ(twin.error().kind, common::ErrorKind::kConflict) << twin.error().message;
}

TYPED_TEST(StoreTest, SchemaIsAtTheLatestVersion) {
  auto v = this->store_->schema_version();
  ASSERT_TRUE(v);
  EXPECT_EQ(v.value(), Store::latest_schema_version());
  EXPECT_TRUE(this->store_->check_integrity());
}

TYPED_TEST(StoreTest, AccountsCrud) {
  auto& s = *this->store_;
  Account a = this->account("acme");
  EXPECT_GT(a.id, 0);
  EXPECT_FALSE(a.configured);
  EXPECT_EQ(s.get_account(a.id).value(), a);
  EXPECT_EQ(s.find_account("acme").value(), a);
  EXPECT_FALSE(s.find_account("nobody").value());
  EXPECT_FALSE(s.get_account(a.id + 100).value());
  auto dup = s.create_account({.name = "acme"});
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("\"acme\" exists"), std::string::npos);
  auto bad = s.create_account({.name = "a b"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("account.name \"a b\""), std::string::npos);
  a.name = "acme2";
  EXPECT_EQ(s.update_account(a).value().name, "acme2");
  this->account("other");
  EXPECT_EQ(s.list_accounts().value().size(), 2u);
  EXPECT_TRUE(s.remove_account(a.id).value());
  EXPECT_FALSE(s.remove_account(a.id).value());
  EXPECT_EQ(s.list_accounts().value().size(), 1u);
}

TYPED_TEST(StoreTest, ConfiguredAccountsAreListedButNotChanged) {
  auto& s = *this->store_;
  auto a = s.create_account({.name = "yaml", .configured = true});
  ASSERT_TRUE(a);
  EXPECT_TRUE(a.value().configured);
  Account changed = a.value();
  changed.name = "renamed";
  auto u = s.update_account(changed);
  ASSERT_FALSE(u);
  EXPECT_NE(u.error().message.find("declared in the configuration file /etc/tunnel/core.yaml"),
            std::string::npos)
      << u.error().message;
  EXPECT_FALSE(s.remove_account(a.value().id));
  EXPECT_EQ(s.find_account("yaml").value()->name, "yaml");
}

TYPED_TEST(StoreTest, TheConfigFilesAccountsAreSynced) {
  auto& s = *this->store_;
  Account api = this->account("api-made");
  ASSERT_TRUE(s.sync_configured_accounts({"alice", "bob"}));
  auto alice = s.find_account("alice").value();
  ASSERT_TRUE(alice);
  EXPECT_TRUE(alice->configured);
  EXPECT_FALSE(s.remove_account(alice->id));
  ASSERT_TRUE(s.create_tunnel(this->http(alice->id, "app")));  // it owns things like others
  ASSERT_TRUE(s.sync_configured_accounts({"alice", "bob"}));   // again: nothing changes
  EXPECT_EQ(s.list_accounts().value().size(), 3u);

  // Dropped from the file: an ordinary account, kept with its tunnels.
  ASSERT_TRUE(s.sync_configured_accounts({"bob"}));
  auto freed = s.find_account("alice").value();
  ASSERT_TRUE(freed);
  EXPECT_FALSE(freed->configured);
  EXPECT_EQ(s.list_tunnels(freed->id).value().size(), 1u);

  // A file naming an account made through the API: refused, nothing changed.
  auto clash = s.sync_configured_accounts({"bob", "carol", "api-made"});
  ASSERT_FALSE(clash);
  EXPECT_NE(clash.error().message.find("account \"api-made\" of the configuration file "
                                       "/etc/tunnel/core.yaml exists in the store"),
            std::string::npos)
      << clash.error().message;
  EXPECT_FALSE(s.find_account("carol").value());
  EXPECT_FALSE(s.get_account(api.id).value()->configured);
}

TYPED_TEST(StoreTest, UsersTeamsAndRoleBindings) {
  auto& s = *this->store_;
  Account a = this->account("acme");
  Account b = this->account("other");
  auto u = s.create_user({.account_id = a.id, .name = "ann", .email = "ann@example.org"});
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(s.get_user(u.value().id).value(), u.value());
  EXPECT_FALSE(s.create_user({.account_id = a.id, .name = "ann"}));  // unique per account
  EXPECT_TRUE(s.create_user({.account_id = b.id, .name = "ann"}));
  auto missing = s.create_user({.account_id = 999, .name = "x"});  // foreign key
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("user \"x\" in account 999"), std::string::npos)
      << missing.error().message;
  User changed = u.value();
  changed.email = "ann@acme.example";
  changed.password_hash = "$argon2id$v=19$...";
  EXPECT_EQ(s.update_user(changed).value(), changed);
  EXPECT_EQ(s.list_users(a.id).value().size(), 1u);

  auto t = s.create_team({.account_id = a.id, .name = "ops"});
  ASSERT_TRUE(t);
  EXPECT_EQ(s.get_team(t.value().id).value(), t.value());
  Team renamed = t.value();
  renamed.name = "sre";
  EXPECT_EQ(s.update_team(renamed).value().name, "sre");
  EXPECT_EQ(s.list_teams(a.id).value().size(), 1u);
  EXPECT_TRUE(s.add_team_member(t.value().id, u.value().id));
  EXPECT_TRUE(s.add_team_member(t.value().id, u.value().id));  // twice is once
  EXPECT_EQ(s.list_team_members(t.value().id).value(), std::vector<Id>{u.value().id});
  auto other_user = s.list_users(b.id).value().at(0);
  EXPECT_FALSE(s.add_team_member(t.value().id, other_user.id));  // another account's user

  auto rb =
      s.create_role_binding({.account_id = a.id, .user_id = u.value().id, .role = Role::kAdmin});
  ASSERT_TRUE(rb) << rb.error().message;
  EXPECT_EQ(s.get_role_binding(rb.value().id).value(), rb.value());
  EXPECT_FALSE(s.create_role_binding({.account_id = a.id, .role = Role::kAdmin}));  // no subject
  EXPECT_FALSE(s.create_role_binding(
      {.account_id = b.id, .user_id = u.value().id, .role = Role::kViewer}));  // cross-account
  auto tb =
      s.create_role_binding({.account_id = a.id, .team_id = t.value().id, .role = Role::kMember});
  ASSERT_TRUE(tb);
  RoleBinding viewer = tb.value();
  viewer.role = Role::kViewer;
  EXPECT_EQ(s.update_role_binding(viewer).value().role, Role::kViewer);
  EXPECT_EQ(s.list_role_bindings(a.id).value().size(), 2u);
  EXPECT_TRUE(s.remove_role_binding(rb.value().id).value());

  // Cascades: a removed team takes its memberships and bindings along.
  EXPECT_TRUE(s.remove_team(t.value().id).value());
  EXPECT_TRUE(s.list_role_bindings(a.id).value().empty());
  EXPECT_TRUE(s.remove_team_member(t.value().id, u.value().id).has_value());
  EXPECT_TRUE(s.remove_user(u.value().id).value());
  EXPECT_FALSE(s.get_user(u.value().id).value());
}

TYPED_TEST(StoreTest, AgentsHaveAHashedCredentialShownOnce) {
  auto& s = *this->store_;
  Account a = this->account("acme");
  auto created = s.create_agent({.account_id = a.id, .name = "laptop"});
  ASSERT_TRUE(created) << created.error().message;
  const std::string token = created.value().secret;
  EXPECT_EQ(token.size(), 4u + 64u);
  EXPECT_EQ(token.substr(0, 4), "tna_");
  EXPECT_EQ(s.get_agent(created.value().object.id).value(), created.value().object);
  EXPECT_EQ(s.find_agent_by_credential(token).value(), created.value().object);
  EXPECT_FALSE(s.find_agent_by_credential(token + "x").value());
  EXPECT_FALSE(s.create_agent({.account_id = a.id, .name = "laptop"}));

  auto snap = s.snapshot();
  const auto* entry =
      snap->find_agent(hash_secret_hex(this->backend_->options().secret_key, token));
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->account, "acme");
  EXPECT_EQ(entry->name, "laptop");

  Agent renamed = created.value().object;
  renamed.name = "desktop";
  EXPECT_EQ(s.update_agent(renamed).value().name, "desktop");
  EXPECT_EQ(s.list_agents(a.id).value().size(), 1u);
  EXPECT_TRUE(s.remove_agent(renamed.id).value());
  EXPECT_FALSE(s.find_agent_by_credential(token).value());
  EXPECT_TRUE(s.snapshot()->agents_by_hash.empty());
}

TYPED_TEST(StoreTest, ApiKeysExpireAndAreRevoked) {
  auto& s = *this->store_;
  Account a = this->account("acme");
  auto u = s.create_user({.account_id = a.id, .name = "ann"}).value();
  auto k = s.create_api_key({.user_id = u.id, .name = "ci", .role = Role::kViewer});
  ASSERT_TRUE(k) << k.error().message;
  const std::string secret = k.value().secret;
  EXPECT_EQ(secret.substr(0, 4), "tnk_");
  EXPECT_EQ(s.authenticate_api_key(secret).value(), k.value().object);
  EXPECT_FALSE(s.authenticate_api_key("tnk_nope").value());
  EXPECT_EQ(s.get_api_key(k.value().object.id).value(), k.value().object);

  ApiKey expired = k.value().object;
  expired.expires_at = 1;  // 1970
  EXPECT_EQ(s.update_api_key(expired).value().expires_at, 1);
  EXPECT_FALSE(s.authenticate_api_key(secret).value());
  expired.expires_at.reset();
  ASSERT_TRUE(s.update_api_key(expired));
  EXPECT_TRUE(s.authenticate_api_key(secret).value());

  EXPECT_TRUE(s.revoke_api_key(expired.id).value());
  EXPECT_FALSE(s.revoke_api_key(expired.id).value());  // once
  EXPECT_FALSE(s.authenticate_api_key(secret).value());
  EXPECT_TRUE(s.get_api_key(expired.id).value()->revoked_at.has_value());
  EXPECT_EQ(s.list_api_keys(u.id).value().size(), 1u);
  EXPECT_TRUE(s.remove_api_key(expired.id).value());
  EXPECT_TRUE(s.list_api_keys(u.id).value().empty());
  EXPECT_FALSE(s.create_api_key({.user_id = 999, .name = "x"}));  // foreign key
}

TYPED_TEST(StoreTest, TunnelsCrudAndSnapshot) {
  auto& s = *this->store_;
  Account a = this->account("acme");
  auto agent = s.create_agent({.account_id = a.id, .name = "laptop"}).value().object;
  const auto before = s.snapshot()->generation;

  Tunnel t = this->http(a.id, "App");
  t.bandwidth = 1'000'000;
  t.proxy_protocol = true;
  t.agent_id = agent.id;
  t.local = "127.0.0.1:3000";
  auto created = s.create_tunnel(t);
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(created.value().name, "app");  // lower case
  EXPECT_EQ(s.get_tunnel(created.value().id).value(), created.value());

  Tunnel tcp;
  tcp.account_id = a.id;
  tcp.type = TunnelType::kTcp;
  tcp.port = 15432;
  ASSERT_TRUE(s.create_tunnel(tcp));
  Tunnel dom;
  dom.account_id = a.id;
  dom.domain = "*.Example.org";
  ASSERT_TRUE(s.create_tunnel(dom));
  EXPECT_EQ(s.list_tunnels(a.id).value().size(), 3u);
  EXPECT_EQ(s.list_tunnels(std::nullopt).value().size(), 3u);

  auto snap = s.snapshot();
  EXPECT_GT(snap->generation, before);
  ASSERT_TRUE(snap->by_name.contains("app"));
  EXPECT_EQ(snap->by_name.at("app").account, "acme");
  EXPECT_EQ(snap->by_name.at("app").local, "127.0.0.1:3000");
  EXPECT_TRUE(snap->by_name.at("app").proxy_protocol);
  EXPECT_TRUE(snap->by_port.contains({TunnelType::kTcp, 15432}));
  EXPECT_TRUE(snap->by_domain.contains("*.example.org"));

  Tunnel moved = created.value();
  moved.name = "web";
  moved.local = "127.0.0.1:4000";
  auto updated = s.update_tunnel(moved);
  ASSERT_TRUE(updated) << updated.error().message;
  EXPECT_EQ(updated.value().name, "web");
  EXPECT_FALSE(s.snapshot()->by_name.contains("app"));
  EXPECT_EQ(snap->by_name.at("app").local, "127.0.0.1:3000");  // the old snapshot is unchanged

  // Removing the agent unassigns its tunnels.
  ASSERT_TRUE(s.remove_agent(agent.id).value());
  EXPECT_FALSE(s.get_tunnel(moved.id).value()->agent_id);
  EXPECT_TRUE(s.remove_tunnel(moved.id).value());
  EXPECT_FALSE(s.remove_tunnel(moved.id).value());
  EXPECT_FALSE(s.snapshot()->by_name.contains("web"));
}

// Lists page by key (id > cursor, in id order, LIMIT) in the database, filters included.
TYPED_TEST(StoreTest, TunnelsAndAgentsPageByKeyInTheDatabase) {
  auto& s = *this->store_;
  const Id acme = this->account("acme").id;
  const Id other = this->account("other").id;
  const Id laptop = s.create_agent({.account_id = acme, .name = "laptop"}).value().object.id;
  const Id server = s.create_agent({.account_id = other, .name = "server"}).value().object.id;
  std::vector<Id> ids;
  for (int i = 0; i < 5; ++i) {
    Tunnel t = this->http(i % 2 == 0 ? acme : other, "t" + std::to_string(i));
    if (i == 2) t.agent_id = laptop;
    ids.push_back(s.create_tunnel(t).value().id);
  }
  Tunnel tcp;
  tcp.account_id = acme;
  tcp.type = TunnelType::kTcp;
  tcp.port = 15432;
  ids.push_back(s.create_tunnel(tcp).value().id);

  const auto page_ids = [&](const TunnelQuery& q) {
    std::vector<Id> out;
    const auto rows = s.find_tunnels(q);
    for (const auto& t : rows.value()) out.push_back(t.id);
    return out;
  };
  EXPECT_EQ(page_ids({}), ids);
  EXPECT_EQ(page_ids({.limit = 2}), (std::vector<Id>{ids[0], ids[1]}));
  EXPECT_EQ(page_ids({.after = ids[1], .limit = 2}), (std::vector<Id>{ids[2], ids[3]}));
  EXPECT_EQ(page_ids({.after = ids[5], .limit = 2}), std::vector<Id>{});
  EXPECT_EQ(page_ids({.account_id = acme}), (std::vector<Id>{ids[0], ids[2], ids[4], ids[5]}));
  EXPECT_EQ(page_ids({.account_id = acme, .after = ids[2], .limit = 1}), std::vector<Id>{ids[4]});
  EXPECT_EQ(page_ids({.type = TunnelType::kTcp}), std::vector<Id>{ids[5]});
  EXPECT_EQ(page_ids({.agent_id = laptop}), std::vector<Id>{ids[2]});

  const auto agent_ids = [&](const AgentQuery& q) {
    std::vector<Id> out;
    const auto rows = s.find_agents(q);
    for (const auto& a : rows.value()) out.push_back(a.id);
    return out;
  };
  EXPECT_EQ(agent_ids({}), (std::vector<Id>{laptop, server}));
  EXPECT_EQ(agent_ids({.limit = 1}), std::vector<Id>{laptop});
  EXPECT_EQ(agent_ids({.after = laptop}), std::vector<Id>{server});
  EXPECT_EQ(agent_ids({.account_id = other}), std::vector<Id>{server});
}

TYPED_TEST(StoreTest, TunnelsRefuseBadValues) {
  auto& s = *this->store_;
  Account a = this->account("acme");
  Account b = this->account("other");
  auto other_agent = s.create_agent({.account_id = b.id, .name = "x"}).value().object;
  const auto refused = [&](Tunnel t, std::string_view words) {
    auto r = s.create_tunnel(t);
    ASSERT_FALSE(r) << words;
    EXPECT_NE(r.error().message.find(words), std::string::npos) << r.error().message;
  };
  refused(this->http(a.id, "bad_name"), "tunnel.name \"bad_name\"");
  refused(this->http(a.id, ""), "a name or a domain");
  Tunnel both = this->http(a.id, "app");
  both.domain = "example.org";
  refused(both, "a name or a domain");
  Tunnel dom = this->http(a.id, "");
  dom.domain = "localhost";
  refused(dom, "tunnel.domain \"localhost\"");
  Tunnel port;
  port.account_id = a.id;
  port.type = TunnelType::kUdp;
  refused(port, "tunnel.port");
  Tunnel local = this->http(a.id, "app");
  local.local = "127.0.0.1:1";
  refused(local, "tunnel.local");
  Tunnel foreign = this->http(a.id, "app");
  foreign.agent_id = other_agent.id;
  refused(foreign, "belongs to another account");
  Tunnel no_account = this->http(999, "app");
  refused(no_account, "name \"app\"");
  EXPECT_TRUE(s.list_tunnels(std::nullopt).value().empty());
}

// The overlap rules of check-config's ownership (config.cpp).
TYPED_TEST(StoreTest, ANameOrPortBelongsToOneAccount) {
  auto& s = *this->store_;
  Account a = this->account("acme");
  Account b = this->account("other");
  ASSERT_TRUE(s.create_tunnel(this->http(a.id, "app")));
  ASSERT_TRUE(s.create_tunnel(this->http(a.id, "dev-*")));
  auto taken = s.create_tunnel(this->http(b.id, "APP"));
  ASSERT_FALSE(taken);
  EXPECT_NE(taken.error().message.find("name \"app\" is taken by tunnel"), std::string::npos)
      << taken.error().message;
  auto glob = s.create_tunnel(this->http(b.id, "dev-x"));
  ASSERT_FALSE(glob);
  EXPECT_NE(glob.error().message.find("overlaps tunnel"), std::string::npos);
  EXPECT_FALSE(s.create_tunnel(this->http(b.id, "dev*")));
  EXPECT_TRUE(s.create_tunnel(this->http(a.id, "dev-y")));   // the same account may
  EXPECT_TRUE(s.create_tunnel(this->http(b.id, "devops")));  // "dev-*" does not cover it

  Tunnel d = this->http(a.id, "");
  d.domain = "*.example.org";
  ASSERT_TRUE(s.create_tunnel(d));
  Tunnel under = this->http(b.id, "");
  under.domain = "shop.example.org";
  EXPECT_FALSE(s.create_tunnel(under));
  under.domain = "example.org";  // the apex is not under "*.example.org"
  EXPECT_TRUE(s.create_tunnel(under));
  Tunnel same = this->http(b.id, "");
  same.domain = "*.example.org";
  EXPECT_FALSE(s.create_tunnel(same));

  Tunnel tcp;
  tcp.account_id = a.id;
  tcp.type = TunnelType::kTcp;
  tcp.port = 2222;
  ASSERT_TRUE(s.create_tunnel(tcp));
  tcp.account_id = b.id;
  auto port = s.create_tunnel(tcp);
  ASSERT_FALSE(port);
  EXPECT_NE(port.error().message.find("tcp port 2222 is taken"), std::string::npos);
  tcp.type = TunnelType::kUdp;  // udp 2222 is another resource
  EXPECT_TRUE(s.create_tunnel(tcp));

  // An update is checked like a create.
  auto devops = s.list_tunnels(b.id).value();
  Tunnel rename = devops.at(0);
  rename.name = "app";
  EXPECT_FALSE(s.update_tunnel(rename));
  rename.account_id = a.id;
  EXPECT_FALSE(s.update_tunnel(rename));  // account_id cannot change
}

TYPED_TEST(StoreTest, RemovingAnAccountRemovesWhatItOwns) {
  auto& s = *this->store_;
  Account a = this->account("acme");
  auto u = s.create_user({.account_id = a.id, .name = "ann"}).value();
  ASSERT_TRUE(s.create_api_key({.user_id = u.id, .name = "k"}));
  ASSERT_TRUE(s.create_agent({.account_id = a.id, .name = "laptop"}));
  ASSERT_TRUE(s.create_tunnel(this->http(a.id, "app")));
  ASSERT_TRUE(s.set_quota({.account_id = a.id, .max_tunnels = 5}));
  ASSERT_TRUE(s.add_usage({{.account_id = a.id, .hour = 10, .requests = 1}}));
  ASSERT_TRUE(s.remove_account(a.id).value());
  EXPECT_FALSE(s.get_user(u.id).value());
  EXPECT_TRUE(s.list_api_keys(u.id).value().empty());
  EXPECT_TRUE(s.list_tunnels(std::nullopt).value().empty());
  EXPECT_TRUE(s.list_usage(a.id, 0, 100).value().empty());
  EXPECT_EQ(s.get_quota(a.id).value().max_tunnels, 0u);
  EXPECT_TRUE(s.snapshot()->by_name.empty());
  EXPECT_TRUE(s.snapshot()->agents_by_hash.empty());
}

TYPED_TEST(StoreTest, QuotasUsageAndAudit) {
  auto& s = *this->store_;
  Account a = this->account("acme");
  EXPECT_EQ(s.get_quota(a.id).value(), Quota{.account_id = a.id});
  Quota q{.account_id = a.id,
          .max_agents = 3,
          .max_tunnels = 10,
          .max_connections = 100,
          .max_requests_per_second = 50,
          .bandwidth = 1 << 20,
          .bytes_per_month = 1ull << 40};
  EXPECT_EQ(s.set_quota(q).value(), q);
  q.max_agents = 4;
  EXPECT_EQ(s.set_quota(q).value(), q);
  EXPECT_EQ(s.get_quota(a.id).value(), q);
  EXPECT_FALSE(s.set_quota({.account_id = 999}));

  ASSERT_TRUE(s.add_usage({{.account_id = a.id,
                            .tunnel_id = 1,
                            .hour = 100,
                            .requests = 2,
                            .bytes_in = 10,
                            .bytes_out = 20,
                            .errors = 1},
                           {.account_id = a.id, .hour = 100, .requests = 2}}));
  ASSERT_TRUE(s.add_usage({{.account_id = a.id,
                            .tunnel_id = 1,
                            .hour = 100,
                            .requests = 3,
                            .bytes_in = 5,
                            .bytes_out = 5},
                           {.account_id = a.id, .tunnel_id = 1, .hour = 101, .requests = 1}}));
  auto usage = s.list_usage(a.id, 100, 102).value();
  ASSERT_EQ(usage.size(), 3u);
  EXPECT_EQ(usage[0], (Usage{.account_id = a.id, .hour = 100, .requests = 2}));
  EXPECT_EQ(usage[1], (Usage{.account_id = a.id,
                             .tunnel_id = 1,
                             .hour = 100,
                             .requests = 5,
                             .bytes_in = 15,
                             .bytes_out = 25,
                             .errors = 1}));
  EXPECT_EQ(s.list_usage(a.id, 101, 102).value().size(), 1u);
  // A batch with a bad sample changes nothing.
  EXPECT_FALSE(s.add_usage({{.account_id = a.id, .hour = 100, .requests = 1},
                            {.account_id = 999, .hour = 100, .requests = 1}}));
  EXPECT_EQ(s.list_usage(a.id, 100, 101).value()[0].requests, 2u);
  EXPECT_EQ(s.prune_usage(101).value(), 2u);
  EXPECT_EQ(s.list_usage(a.id, 0, 1000).value().size(), 1u);

  for (int i = 0; i < 3; ++i) {
    auto e = s.append_audit({.at = 1000 + i,
                             .actor = "user:1",
                             .action = "tunnel.create",
                             .object = "tunnel:" + std::to_string(i),
                             .source = "127.0.0.1",
                             .after = R"({"name":"app"})"});
    ASSERT_TRUE(e) << e.error().message;
  }
  auto log = s.list_audit(2).value();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].object, "tunnel:2");
  EXPECT_EQ(log[0].after, R"({"name":"app"})");
  auto older = s.list_audit(10, log[1].id).value();
  ASSERT_EQ(older.size(), 1u);
  EXPECT_EQ(older[0].object, "tunnel:0");
  EXPECT_EQ(older[0].at, 1000);
}

TYPED_TEST(StoreTest, KeepsTheRegistrysOwnership) {
  auto& s = *this->store_;
  EXPECT_TRUE(s.load_ownership("core-a").value().empty());
  std::vector<OwnershipEntry> owned = {{"app.localhost", "alice", "", true, 0},
                                       {"tcp:15432", "bob", "agent-1", false, 1765100000}};
  ASSERT_TRUE(s.save_ownership("core-a", owned));
  EXPECT_EQ(s.load_ownership("core-a").value(), owned);
  // Another core sharing the store keeps its own: neither overwrites the other's.
  const std::vector<OwnershipEntry> theirs = {{"app.localhost", "carol", "agent-9", true, 0}};
  ASSERT_TRUE(s.save_ownership("core-b", theirs));
  EXPECT_EQ(s.load_ownership("core-b").value(), theirs);
  EXPECT_EQ(s.load_ownership("core-a").value(), owned);
  owned.pop_back();
  ASSERT_TRUE(s.save_ownership("core-a", owned));
  EXPECT_EQ(s.load_ownership("core-a").value(), owned);
  EXPECT_EQ(s.load_ownership("core-b").value(), theirs);
}

TYPED_TEST(StoreTest, SurvivesAReopen) {
  Account a = this->account("acme");
  ASSERT_TRUE(this->store_->create_tunnel(this->http(a.id, "app")));
  auto token = this->store_->create_agent({.account_id = a.id, .name = "laptop"}).value().secret;
  this->store_.reset();
  this->store_ = this->open();
  ASSERT_TRUE(this->store_);
  EXPECT_TRUE(this->store_->snapshot()->by_name.contains("app"));
  EXPECT_TRUE(this->store_->find_agent_by_credential(token).value());
}

// Every earlier version, with data in it, migrates to the latest and keeps the data.
// Cores started together on one empty database: one migrates, the others wait for it (on
// PostgreSQL, an advisory lock; before it the losers failed on CREATE TABLE).
TYPED_TEST(StoreTest, CoresStartingAtOnceOnAnEmptyDatabaseAllOpenIt) {
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    this->store_.reset();
    this->backend_->reset();
    const auto options = this->backend_->options();
    constexpr int kCores = 4;
    std::vector<std::string> errors(kCores);
    std::vector<int> versions(kCores, -1);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    threads.reserve(kCores);
    for (int i = 0; i < kCores; ++i) {
      threads.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < kCores) std::this_thread::yield();
        auto opened = open_store(options);
        if (!opened) {
          errors[i] = opened.error().message;
          return;
        }
        auto version = opened.value()->schema_version();
        versions[i] = version ? version.value() : -1;
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kCores; ++i) {
      EXPECT_EQ(errors[i], "") << "core " << i;
      EXPECT_EQ(versions[i], Store::latest_schema_version()) << "core " << i;
    }
  }
}

// Two cores writing at once (two stores on one database, PostgreSQL SERIALIZABLE): a
// transaction refused as overlapping another is run again, so every write succeeds.
TYPED_TEST(StoreTest, TwoCoresWritingAtOnceBothSucceed) {
  auto second = this->open();
  ASSERT_TRUE(second);
  const Id acme = this->account("acme").id;
  constexpr int kEach = 15;
  std::vector<std::string> errors;
  std::mutex errors_mutex;
  const auto writer = [&](Store& s, const std::string& prefix) {
    for (int i = 0; i < kEach; ++i) {
      auto made = s.create_tunnel(this->http(acme, prefix + std::to_string(i)));
      if (!made) {
        const std::lock_guard lock(errors_mutex);
        errors.push_back(made.error().message);
      }
    }
  };
  std::thread a([&] { writer(*this->store_, "a"); });
  std::thread b([&] { writer(*second, "b"); });
  a.join();
  b.join();
  EXPECT_EQ(errors, std::vector<std::string>{});
  EXPECT_EQ(this->store_->list_tunnels(acme).value().size(), 2u * kEach);
}

TYPED_TEST(StoreTest, MigratesFromEveryEarlierVersion) {
  for (int from = 0; from < Store::latest_schema_version(); ++from) {
    SCOPED_TRACE("from version " + std::to_string(from));
    this->store_.reset();
    this->backend_->reset();
    auto old = this->open(from);
    ASSERT_TRUE(old);
    EXPECT_EQ(old->schema_version().value(), from);
    if (from >= 1) {
      ASSERT_TRUE(old->create_account({.name = "kept"}));
    }
    if (from >= 3) {  // saved before ownership was per core: every core's until one saves
      ASSERT_TRUE(this->backend_->raw_exec(
          "INSERT INTO registry_ownership (key, account) VALUES ('old.localhost', 'kept')"));
    }
    old.reset();
    auto now = this->open();
    ASSERT_TRUE(now);
    EXPECT_EQ(now->schema_version().value(), Store::latest_schema_version());
    if (from >= 1) {
      EXPECT_TRUE(now->find_account("kept").value());
    }
    if (from >= 3) {
      auto owned = now->load_ownership("any-core");
      ASSERT_TRUE(owned) << owned.error().message;
      ASSERT_EQ(owned.value().size(), 1u);
      EXPECT_EQ(owned.value()[0].key, "old.localhost");
    }
    EXPECT_TRUE(now->create_account({.name = "fresh"}));
    EXPECT_TRUE(now->check_integrity());
  }
}

TYPED_TEST(StoreTest, RefusesANewerSchema) {
  const int newer = Store::latest_schema_version() + 1;
  ASSERT_TRUE(this->backend_->raw_exec("INSERT INTO schema_version (version, applied_at) VALUES (" +
                                       std::to_string(newer) + ", 0)"));
  this->store_.reset();
  auto o = this->backend_->options();
  auto refused = open_store(o);
  ASSERT_FALSE(refused);
  const auto& m = refused.error().message;
  EXPECT_NE(m.find("version " + std::to_string(newer)), std::string::npos) << m;
  EXPECT_NE(m.find("this binary's " + std::to_string(newer - 1)), std::string::npos) << m;
  o.migrate_to = newer;
  EXPECT_FALSE(open_store(o));
}

}  // namespace
}  // namespace tunnel::core::store
