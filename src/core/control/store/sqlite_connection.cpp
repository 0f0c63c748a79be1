// The SQLite connection: one file, WAL journal, foreign keys on, a busy timeout, prepared
// statements cached by their text for the connection's life.
#include <sqlite3.h>

#include <chrono>
#include <map>
#include <thread>

#include "core/control/store/connection.hpp"

namespace tunnel::core::store {
namespace {

using common::fail;
using common::Result;
using common::Status;
using common::success;

class SqliteConnection : public Connection {
 public:
  explicit SqliteConnection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~SqliteConnection() override {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
  }

  Dialect dialect() const override { return Dialect::kSqlite; }

  Result<std::vector<Row>> query(std::string_view sql, const std::vector<Value>& params) override {
    constraint_ = false;
    auto prepared = prepare(sql);
    if (!prepared) return prepared.error();
    sqlite3_stmt* stmt = prepared.value();
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const std::string name = "$" + std::to_string(i + 1);
      const int index = sqlite3_bind_parameter_index(stmt, name.c_str());
      if (index == 0) continue;  // a parameter the statement does not use
      int rc = SQLITE_OK;
      if (const auto* n = std::get_if<std::int64_t>(&params[i])) {
        rc = sqlite3_bind_int64(stmt, index, *n);
      } else if (const auto* s = std::get_if<std::string>(&params[i])) {
        rc = sqlite3_bind_text(stmt, index, s->data(), static_cast<int>(s->size()),
                               SQLITE_TRANSIENT);
      } else {
        rc = sqlite3_bind_null(stmt, index);
      }
      if (rc != SQLITE_OK) return failure("bind");
    }
    std::vector<Row> rows;
    for (;;) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        const int code = sqlite3_extended_errcode(db_);
        constraint_ = (code & 0xff) == SQLITE_CONSTRAINT;
        auto error = failure("statement");
        if (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY) {
          error.kind = common::ErrorKind::kConflict;  // the name or port is taken
        }
        sqlite3_reset(stmt);
        return error;
      }
      const int columns = sqlite3_column_count(stmt);
      Row row(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        if (sqlite3_column_type(stmt, c) == SQLITE_NULL) continue;
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
        row[static_cast<std::size_t>(c)] =
            std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(stmt, c)));
      }
      rows.push_back(std::move(row));
    }
    sqlite3_reset(stmt);
    return rows;
  }

  Status exec_script(std::string_view sql) override {
    const std::string text(sql);
    char* message = nullptr;
    if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      std::string why = path_ + ": " + (message ? message : sqlite3_errmsg(db_));
      sqlite3_free(message);
      return fail(why);
    }
    return success();
  }

  Status begin() override { return exec_script("BEGIN IMMEDIATE"); }
  Status commit() override { return exec_script("COMMIT"); }
  void rollback() override {
    if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  Status check_integrity() override {
    auto rows = query("PRAGMA integrity_check", {});
    if (!rows) return rows.error();
    if (rows.value().size() == 1 && rows.value()[0][0] == "ok") return success();
    std::string why = path_ + ": the integrity check failed:";
    for (const auto& row : rows.value()) why += " " + row[0].value_or("");
    return fail(why);
  }

  bool last_error_was_constraint() const override { return constraint_; }

 private:
  Result<sqlite3_stmt*> prepare(std::string_view sql) {
    std::string key(sql);
    if (auto it = statements_.find(key); it != statements_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db_, key.data(), static_cast<int>(key.size()), SQLITE_PREPARE_PERSISTENT,
                           &stmt, nullptr) != SQLITE_OK) {
      return failure("prepare");
    }
    statements_.emplace(std::move(key), stmt);
    return stmt;
  }

  common::Error failure(std::string_view what) const {
    return fail(path_ + ": " + std::string(what) + ": " + sqlite3_errmsg(db_));
  }

  sqlite3* db_;
  std::string path_;
  std::map<std::string, sqlite3_stmt*, std::less<>> statements_;
  bool constraint_ = false;
};

}  // namespace

Result<std::unique_ptr<Connection>> open_sqlite(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
      nullptr);
  if (rc != SQLITE_OK) {
    std::string why =
        path + ": cannot open the store: " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return fail(why);
  }
  sqlite3_busy_timeout(db, 5000);
  auto connection = std::make_unique<SqliteConnection>(db, path);
  // WAL: readers do not block the writer; synchronous=FULL: an acknowledged commit survives
  // a power loss, not only a crash of the process.
  // Switching to WAL takes the file's exclusive lock and is refused at once (no busy wait)
  // while another process opens the same new file: retry for up to the busy timeout.
  for (int attempt = 0;; ++attempt) {
    auto s = connection->exec_script(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
    if (s) break;
    if (attempt == 250 || s.error().message.find("database is locked") == std::string::npos) {
      return s.error();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto mode = connection->query("PRAGMA journal_mode", {});
  if (!mode) return mode.error();
  if (mode.value().empty() || mode.value()[0][0] != "wal") {
    return fail(path + ": the store needs WAL mode, which this file system refused");
  }
  return std::unique_ptr<Connection>(std::move(connection));
}

}  // namespace tunnel::core::store
