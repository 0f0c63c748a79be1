// The REST API without sockets: Api::handle on a real store, on every backend (SQLite always,
// PostgreSQL when installed; see store/test_backends.hpp).
#include "core/control/api/api.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/control/api/api_internal.hpp"
#include "core/control/auth.hpp"
#include "core/control/store/test_backends.hpp"

namespace tunnel::core::api {
namespace {

using nlohmann::json;
using store::Id;
using store::Role;

class RecordingHooks : public ControlHooks {
 public:
  void store_changed() override { ++changes; }
  std::vector<LiveSession> agent_sessions(store::Id id) override {
    if (id != connected_agent) return {};
    LiveSession s;
    s.session_id = "s1";
    s.name = "api-v2";
    s.group = "api";
    s.address = "203.0.113.7:51234";
    s.connected_at = 1000;
    s.version = "1.2.3";
    s.serving = {"app.example.com"};
    return {s};
  }
  std::uint64_t tunnel_sessions(store::Id id) override { return id == served_tunnel ? 2 : 0; }
  int changes = 0;
  Id connected_agent = 0;
  Id served_tunnel = 0;
};

struct Reply {
  int status = 0;
  json body;
  ApiResponse raw;
  std::string header(std::string_view name) const {
    for (const auto& [k, v] : raw.headers) {
      if (k == name) return v;
    }
    return {};
  }
};

template <typename B>
class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = B::unavailable(); !why.empty()) GTEST_SKIP() << why;
    backend_ = std::make_unique<B>();
    auto opened = store::open_store(backend_->options());
    ASSERT_TRUE(opened) << opened.error().message;
    store_ = std::move(opened).value();
    auto boot = bootstrap(*store_, 1'765'000'000);
    ASSERT_TRUE(boot && boot.value()) << (boot ? "exists" : boot.error().message);
    operator_key_ = boot.value()->secret;
    acme_ = account("acme");
    other_ = account("other");
    for (Role role : {Role::kOwner, Role::kAdmin, Role::kMember, Role::kViewer}) {
      keys_[role] = user_key(acme_, std::string(store::to_string(role)), role);
    }
    other_key_ = user_key(other_, "stranger", Role::kOwner);
    ApiOptions options;
    options.domain = "example.com";
    options.http_port = 8080;
    options.port_ranges = {{15000, 15999}};
    options.auth_limits.burst = 3;
    options.agent_server = "core.example.com:443";
    options.agent_fingerprint = "ab:cd";
    options.time = &time_;
    options.now = [] { return std::int64_t{1'765'000'000}; };
    api_ = std::make_unique<Api>(*store_, hooks_, options);
  }

  Id account(const std::string& name) {
    store::Account a;
    a.name = name;
    auto created = store_->create_account(a);
    EXPECT_TRUE(created) << created.error().message;
    return created ? created.value().id : 0;
  }

  std::string user_key(Id account, const std::string& name, Role role) {
    store::User u;
    u.account_id = account;
    u.name = name;
    auto user = store_->create_user(u);
    EXPECT_TRUE(user) << user.error().message;
    store::RoleBinding b;
    b.account_id = account;
    b.user_id = user.value().id;
    b.role = role;
    EXPECT_TRUE(store_->create_role_binding(b));
    store::ApiKey k;
    k.user_id = user.value().id;
    k.name = name;
    auto key = store_->create_api_key(k);
    EXPECT_TRUE(key);
    return key.value().secret;
  }

  Reply call(const std::string& method, const std::string& target, const std::string& body = "",
             const std::string& key = "", Headers extra = {}) {
    ApiRequest r;
    r.method = method;
    r.target = target;
    r.body = body;
    r.peer = peer_;
    const std::string& k = key.empty() ? keys_[Role::kOwner] : key;
    if (k != "-") r.headers.emplace_back("Authorization", "Bearer " + k);
    for (auto& h : extra) r.headers.push_back(h);
    Reply out;
    out.raw = api_->handle(r);
    out.status = out.raw.status;
    if (!out.raw.body.empty()) out.body = json::parse(out.raw.body, nullptr, false);
    return out;
  }

  Id make_tunnel(const std::string& name) {
    store::Tunnel t;
    t.account_id = acme_;
    t.name = name;
    auto created = store_->create_tunnel(t);
    EXPECT_TRUE(created) << created.error().message;
    return created ? created.value().id : 0;
  }

  Id make_agent(const std::string& name) {
    store::Agent a;
    a.account_id = acme_;
    a.name = name;
    auto created = store_->create_agent(a);
    EXPECT_TRUE(created) << created.error().message;
    return created ? created.value().object.id : 0;
  }

  std::size_t audit_count() { return store_->list_audit(100000).value().size(); }

  // The field names of a problem's errors.
  static std::vector<std::string> fields(const Reply& r) {
    std::vector<std::string> out;
    if (r.body.contains("errors")) {
      for (const auto& e : r.body["errors"]) out.push_back(e["field"].template get<std::string>());
    }
    return out;
  }

  std::unique_ptr<B> backend_;
  std::unique_ptr<store::Store> store_;
  RecordingHooks hooks_;
  SimulatedTimeSource time_;  // the failed-key throttle's clock
  std::unique_ptr<Api> api_;
  std::string operator_key_, other_key_;
  std::map<Role, std::string> keys_;
  Id acme_ = 0, other_ = 0;
  std::string peer_ = "192.0.2.10:40000";
};

TYPED_TEST_SUITE(ApiTest, store::Backends, store::BackendNames);

TYPED_TEST(ApiTest, CreatesGetsListsChangesAndDeletesATunnel) {
  auto created = this->call("POST", "/api/v1/tunnels", R"({"name": "app", "type": "http"})");
  ASSERT_EQ(created.status, 201) << created.raw.body;
  EXPECT_EQ(created.body["name"], "app");
  EXPECT_EQ(created.body["type"], "http");
  EXPECT_EQ(created.body["url"], "http://app.example.com:8080");
  EXPECT_EQ(created.body["account"], this->acme_);
  const Id id = created.body["id"];
  EXPECT_EQ(created.header("Location"), "/api/v1/tunnels/" + std::to_string(id));
  EXPECT_EQ(this->hooks_.changes, 1);
  auto audit = this->store_->list_audit(10).value();
  ASSERT_FALSE(audit.empty());
  EXPECT_EQ(audit[0].action, "tunnel.create");
  EXPECT_EQ(audit[0].object, "tunnel:" + std::to_string(id));
  EXPECT_EQ(audit[0].source, "192.0.2.10:40000");
  EXPECT_EQ(audit[0].actor.rfind("key:", 0), 0u);
  EXPECT_EQ(json::parse(audit[0].after)["name"], "app");

  this->hooks_.served_tunnel = id;
  auto got = this->call("GET", "/api/v1/tunnels/" + std::to_string(id));
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["live_sessions"], 2);
  const std::string etag = got.header("ETag");
  EXPECT_FALSE(etag.empty());

  auto list = this->call("GET", "/api/v1/tunnels");
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body["items"].size(), 1u);
  EXPECT_TRUE(list.body["next_cursor"].is_null());

