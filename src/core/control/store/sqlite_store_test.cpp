// What only the SQLite backend has: a file, its mode and bytes, and its behaviour when the
// process dies in the middle of writes.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

#include "core/control/store/test_backends.hpp"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace tunnel::core::store {
namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(SqliteStore, IsAWalFileOnlyItsOwnerReads) {
  SqliteBackend b;
  auto s = open_store(b.options());
  ASSERT_TRUE(s) << s.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(b.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto c = open_sqlite(b.path());
  ASSERT_TRUE(c);
  auto mode = c.value()->query("PRAGMA journal_mode", {});
  ASSERT_TRUE(mode);
  EXPECT_EQ(mode.value().at(0).at(0), "wal");
  auto fk = c.value()->query("PRAGMA foreign_keys", {});
  EXPECT_EQ(fk.value().at(0).at(0), "1");
}

TEST(SqliteStore, SecretsAreNeverStoredInClear) {
  SqliteBackend b;
  std::string agent_token, api_key;
  {
    auto s = open_store(b.options());
    ASSERT_TRUE(s);
    auto& store = *s.value();
    auto a = store.create_account({.name = "acme"}).value();
    auto u = store.create_user({.account_id = a.id, .name = "ann"}).value();
    agent_token = store.create_agent({.account_id = a.id, .name = "laptop"}).value().secret;
    api_key = store.create_api_key({.user_id = u.id, .name = "ci"}).value().secret;
    ASSERT_TRUE(store.find_agent_by_credential(agent_token).value());
  }  // closed: the WAL is checkpointed into the main file
  std::string bytes = file_bytes(b.path()) + file_bytes(b.path() + "-wal");
  ASSERT_NE(bytes.find("laptop"), std::string::npos);  // the file is the one written
  for (const std::string& secret : {agent_token, api_key}) {
    EXPECT_EQ(bytes.find(secret), std::string::npos);
    EXPECT_EQ(bytes.find(secret.substr(4)), std::string::npos);  // nor without its prefix
  }
  // What is there is the keyed hash.
  EXPECT_NE(bytes.find(hash_secret_hex(kTestKey, agent_token)), std::string::npos);
}

TEST(SqliteStore, TheKeyFileIsMadeOnceAndKept) {
  SqliteBackend b;
  auto o = b.options();
  o.secret_key.clear();
  auto s = open_store(o);
  ASSERT_TRUE(s) << s.error().message;
  struct stat st {};
  ASSERT_EQ(::stat((b.dir() + "/store.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto a = s.value()->create_account({.name = "acme"}).value();
  auto token = s.value()->create_agent({.account_id = a.id, .name = "x"}).value().secret;
  s.value().reset();
  auto again = open_store(o);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again.value()->find_agent_by_credential(token).value());
  std::ofstream(b.dir() + "/store.key", std::ios::trunc) << "short\n";
  auto refused = open_store(o);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("store.key: the store key is too short"),
            std::string::npos);
}

TEST(SqliteStore, RefusesAUrlItDoesNotKnow) {
  SqliteBackend b;
  auto o = b.options();
  o.url = "mysql://x";
  auto s = open_store(o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("store.url \"mysql://x\""), std::string::npos);
  o.url = "sqlite:" + b.dir() + "/other.db";
  EXPECT_TRUE(open_store(o));
  EXPECT_TRUE(std::filesystem::exists(b.dir() + "/other.db"));
}

// A child writes and reports each write once it is acknowledged; it is killed with SIGKILL in
// the middle. Every acknowledged write is there after reopening, and the file is sound.
TEST(SqliteStore, EveryAcknowledgedWriteSurvivesSigkill) {
  SqliteBackend b;
  ASSERT_TRUE(open_store(b.options()));  // the schema, before the race
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    auto s = open_store(b.options());
    if (!s) ::_exit(2);
    auto& store = *s.value();
    for (std::uint32_t i = 0;; ++i) {
      auto a = store.create_account({.name = "a" + std::to_string(i)});
      if (!a) ::_exit(3);
      // Several rows per acknowledgement: a transaction in flight when the signal comes.
      if (!store.add_usage({{.account_id = a.value().id, .hour = 1, .requests = i},
                            {.account_id = a.value().id, .hour = 2, .requests = i}})) {
        ::_exit(4);
      }
      if (::write(fds[1], &i, sizeof i) != sizeof i) ::_exit(5);
    }
  }
  ::close(fds[1]);
  std::uint32_t acked = 0;
  std::uint32_t n = 0;
  std::uint32_t count = 0;
  while (count < 200 && ::read(fds[0], &n, sizeof n) == sizeof n) {
    acked = n;
    ++count;
  }
  ::kill(child, SIGKILL);
  while (::read(fds[0], &n, sizeof n) == sizeof n) acked = n;  // acknowledged before it died
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer ended on its own: " << status;
  ASSERT_GE(count, 200u);

  auto s = open_store(b.options());
  ASSERT_TRUE(s) << s.error().message;
  auto& store = *s.value();
  EXPECT_TRUE(store.check_integrity());
  for (std::uint32_t i = 0; i <= acked; ++i) {
    auto a = store.find_account("a" + std::to_string(i));
    ASSERT_TRUE(a && a.value()) << "acknowledged account a" << i << " is missing";
    auto usage = store.list_usage(a.value()->id, 0, 10).value();
    ASSERT_EQ(usage.size(), 2u) << "a" << i;
    EXPECT_EQ(usage[1].requests, i);
  }
  // What was not acknowledged is either all there or not at all.
  auto all = store.list_accounts().value();
  EXPECT_LE(all.size(), acked + 2u);
  for (const auto& a : all) {
    EXPECT_EQ(store.list_usage(a.id, 0, 10).value().size() % 2, 0u) << a.name;
  }
}

}  // namespace
}  // namespace tunnel::core::store
