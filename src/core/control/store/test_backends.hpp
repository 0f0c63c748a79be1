// The backends the store's typed tests run on. SqliteBackend: a file in a temp dir.
// PostgresBackend: a cluster of its own (initdb into a temp dir, pg_ctl start on a free
// loopback port, stopped at the end), one database per test; skipped with a message when the
// PostgreSQL binaries are not installed.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "core/control/store/connection.hpp"
#include "core/control/store/store.hpp"

namespace tunnel::core::store {

inline std::string make_temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "tunnel-store-XXXXXX").string();
  if (!::mkdtemp(pattern.data())) return {};
  return pattern;
}

constexpr const char* kTestKey = "0123456789abcdef0123456789abcdef-test-key";

class SqliteBackend {
 public:
  static std::string unavailable() { return {}; }
  SqliteBackend() : dir_(make_temp_dir()) {}
  ~SqliteBackend() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  StoreOptions options() const {
    StoreOptions o;
    o.data_dir = dir_;
    o.secret_key = kTestKey;
    return o;
  }
  std::string path() const { return dir_ + "/store.db"; }
  const std::string& dir() const { return dir_; }
  // An empty database again.
  void reset() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path() + suffix);
  }
  common::Status raw_exec(const std::string& sql) {
    auto c = open_sqlite(path());
    if (!c) return c.error();
    return c.value()->exec_script(sql);
  }

 private:
  std::string dir_;
};

// A PostgreSQL 15 cluster shared by the whole test binary, started on first use.
class PostgresCluster {
 public:
  static PostgresCluster& get();
  ~PostgresCluster();
  // "" when the cluster runs; why not otherwise.
  const std::string& error() const { return error_; }
  // A fresh, empty database's URL.
  std::string new_database();
  common::Status drop_database(const std::string& name);

 private:
  PostgresCluster();
  std::string dir_, bin_, error_, user_;
  int port_ = 0;
  int next_ = 0;
  bool started_ = false;
};

class PostgresBackend {
 public:
  static std::string unavailable();
  PostgresBackend() { url_ = PostgresCluster::get().new_database(); }
  StoreOptions options() const {
    StoreOptions o;
    o.url = url_;
    o.secret_key = kTestKey;
    return o;
  }
  void reset() { url_ = PostgresCluster::get().new_database(); }
  common::Status raw_exec(const std::string& sql) {
    auto c = open_postgres(url_);
    if (!c) return c.error();
    return c.value()->exec_script(sql);
  }

 private:
  std::string url_;
};

using Backends = ::testing::Types<SqliteBackend, PostgresBackend>;

class BackendNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    if constexpr (std::is_same_v<T, SqliteBackend>) return "Sqlite";
    return "Postgres";
  }
};

}  // namespace tunnel::core::store