  auto patched = this->call("PATCH", "/api/v1/tunnels/" + std::to_string(id),
                            R"({"name": "app2", "bandwidth": "1MiB/s"})", "", {{"If-Match", etag}});
  ASSERT_EQ(patched.status, 200) << patched.raw.body;
  EXPECT_EQ(patched.body["name"], "app2");
  EXPECT_EQ(patched.body["bandwidth"], 1024 * 1024);
  EXPECT_NE(patched.header("ETag"), etag);
  EXPECT_EQ(this->store_->get_tunnel(id).value()->name, "app2");
  // The old ETag is stale now: 412, nothing changed.
  auto stale = this->call("PATCH", "/api/v1/tunnels/" + std::to_string(id), R"({"name": "app3"})",
                          "", {{"If-Match", etag}});
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(this->store_->get_tunnel(id).value()->name, "app2");

  auto deleted = this->call("DELETE", "/api/v1/tunnels/" + std::to_string(id));
  EXPECT_EQ(deleted.status, 204);
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels/" + std::to_string(id)).status, 404);
  EXPECT_EQ(this->hooks_.changes, 3);
  EXPECT_EQ(this->store_->list_audit(1).value()[0].action, "tunnel.delete");
}

// Two cores on one store (two Api and Store objects on one database) create the same tunnel
// name at the same moment, 20 times over: one gets 201, the other 409 with a problem document
// of type conflict, whichever way it lost: the check before the insert, the UNIQUE constraint,
// or on PostgreSQL a serialization failure (the store gives those errors the kind conflict).
// Before errors had a kind, the API guessed from the text, and a lost serializable transaction
// ("could not serialize access") answered 500.
TYPED_TEST(ApiTest, TwoCreatesRacingForOneNameAnswer201And409) {
  auto second_store = store::open_store(this->backend_->options());
  ASSERT_TRUE(second_store) << second_store.error().message;
  RecordingHooks second_hooks;
  ApiOptions options;
  options.domain = "example.com";
  options.http_port = 8080;
  options.now = [] { return std::int64_t{1'765'000'000}; };
  Api second(*second_store.value(), second_hooks, options);
  const std::string key = this->keys_[Role::kOwner];
  const auto post = [&](Api& api, const std::string& name) {
    ApiRequest r;
    r.method = "POST";
    r.target = "/api/v1/tunnels";
    r.body = json{{"name", name}}.dump();
    r.peer = this->peer_;
    r.headers.emplace_back("Authorization", "Bearer " + key);
    return api.handle(r);
  };
  for (int round = 0; round < 20; ++round) {
    const std::string name = "race" + std::to_string(round);
    ApiResponse first;
    ApiResponse other;
    std::thread racer([&] { other = post(second, name); });
    first = post(*this->api_, name);
    racer.join();
    const bool first_won = first.status == 201;
    const ApiResponse& won = first_won ? first : other;
    const ApiResponse& lost = first_won ? other : first;
    ASSERT_EQ(won.status, 201) << first.body << " / " << other.body;
    ASSERT_EQ(lost.status, 409) << lost.body;
    const json problem = json::parse(lost.body, nullptr, false);
    EXPECT_EQ(problem["type"], "urn:tunnel:problem:conflict") << lost.body;
    EXPECT_EQ(problem["status"], 409) << lost.body;
    EXPECT_TRUE(problem.contains("detail")) << lost.body;
  }
}

TYPED_TEST(ApiTest, ReservesAPortWithinTheConfiguredRanges) {
  auto tcp = this->call("POST", "/api/v1/tunnels", R"({"type": "tcp", "port": 15432})");
  ASSERT_EQ(tcp.status, 201) << tcp.raw.body;
  EXPECT_EQ(tcp.body["port"], 15432);
  EXPECT_EQ(tcp.body["url"], "tcp://example.com:15432");
  EXPECT_TRUE(tcp.body["name"].is_null());
  auto taken = this->call("POST", "/api/v1/tunnels", R"({"type": "tcp", "port": 15432})");
  EXPECT_EQ(taken.status, 409) << taken.raw.body;
  auto outside = this->call("POST", "/api/v1/tunnels", R"({"type": "udp", "port": 80})");
  EXPECT_EQ(outside.status, 422);
  EXPECT_EQ(this->fields(outside), std::vector<std::string>{"port"});
  EXPECT_NE(outside.body["detail"].template get<std::string>().find("15000-15999"),
            std::string::npos);
  auto no_port = this->call("POST", "/api/v1/tunnels", R"({"type": "tcp"})");
  EXPECT_EQ(no_port.status, 422);
  EXPECT_EQ(this->fields(no_port), std::vector<std::string>{"port"});
}

TYPED_TEST(ApiTest, RegistersAnAgentAndShowsItsTokenOnce) {
  auto created = this->call("POST", "/api/v1/agents", R"({"name": "laptop"})");
  ASSERT_EQ(created.status, 201) << created.raw.body;
  const Id id = created.body["id"];
  const std::string token = created.body["token"];
  EXPECT_EQ(token.rfind("tna_", 0), 0u);
  // Where to dial and which certificate to expect, so that nobody guesses the port.
  EXPECT_EQ(created.body["server"], "core.example.com:443");
  EXPECT_EQ(created.body["fingerprint"], "ab:cd");
  auto found = this->store_->find_agent_by_credential(token);
  ASSERT_TRUE(found && found.value());
  EXPECT_EQ(found.value()->id, id);
  // The audit and every later answer leave the token out.
  EXPECT_EQ(this->store_->list_audit(1).value()[0].after.find(token), std::string::npos);
  auto got = this->call("GET", "/api/v1/agents/" + std::to_string(id));
  ASSERT_EQ(got.status, 200);
  EXPECT_FALSE(got.body.contains("token"));
  EXPECT_EQ(got.body["connected"], false);
  this->hooks_.connected_agent = id;
  got = this->call("GET", "/api/v1/agents/" + std::to_string(id));
  EXPECT_EQ(got.body["connected"], true);
  ASSERT_EQ(got.body["sessions"].size(), 1u);
  EXPECT_EQ(got.body["sessions"][0]["address"], "203.0.113.7:51234");
  EXPECT_EQ(got.body["sessions"][0]["serving"][0], "app.example.com");
  EXPECT_EQ(got.body["sessions"][0]["name"], "api-v2");
  EXPECT_EQ(got.body["sessions"][0]["group"], "api");
  auto list = this->call("GET", "/api/v1/agents");
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.body["items"].size(), 1u);
  EXPECT_EQ(this->call("DELETE", "/api/v1/agents/" + std::to_string(id)).status, 204);
  EXPECT_FALSE(this->store_->find_agent_by_credential(token).value());
  EXPECT_EQ(this->call("GET", "/api/v1/agents/" + std::to_string(id)).status, 404);
}

TYPED_TEST(ApiTest, AssignsATunnelToAnAgentOfTheSameAccount) {
  const Id agent = this->make_agent("laptop");
  auto ok = this->call(
      "POST", "/api/v1/tunnels",
      R"({"name": "app", "agent": )" + std::to_string(agent) + R"(, "local": "127.0.0.1:3000"})");
  ASSERT_EQ(ok.status, 201) << ok.raw.body;
  EXPECT_EQ(ok.body["agent"], agent);
  EXPECT_EQ(ok.body["local"], "127.0.0.1:3000");
  // Another account's agent is reported like one that does not exist.
  store::Agent theirs;
  theirs.account_id = this->other_;
  theirs.name = "theirs";
  const Id their_agent = this->store_->create_agent(theirs).value().object.id;
  auto foreign = this->call("POST", "/api/v1/tunnels",
                            R"({"name": "b", "agent": )" + std::to_string(their_agent) + "}");
  EXPECT_EQ(foreign.status, 422);
  EXPECT_EQ(this->fields(foreign), std::vector<std::string>{"agent"});
  auto missing = this->call("POST", "/api/v1/tunnels", R"({"name": "c", "agent": 999999})");
  EXPECT_EQ(missing.status, 422);
  EXPECT_EQ(foreign.body["detail"].template get<std::string>().find(std::to_string(this->other_)),
            std::string::npos);
  auto no_agent = this->call("POST", "/api/v1/tunnels", R"({"name": "d", "local": "x:1"})");
  EXPECT_EQ(this->fields(no_agent), std::vector<std::string>{"local"});
  auto bad_local =
      this->call("POST", "/api/v1/tunnels",
                 R"({"name": "e", "agent": )" + std::to_string(agent) + R"(, "local": "3000"})");
  EXPECT_EQ(this->fields(bad_local), std::vector<std::string>{"local"});
  // Unassigned with null.
  auto cleared =
      this->call("PATCH", "/api/v1/tunnels/" + std::to_string(ok.body["id"].template get<Id>()),
                 R"({"agent": null})");
  ASSERT_EQ(cleared.status, 200) << cleared.raw.body;
  EXPECT_TRUE(cleared.body["agent"].is_null());
  EXPECT_TRUE(cleared.body["local"].is_null());
}

TYPED_TEST(ApiTest, BadInputIsAClear4xxAndChangesNothing) {
  const Id id = this->make_tunnel("keep");
  const std::size_t audits = this->audit_count();
  struct Case {
    std::string method, target, body;
    int status;
    std::vector<std::string> fields;
  };
  const std::string one = "/api/v1/tunnels/" + std::to_string(id);
  const std::string acme = "/api/v1/accounts/" + std::to_string(this->acme_);
  const std::vector<Case> cases = {
      {"POST", "/api/v1/tunnels", R"({"name": "app")", 400, {}},
      {"POST", "/api/v1/tunnels", "", 400, {}},
      {"POST", "/api/v1/tunnels", R"(["app"])", 400, {}},
      {"POST", "/api/v1/tunnels", R"({"name": "a", "name": "b"})", 400, {"name"}},
      {"POST", "/api/v1/tunnels", R"({"name": "app", "colour": "red"})", 422, {"colour"}},
      {"POST", "/api/v1/tunnels", R"({"name": 5})", 422, {"name"}},
      {"POST", "/api/v1/tunnels", R"({"name": "a b"})", 422, {"name"}},
      {"POST", "/api/v1/tunnels", R"({"name": "app", "type": "ftp"})", 422, {"type"}},
      {"POST", "/api/v1/tunnels", R"({"type": "tcp", "port": "15432"})", 422, {"port"}},
      {"POST", "/api/v1/tunnels", R"({"type": "tcp", "port": 70000})", 422, {"port"}},
      {"POST", "/api/v1/tunnels", R"({"type": "tcp", "port": 15001.5})", 422, {"port"}},
      {"POST",
       "/api/v1/tunnels",
       R"({"name": "app", "proxy_protocol": "yes"})",
       422,
       {"proxy_protocol"}},
      {"POST", "/api/v1/tunnels", R"({"name": "app", "bandwidth": -1})", 422, {"bandwidth"}},
      {"POST", "/api/v1/tunnels", R"({"name": "app", "account": "acme"})", 422, {"account"}},
      {"POST", "/api/v1/tunnels", R"({"name": "keep"})", 409, {}},
      {"POST", "/api/v1/tunnels", R"({"colour": 1, "size": 2})", 422, {"colour", "size", "name"}},
      {"PATCH", one, R"({"type": "tcp"})", 422, {"type"}},
      {"PATCH", one, R"({"port": 15001})", 422, {"port"}},
      {"PATCH", one, "{", 400, {}},
      {"GET", "/api/v1/tunnels/abc", "", 400, {"id"}},
      {"GET", "/api/v1/tunnels/-1", "", 400, {"id"}},
      {"GET", "/api/v1/tunnels/0", "", 400, {"id"}},
      {"DELETE", "/api/v1/tunnels/99999999999999999999", "", 400, {"id"}},
      {"GET", "/api/v1/tunnels?limit=0", "", 400, {"limit"}},
      {"GET", "/api/v1/tunnels?cursor=x", "", 400, {"cursor"}},
      {"GET", "/api/v1/tunnels?type=ftp", "", 400, {"type"}},
      {"GET", "/api/v1/nothing", "", 404, {}},
      {"PUT", "/api/v1/tunnels", "{}", 405, {}},
      {"POST", "/api/v1/agents", R"({})", 422, {"name"}},
      {"POST", "/api/v1/agents", R"({"name": "bad name!"})", 422, {"name"}},
      {"GET", acme + "/usage?from=yesterday", "", 400, {"from"}},
      {"GET", acme + "/usage?by=week", "", 400, {"by"}},
      {"POST", acme + "/quota", R"({"max_agents": "ten"})", 422, {"max_agents"}},
      {"POST", acme + "/quota", R"({"max_agents": -1, "bytes": 1})", 422, {"bytes", "max_agents"}},
  };
  for (const auto& c : cases) {
    const std::string& key = c.target.find("quota") != std::string::npos ? this->operator_key_ : "";
    auto r = this->call(c.method, c.target, c.body, key);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.target << " " << c.body << ": "
                                  << r.raw.body;
    EXPECT_EQ(this->fields(r), c.fields)
        << c.method << " " << c.target << " " << c.body << ": " << r.raw.body;
    if (r.status >= 400) {
      EXPECT_EQ(r.header("Content-Type"), "application/problem+json") << r.raw.body;
      EXPECT_EQ(r.body["status"], r.status);
      EXPECT_FALSE(r.body["detail"].template get<std::string>().empty());
      EXPECT_EQ(r.body["type"].template get<std::string>().rfind("urn:tunnel:problem:", 0), 0u);
    }
  }
  EXPECT_EQ(this->store_->list_tunnels(std::nullopt).value().size(), 1u);
  EXPECT_EQ(this->store_->get_tunnel(id).value()->name, "keep");
  EXPECT_TRUE(this->store_->list_agents(this->acme_).value().empty());
  EXPECT_EQ(this->audit_count(), audits);
  EXPECT_EQ(this->hooks_.changes, 0);
}

TYPED_TEST(ApiTest, AHugeBodyIs413) {
  const std::string body = R"({"name": ")" + std::string(2 * 1024 * 1024, 'a') + "\"}";
  auto r = this->call("POST", "/api/v1/tunnels", body);
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(this->store_->list_tunnels(std::nullopt).value().empty());
}

