// The PostgreSQL connection (libpq): parameters are sent apart from the statement
// (PQexecParams), never spliced into it; write transactions are SERIALIZABLE so that the
// store's check-then-write (overlapping names) holds when several cores share the database.
//
// libpq is loaded with dlopen() when a postgres:// store is opened, not linked: it pulls in
// some twenty shared libraries (Kerberos, LDAP, GnuTLS), which cost a core that uses SQLite
// about 5 MiB of resident memory for nothing.
#include <dlfcn.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <mutex>

#include "core/control/store/connection.hpp"

namespace tunnel::core::store {
namespace {

// The libpq functions the store uses, listed once: X(name) for each.
// clang-format off
#define TUNNEL_LIBPQ_FUNCTIONS(X) \
  X(PQconnectdb) \
  X(PQstatus) \
  X(PQerrorMessage) \
  X(PQfinish) \
  X(PQreset) \
  X(PQexecParams) \
  X(PQexec) \
  X(PQresultStatus) \
  X(PQresultErrorField) \
  X(PQresultErrorMessage) \
  X(PQclear) \
  X(PQntuples) \
  X(PQnfields) \
  X(PQgetisnull) \
  X(PQgetvalue) \
  X(PQgetlength) \
  X(PQtransactionStatus) \
  X(PQconnectStart) \
  X(PQconnectPoll) \
  X(PQsocket) \
  X(PQsetnonblocking) \
  X(PQsendQuery) \
  X(PQflush) \
  X(PQconsumeInput) \
  X(PQisBusy) \
  X(PQgetResult) \
  X(PQnotifies) \
  X(PQfreemem) \
  X(PQsetNoticeProcessor)
// clang-format on

// The macros' argument is a declarator and a member name: it cannot be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define TUNNEL_PQ_DECLARE(name) decltype(&::name) name = nullptr;
#define TUNNEL_PQ_RESOLVE(name)                                       \
  pq.name = reinterpret_cast<decltype(&::name)>(::dlsym(lib, #name)); \
  if (!pq.name && pq.error.empty()) pq.error = "libpq.so.5 has no " #name;
// NOLINTEND(bugprone-macro-parentheses)

// The libpq functions, resolved once.
struct Libpq {
  TUNNEL_LIBPQ_FUNCTIONS(TUNNEL_PQ_DECLARE)
  std::string error;
};

const Libpq& libpq() {
  static Libpq pq;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = ::dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      pq.error = std::string("cannot load libpq.so.5 (install libpq5): ") + ::dlerror();
      return;
    }
    TUNNEL_LIBPQ_FUNCTIONS(TUNNEL_PQ_RESOLVE)
  });
  return pq;
}

#undef TUNNEL_PQ_RESOLVE
#undef TUNNEL_PQ_DECLARE
#undef TUNNEL_LIBPQ_FUNCTIONS

using common::fail;
using common::Result;
using common::Status;
using common::success;

// Strips the password from a URL for messages: postgres://user:secret@host -> user@host.
std::string redacted(const std::string& url) {
  const auto scheme = url.find("://");
  const auto at = url.find('@');
  if (scheme == std::string::npos || at == std::string::npos) return url;
  const auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon) + url.substr(at);
}

class PgConnection : public Connection {
 public:
  PgConnection(PGconn* db, std::string name) : db_(db), name_(std::move(name)) {}
  ~PgConnection() override { libpq().PQfinish(db_); }

  Dialect dialect() const override { return Dialect::kPostgres; }

  // The session's settings, again after each reconnection: quiet NOTICEs ("relation exists,
  // skipping") and UTC times.
  Status configure() {
    return exec_statement("SET client_min_messages = warning; SET TIME ZONE 'UTC'");
  }

  Result<std::vector<Row>> query(std::string_view sql, const std::vector<Value>& params) override {
    auto rows = query_once(sql, params);
    // A read outside a transaction whose connection was lost (the server restarted, a failover)
    // runs once more on the reopened connection; a write's outcome is unknown, so it is not.
    if (!rows && lost_ && !in_transaction_ && sql.starts_with("SELECT ") &&
        sql.find("pg_notify") == std::string_view::npos) {
      rows = query_once(sql, params);
    }
    return rows;
  }

