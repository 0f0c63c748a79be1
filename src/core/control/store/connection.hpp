// The few things the store needs from a database connection, so that one SqlStore serves
// SQLite and PostgreSQL alike. Statements use $1, $2, ... placeholders (both backends read
// them); values are bound, never spliced into the SQL text.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.hpp"

namespace tunnel::core::store {

using Value = std::variant<std::monostate, std::int64_t, std::string>;
using Row = std::vector<std::optional<std::string>>;

enum class Dialect { kSqlite, kPostgres };

class Connection {
 public:
  virtual ~Connection() = default;
  virtual Dialect dialect() const = 0;
  // One statement; its rows (none for a statement that returns none).
  virtual common::Result<std::vector<Row>> query(std::string_view sql,
                                                 const std::vector<Value>& params) = 0;
  // Several statements without parameters (migrations).
  virtual common::Status exec_script(std::string_view sql) = 0;
  // A write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: SERIALIZABLE).
  virtual common::Status begin() = 0;
  virtual common::Status commit() = 0;
  virtual void rollback() = 0;
  virtual common::Status check_integrity() = 0;
  // Whether the last failed statement broke a UNIQUE, FOREIGN KEY or CHECK constraint.
  virtual bool last_error_was_constraint() const = 0;
};

common::Result<std::unique_ptr<Connection>> open_sqlite(const std::string& path);
common::Result<std::unique_ptr<Connection>> open_postgres(const std::string& url);

}  // namespace tunnel::core::store