TYPED_TEST(ApiTest, WithoutAValidKeyIs401AndFailuresAreRateLimited) {
  auto none = this->call("GET", "/api/v1/tunnels", "", "-");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.header("WWW-Authenticate").rfind("Bearer", 0), 0u);
  auto wrong = this->call("GET", "/api/v1/tunnels", "", "tnk_" + std::string(64, '0'));
  EXPECT_EQ(wrong.status, 401);
  // A revoked key is refused like an unknown one.
  store::ApiKey k;
  k.user_id = this->store_->list_users(this->acme_).value().at(0).id;
  k.name = "gone";
  auto revoked = this->store_->create_api_key(k).value();
  ASSERT_TRUE(this->store_->revoke_api_key(revoked.object.id).value());
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels", "", revoked.secret).status, 401);
  // Three failures (the burst): the address waits, even with a valid key.
  auto throttled = this->call("GET", "/api/v1/tunnels");
  EXPECT_EQ(throttled.status, 429);
  EXPECT_FALSE(throttled.header("Retry-After").empty());
  EXPECT_GE(std::stoi(throttled.header("Retry-After")), 1);
  // One more attempt is allowed after a refill (6 s) on the core's clock, not before.
  this->time_.advance(std::chrono::milliseconds(5999));
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels").status, 429);
  this->time_.advance(std::chrono::milliseconds(1));
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels").status, 200);
  // Another address is not affected.
  this->peer_ = "192.0.2.11:40000";
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels").status, 200);
}