  Result<std::vector<Row>> query_once(std::string_view sql, const std::vector<Value>& params) {
    constraint_ = false;
    retryable_ = false;
    if (auto open = reopen_if_lost(); !open) return open.error();
    std::vector<std::string> text(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (const auto* n = std::get_if<std::int64_t>(&params[i])) {
        text[i] = std::to_string(*n);
        values[i] = text[i].c_str();
      } else if (const auto* s = std::get_if<std::string>(&params[i])) {
        values[i] = s->c_str();
      }
    }
    const std::string statement(sql);
    PGresult* res = libpq().PQexecParams(db_, statement.c_str(), static_cast<int>(params.size()),
                                         nullptr, values.data(), nullptr, nullptr, 0);
    const auto status = libpq().PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      const char* state = libpq().PQresultErrorField(res, PG_DIAG_SQLSTATE);
      constraint_ = state && std::string_view(state).starts_with("23");  // integrity violation
      retryable_ = state && std::string_view(state).starts_with("40");   // serialization, deadlock
      auto error = failure(res);
      libpq().PQclear(res);
      note_lost(error);
      return error;
    }
    std::vector<Row> rows;
    const int n = libpq().PQntuples(res);
    const int columns = libpq().PQnfields(res);
    rows.reserve(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) {
      Row row(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        if (!libpq().PQgetisnull(res, r, c)) {
          row[static_cast<std::size_t>(c)] =
              std::string(libpq().PQgetvalue(res, r, c),
                          static_cast<std::size_t>(libpq().PQgetlength(res, r, c)));
        }
      }
      rows.push_back(std::move(row));
    }
    libpq().PQclear(res);
    return rows;
  }

  Status exec_script(std::string_view sql) override {
    retryable_ = false;
    if (auto open = reopen_if_lost(); !open) return open.error();
    return exec_statement(sql);
  }

  Status exec_statement(std::string_view sql) {
    const std::string text(sql);
    PGresult* res = libpq().PQexec(db_, text.c_str());
    const auto status = libpq().PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      const char* state = libpq().PQresultErrorField(res, PG_DIAG_SQLSTATE);
      retryable_ = state && std::string_view(state).starts_with("40");
      auto error = failure(res);
      libpq().PQclear(res);
      note_lost(error);
      return error;
    }
    libpq().PQclear(res);
    return success();
  }

  // The failure of a statement, named. 23505 (a UNIQUE constraint: the name or port is taken)
  // and 40001 (a concurrent write won the serializable transaction, as when two creates of
  // one name race) are conflicts.
  common::Error failure(const PGresult* res) const {
    auto error = fail(name_ + ": " + trimmed(libpq().PQresultErrorMessage(res)));
    const char* state = libpq().PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state != nullptr &&
        (std::string_view(state) == "23505" || std::string_view(state) == "40001")) {
      error.kind = common::ErrorKind::kConflict;
    }
    return error;
  }

  Status begin() override {
    constexpr std::string_view kBegin = "BEGIN ISOLATION LEVEL SERIALIZABLE";
    auto s = exec_script(kBegin);
    if (!s && lost_) s = exec_script(kBegin);  // lost while idle: found out only now
    in_transaction_ = s.has_value();
    return s;
  }
  Status commit() override {
    committing_ = true;
    auto s = exec_script("COMMIT");
    committing_ = false;
    in_transaction_ = false;
    return s;
  }
  void rollback() override {
    in_transaction_ = false;
    if (libpq().PQstatus(db_) == CONNECTION_OK && libpq().PQtransactionStatus(db_) != PQTRANS_IDLE)
      libpq().PQclear(libpq().PQexec(db_, "ROLLBACK"));
  }
  // PostgreSQL checks its pages itself (and pg_amcheck does more); here: the server answers.
  Status check_integrity() override { return exec_script("SELECT 1"); }
  bool last_error_was_constraint() const override { return constraint_; }
  bool last_error_was_retryable() const override { return retryable_; }

 private:
  static std::string trimmed(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
  }

  // A connection found broken is opened again (PQreset, blocking: the store runs on the control
  // thread, never on the data path) before the next statement.
  Status reopen_if_lost() {
    if (libpq().PQstatus(db_) == CONNECTION_OK) {
      lost_ = false;
      return success();
    }
    libpq().PQreset(db_);
    if (libpq().PQstatus(db_) != CONNECTION_OK) {
      return fail(common::ErrorKind::kUnavailable,
                  name_ + ": the connection to the database was lost and cannot be opened again: " +
                      trimmed(libpq().PQerrorMessage(db_)));
    }
    lost_ = false;
    return configure();
  }

  // After a failed statement: when the connection itself broke, the failure says so (kind
  // unavailable). A transaction cut before its COMMIT may simply run again on a new connection
  // (nothing of it was committed); one cut during COMMIT may have committed, so it is not retried.
  void note_lost(common::Error& error) {
    if (libpq().PQstatus(db_) == CONNECTION_OK) return;
    lost_ = true;
    error.kind = common::ErrorKind::kUnavailable;
    if (in_transaction_ && !committing_) retryable_ = true;
  }

  PGconn* db_;
  std::string name_;
  bool constraint_ = false;
  bool retryable_ = false;
  bool lost_ = false;
  bool in_transaction_ = false;
  bool committing_ = false;
};

// libpq's message up to its first line break (it adds an indented hint after it).
std::string trimmed_message(const char* text) {
  std::string why = text ? text : "";
  why = why.substr(0, why.find('\n'));
  while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
  return why;
}

