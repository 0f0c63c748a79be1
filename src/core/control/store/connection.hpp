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
  // Whether the last failure was a serialization failure or a deadlock (PostgreSQL: another
  // core's transaction overlapped this one): the whole transaction may simply run again.
  virtual bool last_error_was_retryable() const { return false; }
};

common::Result<std::unique_ptr<Connection>> open_sqlite(const std::string& path);
common::Result<std::unique_ptr<Connection>> open_postgres(const std::string& url);

// What a non-blocking libpq call waits for next: the socket readable, writable, or nothing
// (done).
enum class Want { kRead, kWrite, kDone };

// A PostgreSQL connection of its own that LISTENs on one channel (the store's changes, see
// change_follower.hpp). Nothing here blocks: the caller waits for socket() with its event loop
// and calls the next step. Connecting: wait for kWrite first, then call connect_step() each
// time the socket is ready for what the last call wanted, until kDone (connected and
// listening). Then receive() whenever the socket is readable.
class ChangeFeed {
 public:
  virtual ~ChangeFeed() = default;
  // The connection's socket; it may change while connecting (ask again after each step).
  virtual int socket() const = 0;
  virtual common::Result<Want> connect_step() = 0;
  // Reads what arrived: the payloads of the notifications received. An error when the
  // connection is lost (make a new feed).
  virtual common::Result<std::vector<std::string>> receive() = 0;
};

// Starts connecting to `url` (PQconnectStart; the host name is resolved here, the rest waits
// on the socket) and will LISTEN on `channel` (an SQL identifier, not quoted).
common::Result<std::unique_ptr<ChangeFeed>> start_change_feed(const std::string& url,
                                                              const std::string& channel);

}  // namespace tunnel::core::store