TYPED_TEST(ApiTest, AnotherAccountsObjectsAre404) {
  const Id tunnel = this->make_tunnel("mine");
  const Id agent = this->make_agent("mine");
  const std::string& k = this->other_key_;
  for (auto [method, target] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/api/v1/tunnels/" + std::to_string(tunnel)},
           {"PATCH", "/api/v1/tunnels/" + std::to_string(tunnel)},
           {"DELETE", "/api/v1/tunnels/" + std::to_string(tunnel)},
           {"GET", "/api/v1/agents/" + std::to_string(agent)},
           {"DELETE", "/api/v1/agents/" + std::to_string(agent)},
           {"GET", "/api/v1/accounts/" + std::to_string(this->acme_) + "/usage"},
           {"GET", "/api/v1/accounts/" + std::to_string(this->acme_) + "/quota"},
           {"POST", "/api/v1/accounts/" + std::to_string(this->acme_) + "/quota"},
           {"GET", "/api/v1/tunnels?account=" + std::to_string(this->acme_)},
           {"GET", "/api/v1/agents?account=" + std::to_string(this->acme_)},
       }) {
    auto r = this->call(method, target, R"({"name": "x"})", k);
    EXPECT_EQ(r.status, 404) << method << " " << target << ": " << r.raw.body;
  }
  // Their lists do not show it either.
  EXPECT_TRUE(this->call("GET", "/api/v1/tunnels", "", k).body["items"].empty());
  EXPECT_TRUE(this->call("GET", "/api/v1/agents", "", k).body["items"].empty());
  EXPECT_TRUE(this->store_->get_tunnel(tunnel).value());
}

// Every route under every role of the account, another account's key and the operator's.
TYPED_TEST(ApiTest, RoleMatrix) {
  const std::string acme = std::to_string(this->acme_);
  struct Route {
    std::string name;
    // Makes what the request needs and sends it with `key`.
    std::function<Reply(const std::string& key, int n)> send;
    // owner, admin, member, viewer, another account, operator
    std::array<int, 6> expect;
  };
  auto* self = this;
  const std::vector<Route> routes = {
      {"POST /tunnels",
       [&](const std::string& key, int n) {
         return self->call("POST", "/api/v1/tunnels",
                           R"({"name": "t)" + std::to_string(n) + R"(", "account": )" + acme + "}",
                           key);
       },
       {201, 201, 201, 403, 422, 201}},
      {"GET /tunnels",
       [&](const std::string& key, int) {
         return self->call("GET", "/api/v1/tunnels?account=" + acme, "", key);
       },
       {200, 200, 200, 200, 404, 200}},
      {"GET /tunnels/{id}",
       [&](const std::string& key, int n) {
         const Id id = self->make_tunnel("g" + std::to_string(n));
         return self->call("GET", "/api/v1/tunnels/" + std::to_string(id), "", key);
       },
       {200, 200, 200, 200, 404, 200}},
      {"PATCH /tunnels/{id}",
       [&](const std::string& key, int n) {
         const Id id = self->make_tunnel("p" + std::to_string(n));
         return self->call("PATCH", "/api/v1/tunnels/" + std::to_string(id),
                           R"({"proxy_protocol": true})", key);
       },
       {200, 200, 403, 403, 404, 200}},
      {"DELETE /tunnels/{id}",
       [&](const std::string& key, int n) {
         const Id id = self->make_tunnel("d" + std::to_string(n));
         return self->call("DELETE", "/api/v1/tunnels/" + std::to_string(id), "", key);
       },
       {204, 204, 403, 403, 404, 204}},
      {"POST /agents",
       [&](const std::string& key, int n) {
         return self->call("POST", "/api/v1/agents",
                           R"({"name": "a)" + std::to_string(n) + R"(", "account": )" + acme + "}",
                           key);
       },
       {201, 201, 201, 403, 422, 201}},
      {"GET /agents",
       [&](const std::string& key, int) {
         return self->call("GET", "/api/v1/agents?account=" + acme, "", key);
       },
       {200, 200, 200, 200, 404, 200}},
      {"GET /agents/{id}",
       [&](const std::string& key, int n) {
         const Id id = self->make_agent("ga" + std::to_string(n));
         return self->call("GET", "/api/v1/agents/" + std::to_string(id), "", key);
       },
       {200, 200, 200, 200, 404, 200}},
      {"DELETE /agents/{id}",
       [&](const std::string& key, int n) {
         const Id id = self->make_agent("da" + std::to_string(n));
         return self->call("DELETE", "/api/v1/agents/" + std::to_string(id), "", key);
       },
       {204, 204, 403, 403, 404, 204}},
      {"GET /accounts/{id}/usage",
       [&](const std::string& key, int) {
         return self->call("GET", "/api/v1/accounts/" + acme + "/usage", "", key);
       },
       {200, 200, 200, 200, 404, 200}},
      {"GET /accounts/{id}/quota",
       [&](const std::string& key, int) {
         return self->call("GET", "/api/v1/accounts/" + acme + "/quota", "", key);
       },
       {200, 200, 200, 200, 404, 200}},
      {"POST /accounts/{id}/quota",
       [&](const std::string& key, int) {
         return self->call("POST", "/api/v1/accounts/" + acme + "/quota", R"({"max_agents": 50})",
                           key);
       },
       {403, 403, 403, 403, 404, 200}},
  };
  const std::array<std::string, 6> keys = {this->keys_[Role::kOwner],  this->keys_[Role::kAdmin],
                                           this->keys_[Role::kMember], this->keys_[Role::kViewer],
                                           this->other_key_,           this->operator_key_};
  const std::array<const char*, 6> who = {"owner",  "admin",           "member",
                                          "viewer", "another account", "operator"};
  int n = 0;
  for (const auto& route : routes) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const int changes = this->hooks_.changes;
      auto r = route.send(keys[i], ++n);
      EXPECT_EQ(r.status, route.expect[i]) << route.name << " as " << who[i] << ": " << r.raw.body;
      // A refusal changes nothing.
      if (r.status >= 400) {
        EXPECT_EQ(this->hooks_.changes, changes) << route.name;
      }
    }
  }
}