// A dead peer (a database host gone without a reset) is noticed within about 25 s instead of
// the system's two hours: the listening connection otherwise waits quietly forever.
void keep_alive(int fd) {
  const int on = 1, idle = 10, interval = 5, count = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

class PgChangeFeed : public ChangeFeed {
 public:
  PgChangeFeed(PGconn* db, std::string name, std::string channel)
      : db_(db), name_(std::move(name)), channel_(std::move(channel)) {}
  ~PgChangeFeed() override { libpq().PQfinish(db_); }
  PgChangeFeed(const PgChangeFeed&) = delete;
  PgChangeFeed& operator=(const PgChangeFeed&) = delete;

  int socket() const override { return libpq().PQsocket(db_); }

  Result<Want> connect_step() override {
    const Libpq& pq = libpq();
    if (!connected_) {
      switch (pq.PQconnectPoll(db_)) {
        case PGRES_POLLING_READING:
          return Want::kRead;
        case PGRES_POLLING_WRITING:
          return Want::kWrite;
        case PGRES_POLLING_OK:
          break;
        default:
          return fail(name_ + ": cannot connect: " + trimmed_message(pq.PQerrorMessage(db_)));
      }
      connected_ = true;
      if (socket() >= 0) keep_alive(socket());
      if (pq.PQsetnonblocking(db_, 1) != 0 ||
          pq.PQsendQuery(db_, ("LISTEN " + channel_).c_str()) != 1) {
        return fail(name_ + ": LISTEN " + channel_ + ": " +
                    trimmed_message(pq.PQerrorMessage(db_)));
      }
    } else if (pq.PQconsumeInput(db_) != 1) {
      return fail(name_ + ": LISTEN " + channel_ + ": " + trimmed_message(pq.PQerrorMessage(db_)));
    }
    const int flushed = pq.PQflush(db_);
    if (flushed < 0) return fail(name_ + ": " + trimmed_message(pq.PQerrorMessage(db_)));
    if (flushed == 1) return Want::kWrite;
    while (pq.PQisBusy(db_) == 0) {
      PGresult* res = pq.PQgetResult(db_);
      if (res == nullptr) return Want::kDone;  // LISTEN answered
      const auto status = pq.PQresultStatus(res);
      std::string why = status == PGRES_COMMAND_OK ? "" : pq.PQresultErrorMessage(res);
      pq.PQclear(res);
      if (status != PGRES_COMMAND_OK) {
        return fail(name_ + ": LISTEN " + channel_ + ": " + trimmed_message(why.c_str()));
      }
    }
    return Want::kRead;
  }

  Result<std::vector<std::string>> receive() override {
    const Libpq& pq = libpq();
    if (pq.PQconsumeInput(db_) != 1 || pq.PQstatus(db_) != CONNECTION_OK) {
      return fail(name_ + ": the listening connection was lost: " +
                  trimmed_message(pq.PQerrorMessage(db_)));
    }
    std::vector<std::string> payloads;
    while (PGnotify* n = pq.PQnotifies(db_)) {
      payloads.emplace_back(n->extra != nullptr ? n->extra : "");
      pq.PQfreemem(n);
    }
    // A result nobody asked for (an error the server sends before closing, say): read it so
    // that the connection's state stays clean.
    while (pq.PQisBusy(db_) == 0) {
      PGresult* res = pq.PQgetResult(db_);
      if (res == nullptr) break;
      pq.PQclear(res);
    }
    return payloads;
  }

 private:
  PGconn* db_;
  std::string name_;
  std::string channel_;
  bool connected_ = false;
};

}  // namespace

Result<std::unique_ptr<ChangeFeed>> start_change_feed(const std::string& url,
                                                      const std::string& channel) {
  const std::string name = redacted(url);
  if (!libpq().error.empty()) return fail(name + ": " + libpq().error);
  PGconn* db = libpq().PQconnectStart(url.c_str());
  if (!db) return fail(name + ": cannot connect: out of memory");
  if (libpq().PQstatus(db) == CONNECTION_BAD) {
    std::string why = trimmed_message(libpq().PQerrorMessage(db));
    libpq().PQfinish(db);
    return fail(name + ": cannot connect: " + why);
  }
  // The server's "terminating connection" notice would go to stderr as it is: the follower
  // logs the loss itself.
  libpq().PQsetNoticeProcessor(
      db, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<ChangeFeed>(std::make_unique<PgChangeFeed>(db, name, channel));
}

Result<std::unique_ptr<Connection>> open_postgres(const std::string& url) {
  const std::string name = redacted(url);
  if (!libpq().error.empty()) return fail(name + ": " + libpq().error);
  PGconn* db = libpq().PQconnectdb(url.c_str());
  if (!db) return fail(name + ": cannot connect: out of memory");
  if (libpq().PQstatus(db) != CONNECTION_OK) {
    std::string why = libpq().PQerrorMessage(db);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    libpq().PQfinish(db);
    return fail(name + ": cannot connect: " + why);
  }
  auto connection = std::make_unique<PgConnection>(db, name);
  if (auto s = connection->configure(); !s) return s.error();
  return std::unique_ptr<Connection>(std::move(connection));
}

}  // namespace tunnel::core::store
