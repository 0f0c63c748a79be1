// follow_changes() on a real PostgreSQL (the cluster of test_backends.hpp): a change committed
// by another store reaches this one's snapshot within a second; its own changes do not reload
// it again; a dropped listening connection comes back and catches up.
#include "core/control/store/change_follower.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>

#include "core/control/store/test_backends.hpp"

// Designated initializers leave the other members at their defaults, which is the point.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace tunnel::core::store {
namespace {

using namespace std::chrono_literals;

class ChangeFollowerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = PostgresBackend::unavailable(); !why.empty()) GTEST_SKIP() << why;
    backend_ = std::make_unique<PostgresBackend>();
    a_ = open();
    b_ = open();
    ASSERT_TRUE(a_ && b_);
    FollowOptions options;
    options.url = backend_->options().url;
    options.first_retry = 10ms;
    asio::co_spawn(io_, follow_changes(*b_, options, [this] { ++changes_; }), asio::detached);
    // Connected and listening: the catch-up reload after the connect has run.
    ASSERT_TRUE(run_until([&] { return changes_ >= 1; }, 5s));
  }

  std::unique_ptr<Store> open() {
    auto s = open_store(backend_->options());
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    return s ? std::move(s).value() : nullptr;
  }

  // Runs the follower's executor until `done` or `limit` passes.
  template <typename F>
  bool run_until(F done, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.run_for(5ms);
    }
    return true;
  }

  Id http_tunnel(Store& s, const std::string& account, const std::string& name) {
    auto found = s.find_account(account);
    Id id = found && found.value() ? found.value()->id : 0;
    if (id == 0) {
      auto made = s.create_account({.name = account});
      EXPECT_TRUE(made) << (made ? "" : made.error().message);
      id = made ? made.value().id : 0;
    }
    Tunnel t;
    t.account_id = id;
    t.name = name;
    auto created = s.create_tunnel(t);
    EXPECT_TRUE(created) << (created ? "" : created.error().message);
    return created ? created.value().id : 0;
  }

  asio::io_context io_;
  std::unique_ptr<PostgresBackend> backend_;
  std::unique_ptr<Store> a_, b_;
  int changes_ = 0;
};

TEST_F(ChangeFollowerTest, AnotherStoresChangeReachesTheSnapshotWithinASecond) {
  http_tunnel(*a_, "acme", "app");
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_until([&] { return b_->snapshot()->by_name.contains("app"); }, 1s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);

  // An agent registered through A is known to B; removed through A, B forgets it.
  const Id account = a_->find_account("acme").value()->id;
  auto agent = a_->create_agent({.account_id = account, .name = "laptop"});
  ASSERT_TRUE(agent);
  const std::string hash = a_->credential_hasher()(agent.value().secret);
  ASSERT_TRUE(run_until([&] { return b_->snapshot()->find_agent(hash) != nullptr; }, 1s));
  ASSERT_TRUE(a_->remove_agent(agent.value().object.id).value());
  ASSERT_TRUE(run_until([&] { return b_->snapshot()->find_agent(hash) == nullptr; }, 1s));
}

TEST_F(ChangeFollowerTest, ItsOwnChangesAreNotReloadedAgain) {
  http_tunnel(*b_, "acme", "mine");  // B's own: its snapshot has it already
  const int before = changes_;
  http_tunnel(*a_, "acme", "theirs");
  // Notifications arrive in commit order: when A's is applied, B's own was seen before it.
  ASSERT_TRUE(run_until([&] { return b_->snapshot()->by_name.contains("theirs"); }, 1s));
  EXPECT_EQ(changes_, before + 1);
}

TEST_F(ChangeFollowerTest, ALostListeningConnectionComesBackAndCatchesUp) {
  auto admin = open_postgres(backend_->options().url);
  ASSERT_TRUE(admin);
  auto killed = admin.value()->query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND "
      "datname = current_database()",
      {});
  ASSERT_TRUE(killed) << killed.error().message;
  ASSERT_EQ(killed.value().size(), 1u);
  // Made while B may not listen: the reload after the reconnect brings it.
  http_tunnel(*a_, "acme", "later");
  ASSERT_TRUE(run_until([&] { return b_->snapshot()->by_name.contains("later"); }, 3s));
  const int after_reconnect = changes_;
  http_tunnel(*a_, "acme", "again");  // and it listens again
  ASSERT_TRUE(run_until([&] { return b_->snapshot()->by_name.contains("again"); }, 1s));
  EXPECT_GT(changes_, after_reconnect);
}

// The store's own connection (not the listening one) cut by the server, as when PostgreSQL
// restarts: the next write and the next read open it again instead of failing for good.
TEST_F(ChangeFollowerTest, AStoresLostConnectionIsOpenedAgainForTheNextWriteAndRead) {
  http_tunnel(*a_, "acme", "before");
  auto admin = open_postgres(backend_->options().url);
  ASSERT_TRUE(admin);
  const auto cut = [&] {
    auto killed = admin.value()->query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
        "current_database() AND pid <> pg_backend_pid() AND query NOT LIKE 'LISTEN %'",
        {});
    ASSERT_TRUE(killed) << killed.error().message;
    ASSERT_GE(killed.value().size(), 1u) << "the stores' connections";
  };
  cut();
  EXPECT_NE(http_tunnel(*a_, "acme", "after"), 0) << "a write after the cut";
  cut();
  auto listed = a_->list_tunnels(std::nullopt);
  ASSERT_TRUE(listed) << "a read after the cut: " << listed.error().message;
  EXPECT_EQ(listed.value().size(), 2u);
  ASSERT_TRUE(run_until([&] { return b_->snapshot()->by_name.contains("after"); }, 1s));
}

}  // namespace
}  // namespace tunnel::core::store