// The member role manages the tunnels and agents its own user created, not its colleagues'
// With the configuration's accounts, a tenant cannot reserve through the API a name the
// configuration file gives another account (nor a configured account a name outside its own).
TYPED_TEST(ApiTest, ANameTheConfigurationGivesAnotherAccountIsRefused) {
  ApiOptions options;
  options.domain = "example.com";
  options.time = &this->time_;
  options.now = [] { return std::int64_t{1'765'000'000}; };
  options.reservation_check = [](std::string_view account, std::string_view name, bool domain) {
    Account bob;
    bob.name = "bob";
    bob.subdomains = {"bob-*"};
    return reservation_refusal({bob}, account, name, domain);
  };
  this->api_ = std::make_unique<Api>(*this->store_, this->hooks_, options);
  const int changes = this->hooks_.changes;
  auto refused = this->call("POST", "/api/v1/tunnels", R"({"name": "bob-shop"})");
  EXPECT_EQ(refused.status, 422) << refused.raw.body;
  EXPECT_EQ(this->fields(refused), std::vector<std::string>{"name"});
  EXPECT_NE(refused.body["detail"].template get<std::string>().find("given to account \"bob\""),
            std::string::npos)
      << refused.raw.body;
  EXPECT_EQ(this->hooks_.changes, changes);
  auto made = this->call("POST", "/api/v1/tunnels", R"({"name": "acme-shop"})");
  ASSERT_EQ(made.status, 201) << made.raw.body;
  // A rename onto bob's names is refused too.
  EXPECT_EQ(this->call("PATCH", "/api/v1/tunnels/" + made.body["id"].dump(), R"({"name": "bob-x"})")
                .status,
            422);
}

// (made in the store without a creator, like the role matrix's, they are an admin's to change).
TYPED_TEST(ApiTest, AMemberManagesOnlyWhatItsUserCreated) {
  const std::string member = this->keys_[Role::kMember];
  const std::string colleague = this->user_key(this->acme_, "colleague", Role::kMember);
  const std::string admin = this->keys_[Role::kAdmin];

  auto mine = this->call("POST", "/api/v1/tunnels", R"({"name": "mine"})", member);
  ASSERT_EQ(mine.status, 201) << mine.raw.body;
  ASSERT_TRUE(mine.body["created_by"].is_number_integer()) << mine.raw.body;
  const std::string path = "/api/v1/tunnels/" + mine.body["id"].dump();
  const int changes = this->hooks_.changes;
  auto patched = this->call("PATCH", path, R"({"proxy_protocol": true})", colleague);
  EXPECT_EQ(patched.status, 403) << patched.raw.body;
  EXPECT_NE(patched.body["detail"].template get<std::string>().find(
                "manages only the tunnels and agents its user created"),
            std::string::npos)
      << patched.raw.body;
  EXPECT_EQ(this->call("DELETE", path, "", colleague).status, 403);
  EXPECT_EQ(this->hooks_.changes, changes) << "a refusal changed something";
  EXPECT_EQ(this->call("PATCH", path, R"({"proxy_protocol": true})", member).status, 200);
  EXPECT_EQ(this->call("PATCH", path, R"({"bandwidth": 1000})", admin).status, 200);

  // Assigning: only to an agent the member's user registered.
  auto own_agent = this->call("POST", "/api/v1/agents", R"({"name": "laptop"})", member);
  auto their_agent = this->call("POST", "/api/v1/agents", R"({"name": "desk"})", colleague);
  ASSERT_EQ(own_agent.status, 201) << own_agent.raw.body;
  ASSERT_EQ(their_agent.status, 201) << their_agent.raw.body;
  EXPECT_EQ(own_agent.body["created_by"], mine.body["created_by"]);
  auto onto_theirs = this->call(
      "PATCH", path,
      R"({"agent": )" + their_agent.body["id"].dump() + R"(, "local": "127.0.0.1:3000"})", member);
  EXPECT_EQ(onto_theirs.status, 422) << onto_theirs.raw.body;
  EXPECT_EQ(this->fields(onto_theirs), std::vector<std::string>{"agent"});
  EXPECT_EQ(
      this->call("PATCH", path,
                 R"({"agent": )" + own_agent.body["id"].dump() + R"(, "local": "127.0.0.1:3000"})",
                 member)
          .status,
      200);

  const std::string own_agent_path = "/api/v1/agents/" + own_agent.body["id"].dump();
  EXPECT_EQ(this->call("DELETE", own_agent_path, "", colleague).status, 403);
  EXPECT_EQ(this->call("DELETE", own_agent_path, "", member).status, 204);
  EXPECT_EQ(this->call("DELETE", path, "", member).status, 204);
}

TYPED_TEST(ApiTest, AccountsUsersTeamsBindingsAndKeys) {
  const std::string& op = this->operator_key_;
  // Accounts: the operator makes them; an account's owner sees only its own.
  EXPECT_EQ(this->call("POST", "/api/v1/accounts", R"({"name": "newco"})").status, 403);
  auto newco = this->call("POST", "/api/v1/accounts", R"({"name": "newco"})", op);
  ASSERT_EQ(newco.status, 201) << newco.raw.body;
  const std::string account =
      "/api/v1/accounts/" + std::to_string(newco.body["id"].template get<Id>());
  EXPECT_EQ(this->call("GET", "/api/v1/accounts").body["items"].size(), 1u);
  EXPECT_EQ(this->call("GET", "/api/v1/accounts", "", op).body["items"].size(), 4u);
  EXPECT_EQ(this->call("GET", account).status, 404);
  // A user, its owner role and a key, all by the operator; the key works on newco only.
  auto user = this->call("POST", account + "/users",
                         R"({"name": "ceo", "email": "ceo@newco.example"})", op);
  ASSERT_EQ(user.status, 201) << user.raw.body;
  const Id ceo = user.body["id"];
  auto bound = this->call("POST", account + "/role-bindings",
                          R"({"user": )" + std::to_string(ceo) + R"(, "role": "owner"})", op);
  ASSERT_EQ(bound.status, 201) << bound.raw.body;
  auto key = this->call("POST", "/api/v1/keys",
                        R"({"name": "ceo", "user": )" + std::to_string(ceo) + "}", op);
  ASSERT_EQ(key.status, 201) << key.raw.body;
  const std::string ceo_key = key.body["key"];
  EXPECT_EQ(ceo_key.rfind("tnk_", 0), 0u);
  auto made = this->call("POST", "/api/v1/tunnels", R"({"name": "newco"})", ceo_key);
  ASSERT_EQ(made.status, 201) << made.raw.body;
  EXPECT_EQ(made.body["account"], newco.body["id"]);
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels?account=" + std::to_string(this->acme_), "", ceo_key)
                .status,
            404);

  // In acme: the admin adds bob, a team with bob as member role; bob's key is a member's.
  const std::string& admin = this->keys_[Role::kAdmin];
  const std::string acme = "/api/v1/accounts/" + std::to_string(this->acme_);
  auto bob = this->call("POST", acme + "/users", R"({"name": "bob"})", admin);
  ASSERT_EQ(bob.status, 201) << bob.raw.body;
  const Id bob_id = bob.body["id"];
  auto team = this->call("POST", acme + "/teams", R"({"name": "devs"})", admin);
  ASSERT_EQ(team.status, 201) << team.raw.body;
  const std::string team_path =
      "/api/v1/teams/" + std::to_string(team.body["id"].template get<Id>());
  auto member = this->call("POST", team_path + "/members",
                           R"({"user": )" + std::to_string(bob_id) + "}", admin);
  ASSERT_EQ(member.status, 200) << member.raw.body;
  EXPECT_EQ(member.body["members"], json::array({bob_id}));
  auto team_role =
      this->call("POST", acme + "/role-bindings",
                 R"({"team": )" + team.body["id"].dump() + R"(, "role": "member"})", admin);
  ASSERT_EQ(team_role.status, 201) << team_role.raw.body;
  // An admin cannot give the owner role; the owner can.
  EXPECT_EQ(this->call("POST", acme + "/role-bindings",
                       R"({"user": )" + std::to_string(bob_id) + R"(, "role": "owner"})", admin)
                .status,
            403);
  auto bob_key = this->call("POST", "/api/v1/keys",
                            R"({"name": "bob", "user": )" + std::to_string(bob_id) + "}", admin);
  ASSERT_EQ(bob_key.status, 201) << bob_key.raw.body;
  const std::string bk = bob_key.body["key"];
  EXPECT_EQ(this->call("POST", "/api/v1/tunnels", R"({"name": "bobs"})", bk).status, 201);
  EXPECT_EQ(this->call("POST", acme + "/users", R"({"name": "eve"})", bk).status, 403);
  // Out of the team, bob has no role at all.
  EXPECT_EQ(
      this->call("DELETE", team_path + "/members/" + std::to_string(bob_id), "", admin).status,
      204);
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels", "", bk).status, 403);

  // Keys: a viewer makes only viewer keys; a revoked key is refused.
  const std::string& viewer = this->keys_[Role::kViewer];
  EXPECT_EQ(this->call("POST", "/api/v1/keys", R"({"name": "up", "role": "admin"})", viewer).status,
            403);
  auto own = this->call(
      "POST", "/api/v1/keys",
      R"({"name": "mine", "role": "viewer", "expires_at": "2099-01-01T00:00:00Z"})", viewer);
  ASSERT_EQ(own.status, 201) << own.raw.body;
  EXPECT_EQ(own.body["expires_at"], 4070908800);
  const std::string own_path = "/api/v1/keys/" + std::to_string(own.body["id"].template get<Id>());
  EXPECT_EQ(this->call("GET", "/api/v1/keys", "", viewer).body["items"].size(), 2u);
  EXPECT_EQ(this->call("GET", own_path, "", this->other_key_).status, 404);
  EXPECT_EQ(this->call("DELETE", own_path, "", viewer).status, 204);
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels", "", own.body["key"]).status, 401);
  EXPECT_FALSE(this->call("GET", own_path, "", viewer).body["revoked_at"].is_null());
  auto past = this->call("POST", "/api/v1/keys", R"({"name": "old", "expires_at": 5})", viewer);
  EXPECT_EQ(past.status, 422);
  EXPECT_EQ(this->fields(past), std::vector<std::string>{"expires_at"});

  // Another account's users and teams are 404; the operator account stays.
  EXPECT_EQ(
      this->call("GET", "/api/v1/users/" + std::to_string(bob_id), "", this->other_key_).status,
      404);
  EXPECT_EQ(this->call("GET", team_path, "", this->other_key_).status, 404);
  const Id op_account = this->store_->find_account("operator").value()->id;
  EXPECT_EQ(this->call("DELETE", "/api/v1/accounts/" + std::to_string(op_account), "", op).status,
            409);
  EXPECT_EQ(this->call("DELETE", account, "", op).status, 204);
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels", "", ceo_key).status, 401);  // its keys went too
  // Audited.
  auto audit = this->store_->list_audit(100).value();
  std::set<std::string> actions;
  for (const auto& e : audit) actions.insert(e.action);
  for (const char* a :
       {"account.create", "user.create", "role_binding.create", "api_key.create", "team.create",
        "team.add_member", "team.remove_member", "api_key.revoke", "account.delete"}) {
    EXPECT_TRUE(actions.contains(a)) << a;
  }
}

// The same for the routes of accounts, users, teams, role bindings and keys.
TYPED_TEST(ApiTest, RoleMatrixOfTheAccountRoutes) {
  const std::string acme = "/api/v1/accounts/" + std::to_string(this->acme_);
  auto* self = this;
  const auto fresh_user = [&](int n) {
    store::User u;
    u.account_id = self->acme_;
    u.name = "u" + std::to_string(n);
    return self->store_->create_user(u).value().id;
  };
  const auto id = [](Id v) { return std::to_string(v); };
  struct Route {
    std::string name;
    std::function<Reply(const std::string& key, int n)> send;
    std::array<int, 6> expect;  // owner, admin, member, viewer, another account, operator
  };
  const std::vector<Route> routes = {
      {"GET /accounts/{id}",
       [&](const std::string& k, int) { return self->call("GET", acme, "", k); },
       {200, 200, 200, 200, 404, 200}},
      {"PATCH /accounts/{id}",
       [&](const std::string& k, int) {
         return self->call("PATCH", acme, R"({"name": "acme"})", k);
       },
       {200, 403, 403, 403, 404, 200}},
      {"DELETE /accounts/{id}",
       [&](const std::string& k, int n) {
         store::Account a;
         a.name = "gone" + std::to_string(n);
         const Id made = self->store_->create_account(a).value().id;
         return self->call("DELETE", "/api/v1/accounts/" + std::to_string(made), "", k);
       },
       {404, 404, 404, 404, 404, 204}},
      {"POST /accounts/{id}/users",
       [&](const std::string& k, int n) {
         return self->call("POST", acme + "/users", R"({"name": "n)" + std::to_string(n) + "\"}",
                           k);
       },
       {201, 201, 403, 403, 404, 201}},
      {"GET /accounts/{id}/users",
       [&](const std::string& k, int) { return self->call("GET", acme + "/users", "", k); },
       {200, 200, 200, 200, 404, 200}},
      {"PATCH /users/{id}",
       [&](const std::string& k, int n) {
         return self->call("PATCH", "/api/v1/users/" + id(fresh_user(n)),
                           R"({"email": "a@b.example"})", k);
       },
       {200, 200, 403, 403, 404, 200}},
      {"DELETE /users/{id}",
       [&](const std::string& k, int n) {
         return self->call("DELETE", "/api/v1/users/" + id(fresh_user(n)), "", k);
       },
       {204, 204, 403, 403, 404, 204}},
      {"POST /accounts/{id}/teams",
       [&](const std::string& k, int n) {
         return self->call("POST", acme + "/teams", R"({"name": "t)" + std::to_string(n) + "\"}",
                           k);
       },
       {201, 201, 403, 403, 404, 201}},
      {"GET /teams/{id}",
       [&](const std::string& k, int n) {
         store::Team t;
         t.account_id = self->acme_;
         t.name = "g" + std::to_string(n);
         return self->call("GET", "/api/v1/teams/" + id(self->store_->create_team(t).value().id),
                           "", k);
       },
       {200, 200, 200, 200, 404, 200}},
      {"POST /accounts/{id}/role-bindings viewer",
       [&](const std::string& k, int n) {
         return self->call("POST", acme + "/role-bindings",
                           R"({"user": )" + id(fresh_user(n)) + R"(, "role": "viewer"})", k);
       },
       {201, 201, 403, 403, 404, 201}},
      {"POST /accounts/{id}/role-bindings owner",
       [&](const std::string& k, int n) {
         return self->call("POST", acme + "/role-bindings",
                           R"({"user": )" + id(fresh_user(n)) + R"(, "role": "owner"})", k);
       },
       {201, 403, 403, 403, 404, 201}},
      {"DELETE /role-bindings/{id}",
       [&](const std::string& k, int n) {
         store::RoleBinding b;
         b.account_id = self->acme_;
         b.user_id = fresh_user(n);
         b.role = Role::kViewer;
         return self->call(
             "DELETE",
             "/api/v1/role-bindings/" + id(self->store_->create_role_binding(b).value().id), "", k);
       },
       {204, 204, 403, 403, 404, 204}},
      {"GET /keys/{id} of another user",
       [&](const std::string& k, int n) {
         store::ApiKey key;
         key.user_id = fresh_user(n);
         key.name = "k";
         return self->call(
             "GET", "/api/v1/keys/" + id(self->store_->create_api_key(key).value().object.id), "",
             k);
       },
       {200, 200, 404, 404, 404, 200}},
      {"GET /keys",
       [&](const std::string& k, int) { return self->call("GET", "/api/v1/keys", "", k); },
       {200, 200, 200, 200, 200, 200}},
  };
  const std::array<std::string, 6> keys = {this->keys_[Role::kOwner],  this->keys_[Role::kAdmin],
                                           this->keys_[Role::kMember], this->keys_[Role::kViewer],
                                           this->other_key_,           this->operator_key_};
  const std::array<const char*, 6> who = {"owner",  "admin",           "member",
                                          "viewer", "another account", "operator"};
  int n = 100;
  for (const auto& route : routes) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const int changes = this->hooks_.changes;
      auto r = route.send(keys[i], ++n);
      EXPECT_EQ(r.status, route.expect[i]) << route.name << " as " << who[i] << ": " << r.raw.body;
      if (r.status >= 400) {
        EXPECT_EQ(this->hooks_.changes, changes) << route.name;
      }
    }
  }
}

