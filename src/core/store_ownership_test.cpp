#include "core/store_ownership.hpp"

#include <gtest/gtest.h>

#include "common/result_testing.hpp"
#include "core/control/store/test_backends.hpp"

namespace tunnel::core {
namespace {

TEST(CoreStoreOwnership, SavesAndLoadsWhatTheRegistryOwns) {
  store::SqliteBackend backend;
  auto opened = store::open_store(backend.options());
  ASSERT_TRUE(opened) << opened.error().message;
  StoreOwnershipStore ownership(*opened.value(), "core-a");
  std::vector<Registry::Owned> owned, loaded;
  std::vector<std::string> warnings;
  ASSERT_TRUE(common::is_ok(ownership.load(loaded, warnings)));
  EXPECT_TRUE(loaded.empty());
  owned.push_back({"app.localhost", "alice", "", true, 0});
  owned.push_back({"tcp:15432", "bob", "agent-1\tx", false, 1765100000});  // any bytes
  ASSERT_TRUE(common::is_ok(ownership.save(owned)));
  ASSERT_TRUE(common::is_ok(ownership.load(loaded, warnings)));
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded[0].key, "app.localhost");
  EXPECT_TRUE(loaded[0].explicit_name);
  EXPECT_EQ(loaded[1].holder, "agent-1\tx");
  EXPECT_EQ(loaded[1].offline_since, 1765100000);
  // A save replaces the whole set; it survives a reopen.
  owned.erase(owned.begin());
  ASSERT_TRUE(common::is_ok(ownership.save(owned)));
  opened.value().reset();
  auto again = store::open_store(backend.options());
  ASSERT_TRUE(again);
  StoreOwnershipStore reopened(*again.value(), "core-a");
  ASSERT_TRUE(common::is_ok(reopened.load(loaded, warnings)));
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].account, "bob");
  EXPECT_TRUE(warnings.empty());
}

TEST(CoreStoreOwnership, TheCoreIdIsMadeOnceAndKept) {
  store::SqliteBackend backend;
  auto first = core_id(backend.dir());
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(first.value().starts_with("core_")) << first.value();
  auto again = core_id(backend.dir());
  ASSERT_TRUE(again);
  EXPECT_EQ(again.value(), first.value());
  auto nowhere = core_id(backend.dir() + "/missing/dir");
  ASSERT_FALSE(nowhere);
  EXPECT_NE(nowhere.error().message.find("core.id"), std::string::npos) << nowhere.error().message;
}

}  // namespace
}  // namespace tunnel::core