TYPED_TEST(ApiTest, ServesItsOpenApiDocumentWithoutAKey) {
  auto r = this->call("GET", "/api/v1/openapi.json", "", "-");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  EXPECT_EQ(r.body["openapi"], "3.1.0");
  EXPECT_TRUE(r.body["paths"].contains("/api/v1/tunnels"));
}

TYPED_TEST(ApiTest, AKeyNarrowedToViewerCannotWrite) {
  store::ApiKey k;
  k.user_id = this->store_->list_users(this->acme_).value().at(0).id;  // the owner
  k.name = "read-only";
  k.role = Role::kViewer;
  auto key = this->store_->create_api_key(k).value();
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels", "", key.secret).status, 200);
  EXPECT_EQ(this->call("POST", "/api/v1/tunnels", R"({"name": "x"})", key.secret).status, 403);
}

TYPED_TEST(ApiTest, UsageByHourDayAndTunnel) {
  const Id t = this->make_tunnel("app");
  const std::int64_t h = 1'765'000'000 / 3600 - 5;  // five hours before "now"
  std::vector<store::Usage> samples = {
      {this->acme_, 0, h, 10, 100, 1000, 1},  {this->acme_, t, h, 10, 100, 1000, 1},
      {this->acme_, 0, h + 1, 5, 50, 500, 0}, {this->acme_, t, h + 1, 5, 50, 500, 0},
      {this->other_, 0, h, 99, 99, 99, 99},
  };
  ASSERT_TRUE(this->store_->add_usage(samples));
  const std::string base = "/api/v1/accounts/" + std::to_string(this->acme_) + "/usage";
  auto hourly = this->call("GET", base);
  ASSERT_EQ(hourly.status, 200) << hourly.raw.body;
  EXPECT_EQ(hourly.body["buckets"].size(), 4u);
  EXPECT_EQ(hourly.body["total"]["requests"], 15);
  EXPECT_EQ(hourly.body["buckets"][0]["start"], h * 3600);
  auto by_tunnel = this->call("GET", base + "?tunnel=" + std::to_string(t));
  ASSERT_EQ(by_tunnel.body["buckets"].size(), 2u);
  EXPECT_EQ(by_tunnel.body["buckets"][0]["tunnel"], t);
  EXPECT_EQ(by_tunnel.body["total"]["bytes_out"], 1500);
  auto window = this->call("GET", base + "?from=" + std::to_string((h + 1) * 3600) +
                                      "&to=" + std::to_string((h + 2) * 3600));
  EXPECT_EQ(window.body["buckets"].size(), 2u);
  EXPECT_EQ(window.body["total"]["requests"], 5);
  auto daily =
      this->call("GET", base + "?by=day&from=2025-12-01T00:00:00Z&to=2025-12-07T00:00:00Z");
  ASSERT_EQ(daily.status, 200) << daily.raw.body;
  EXPECT_EQ(daily.body["total"]["requests"], 15);
  EXPECT_LE(daily.body["buckets"].size(), 4u);
  EXPECT_EQ(daily.body["buckets"][0]["start"].template get<std::int64_t>() % 86400, 0);
}

TYPED_TEST(ApiTest, QuotasAreSetByTheOperatorAndEnforcedOnCreate) {
  const std::string quota = "/api/v1/accounts/" + std::to_string(this->acme_) + "/quota";
  auto q = this->call("GET", quota);
  ASSERT_EQ(q.status, 200);
  EXPECT_EQ(q.body["max_tunnels"], 0);
  auto set =
      this->call("POST", quota, R"({"max_tunnels": 1, "max_agents": 1, "bandwidth": "1MiB/s"})",
                 this->operator_key_);
  ASSERT_EQ(set.status, 200) << set.raw.body;
  EXPECT_EQ(set.body["bandwidth"], 1024 * 1024);
  EXPECT_EQ(this->store_->get_quota(this->acme_).value().max_tunnels, 1u);
  EXPECT_EQ(this->store_->list_audit(1).value()[0].action, "quota.update");
  EXPECT_EQ(this->call("POST", "/api/v1/tunnels", R"({"name": "one"})").status, 201);
  auto over = this->call("POST", "/api/v1/tunnels", R"({"name": "two"})");
  EXPECT_EQ(over.status, 429);
  EXPECT_NE(over.body["detail"].template get<std::string>().find("max_tunnels"), std::string::npos);
  EXPECT_EQ(this->call("POST", "/api/v1/agents", R"({"name": "one"})").status, 201);
  EXPECT_EQ(this->call("POST", "/api/v1/agents", R"({"name": "two"})").status, 429);
}

TYPED_TEST(ApiTest, TheOperatorActsOnEveryAccount) {
  auto made = this->call("POST", "/api/v1/tunnels",
                         R"({"name": "x", "account": )" + std::to_string(this->other_) + "}",
                         this->operator_key_);
  ASSERT_EQ(made.status, 201) << made.raw.body;
  EXPECT_EQ(made.body["account"], this->other_);
  this->make_tunnel("y");
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels", "", this->operator_key_).body["items"].size(), 2u);
  // The owner of acme cannot put one into another account.
  auto refused = this->call("POST", "/api/v1/tunnels",
                            R"({"name": "z", "account": )" + std::to_string(this->other_) + "}");
  EXPECT_EQ(refused.status, 422);
  EXPECT_EQ(this->fields(refused), std::vector<std::string>{"account"});
  // bootstrap() does nothing while the operator has a usable key; a new one when not.
  auto again = bootstrap(*this->store_, 1'765'000'000);
  ASSERT_TRUE(again);
  EXPECT_FALSE(again.value());
  const Id op = this->store_->find_account("operator").value()->id;
  const Id admin = this->store_->list_users(op).value().at(0).id;
  const auto keys = this->store_->list_api_keys(admin).value();
  for (const auto& k : keys) {
    ASSERT_TRUE(this->store_->revoke_api_key(k.id));
  }
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels", "", this->operator_key_).status, 401);
  auto renewed = bootstrap(*this->store_, 1'765'000'000);
  ASSERT_TRUE(renewed && renewed.value());
  EXPECT_EQ(renewed.value()->user_id, admin);
  EXPECT_EQ(this->store_->list_users(op).value().size(), 1u);
  this->peer_ = "192.0.2.12:1";
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels", "", renewed.value()->secret).body["items"].size(),
            2u);
}

TYPED_TEST(ApiTest, ListsPageWithACursorAndFilter) {
  for (int i = 0; i < 5; ++i) this->make_tunnel("p" + std::to_string(i));
  ASSERT_EQ(this->call("POST", "/api/v1/tunnels", R"({"type": "tcp", "port": 15001})").status, 201);
  std::vector<std::string> names;
  std::string target = "/api/v1/tunnels?type=http&limit=2";
  for (int pages = 0; pages < 10; ++pages) {
    auto r = this->call("GET", target);
    ASSERT_EQ(r.status, 200) << r.raw.body;
    EXPECT_LE(r.body["items"].size(), 2u);
    for (const auto& item : r.body["items"]) names.push_back(item["name"]);
    if (r.body["next_cursor"].is_null()) break;
    target = "/api/v1/tunnels?type=http&limit=2&cursor=" +
             r.body["next_cursor"].template get<std::string>();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"p0", "p1", "p2", "p3", "p4"}));
  EXPECT_EQ(this->call("GET", "/api/v1/tunnels?type=tcp").body["items"].size(), 1u);
}

TYPED_TEST(ApiTest, AnIdempotencyKeyAnswersTheSameTwice) {
  const Headers key = {{"Idempotency-Key", "abc-1"}};
  auto first = this->call("POST", "/api/v1/agents", R"({"name": "laptop"})", "", key);
  ASSERT_EQ(first.status, 201);
  auto second = this->call("POST", "/api/v1/agents", R"({"name": "laptop"})", "", key);
  EXPECT_EQ(second.status, 201);
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(second.header("Idempotent-Replayed"), "true");
  EXPECT_EQ(this->store_->list_agents(this->acme_).value().size(), 1u);
  auto other = this->call("POST", "/api/v1/agents", R"({"name": "desktop"})", "", key);
  EXPECT_EQ(other.status, 422);
  EXPECT_EQ(this->fields(other), std::vector<std::string>{"Idempotency-Key"});
  EXPECT_EQ(this->store_->list_agents(this->acme_).value().size(), 1u);
  // Keys are per API key: another key's same Idempotency-Key is a new request.
  auto admin = this->call("POST", "/api/v1/agents", R"({"name": "laptop2"})",
                          this->keys_[Role::kAdmin], key);
  EXPECT_EQ(admin.status, 201);
}

}  // namespace
}  // namespace tunnel::core::api

namespace tunnel::core::api {
namespace {

// docs/openapi.json (compiled in) and the route table name the same operations: a route
// missing from the document, or an operation in it that no route serves, fails here.
TEST(ApiOpenApi, TheDocumentAndTheRouteTableAgree) {
  const auto doc = json::parse(openapi_document(), nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << "docs/openapi.json is not valid JSON";
  EXPECT_EQ(doc["openapi"], "3.1.0");
  std::set<std::string> documented;
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const auto& [method, operation] : item.items()) {
      static const std::set<std::string> kMethods = {"get",    "post", "put",    "patch",
                                                     "delete", "head", "options"};
      if (!kMethods.contains(method)) continue;
      std::string upper = method;
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      upper += ' ';
      upper += path;
      documented.insert(upper);
      EXPECT_TRUE(operation.contains("responses")) << upper;
    }
  }
  std::set<std::string> routed;
  for (const auto& r : Api::routes()) routed.insert(r);
  for (const auto& r : routed) {
    EXPECT_TRUE(documented.contains(r)) << "route " << r << " is missing from docs/openapi.json";
  }
  for (const auto& d : documented) {
    EXPECT_TRUE(routed.contains(d)) << "docs/openapi.json has " << d << ", which no route serves";
  }
}

// The API answers a store error by its kind, not by its words: a lost serializable transaction
// ("could not serialize access", PostgreSQL's 40001) is a conflict, an object that vanished
// between the API's check and the write is not found. Guessed from the text, both were 500.
TEST(ApiStoreErrors, AreAnsweredByTheirKind) {
  using common::ErrorKind;
  const auto status_of = [](ErrorKind kind, const char* message) {
    return store_error(common::fail(kind, message)).status;
  };
  EXPECT_EQ(status_of(ErrorKind::kConflict,
                      "postgres: could not serialize access due to read/write dependencies"),
            409);
  EXPECT_EQ(status_of(ErrorKind::kNotFound, "no tunnel 5"), 404);
  EXPECT_EQ(status_of(ErrorKind::kInvalid, "tunnel.port: give a port from 1 to 65535"), 422);
  EXPECT_EQ(status_of(ErrorKind::kInternal, "sqlite: disk I/O error"), 500);
  // The database cannot be reached for now (PostgreSQL restarting): try again shortly.
  const ApiResponse unavailable =
      store_error(common::fail(ErrorKind::kUnavailable, "postgres: the server is shutting down"));
  EXPECT_EQ(unavailable.status, 503);
  EXPECT_NE(std::find(unavailable.headers.begin(), unavailable.headers.end(),
                      std::pair<std::string, std::string>{"Retry-After", "1"}),
            unavailable.headers.end());
  const ApiResponse conflict = store_error(common::fail(ErrorKind::kConflict, "name taken"));
  const json problem = json::parse(conflict.body, nullptr, false);
  EXPECT_EQ(problem["type"], "urn:tunnel:problem:conflict");
  EXPECT_EQ(problem["status"], 409);
  EXPECT_EQ(problem["detail"], "name taken");
  const ApiResponse invalid =
      store_error(common::fail(ErrorKind::kInvalid, "tunnel.port: give a port from 1 to 65535"));
  EXPECT_EQ(json::parse(invalid.body, nullptr, false)["errors"][0]["field"], "port");
}

}  // namespace
}  // namespace tunnel::core::api
