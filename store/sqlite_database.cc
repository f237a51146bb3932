#include "store/sqlite_database.h"

#include <sqlite3.h>

#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "store/connection_pool_internal.h"

namespace edgeloop::store {
namespace {

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view context) {
  std::string message = absl::StrCat(context, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return absl::AlreadyExistsError(message);
      }
      return absl::FailedPreconditionError(message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::AbortedError(message);
    case SQLITE_FULL:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

/// One open SQLite handle plus its statement cache.
class Connection {
 public:
  ~Connection() {
    for (auto& [sql, prepared] : statements_) sqlite3_finalize(prepared.stmt);
    sqlite3_close_v2(db_);
  }

  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& path) {
    auto conn = std::unique_ptr<Connection>(new Connection());
    int rc =
        sqlite3_open_v2(path.c_str(), &conn->db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return SqliteError(conn->db_, rc, absl::StrCat("open ", path));
    // WAL lets readers run beside the one writer; FULL sync makes a commit survive power loss;
    // the busy timeout turns lock contention between pooled connections into waiting.
    sqlite3_busy_timeout(conn->db_, 30000);
    RETURN_IF_ERROR(
        conn->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                   "PRAGMA foreign_keys=ON;"));
    return conn;
  }

  absl::Status Exec(absl::string_view sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      absl::Status s = SqliteError(db_, rc, "exec");
      sqlite3_free(err);
      return s;
    }
    return absl::OkStatus();
  }

  /// Runs one statement with `$N` parameters; returns its rows and sets `changes`.
  absl::StatusOr<Rows> Run(absl::string_view sql, const std::vector<Value>& params,
                           int64_t* changes) {
    ASSIGN_OR_RETURN(const Prepared* prepared, Prepare(sql));
    sqlite3_stmt* stmt = prepared->stmt;
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    RETURN_IF_ERROR(Bind(*prepared, params));
    Rows rows;
    ColumnNames names;  // made once, on the first row
    while (true) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        absl::Status s = SqliteError(db_, sqlite3_extended_errcode(db_), "step");
        sqlite3_reset(stmt);
        return s;
      }
      int n = sqlite3_column_count(stmt);
      if (names == nullptr) {
        auto list = std::make_shared<std::vector<std::string>>();
        for (int c = 0; c < n; ++c) list->emplace_back(sqlite3_column_name(stmt, c));
        names = std::move(list);
      }
      std::vector<Value> cells;
      cells.reserve(n);
      for (int c = 0; c < n; ++c) {
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_INTEGER:
            cells.emplace_back(int64_t{sqlite3_column_int64(stmt, c)});
            break;
          case SQLITE_FLOAT:
            cells.emplace_back(sqlite3_column_double(stmt, c));
            break;
          case SQLITE_TEXT:
            cells.emplace_back(
                std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, c)),
                            sqlite3_column_bytes(stmt, c)));
            break;
          case SQLITE_BLOB: {
            const char* p = static_cast<const char*>(sqlite3_column_blob(stmt, c));
            cells.emplace_back(Bytes{std::string(p ? p : "", sqlite3_column_bytes(stmt, c))});
            break;
          }
          default:
            cells.emplace_back(std::monostate{});
        }
      }
      rows.emplace_back(names, std::move(cells));
    }
    if (changes != nullptr) *changes = sqlite3_changes64(db_);
    sqlite3_reset(stmt);
    return rows;
  }

  bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

  /// True when the statement only reads (sqlite3_stmt_readonly).
  absl::StatusOr<bool> ReadOnly(absl::string_view sql) {
    ASSIGN_OR_RETURN(const Prepared* prepared, Prepare(sql));
    return sqlite3_stmt_readonly(prepared->stmt) != 0;
  }

 private:
  Connection() = default;

  // A statement and, per SQLite parameter slot, the index of the value it takes.
  struct Prepared {
    sqlite3_stmt* stmt = nullptr;
    std::vector<size_t> value_of_slot;  // 1-based $N, 0: not a $N name
  };

  // SQLite treats "$1" as a named parameter; its number says which value it takes, so the
  // same SQL text works for both drivers. The names are read once, at prepare:
  // sqlite3_bind_parameter_name walks a list, so asking per slot on every run makes binding
  // a multi-row insert quadratic in its parameters.
  absl::StatusOr<const Prepared*> Prepare(absl::string_view sql) {
    std::string key(sql);
    auto it = statements_.find(key);
    if (it != statements_.end()) return &it->second;
    Prepared prepared;
    int rc = sqlite3_prepare_v3(db_, key.c_str(), static_cast<int>(key.size()),
                                SQLITE_PREPARE_PERSISTENT, &prepared.stmt, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, absl::StrCat("prepare \"", sql, "\""));
    const int count = sqlite3_bind_parameter_count(prepared.stmt);
    prepared.value_of_slot.resize(count + 1, 0);
    for (int i = 1; i <= count; ++i) {
      const char* name = sqlite3_bind_parameter_name(prepared.stmt, i);
      size_t index = 0;
      if (name != nullptr && name[0] == '$' && absl::SimpleAtoi(name + 1, &index)) {
        prepared.value_of_slot[i] = index;
      }
    }
    return &statements_.emplace(std::move(key), std::move(prepared)).first->second;
  }

  absl::Status Bind(const Prepared& prepared, const std::vector<Value>& params) {
    sqlite3_stmt* stmt = prepared.stmt;
    const int count = static_cast<int>(prepared.value_of_slot.size()) - 1;
    for (int i = 1; i <= count; ++i) {
      const size_t index = prepared.value_of_slot[i];
      if (index == 0 || index > params.size()) {
        const char* name = sqlite3_bind_parameter_name(stmt, i);
        return absl::InternalError(absl::StrCat("statement parameter ", name ? name : "?",
                                                " has no value (", params.size(), " given)"));
      }
      const Value& v = params[index - 1];
      int rc = SQLITE_OK;
      if (auto* n = std::get_if<int64_t>(&v)) {
        rc = sqlite3_bind_int64(stmt, i, *n);
      } else if (auto* d = std::get_if<double>(&v)) {
        rc = sqlite3_bind_double(stmt, i, *d);
      } else if (auto* s = std::get_if<std::string>(&v)) {
        rc = sqlite3_bind_text64(stmt, i, s->data(), s->size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      } else if (auto* b = std::get_if<Bytes>(&v)) {
        rc = sqlite3_bind_blob64(stmt, i, b->data.data(), b->data.size(), SQLITE_TRANSIENT);
      } else {
        rc = sqlite3_bind_null(stmt, i);
      }
      if (rc != SQLITE_OK) return SqliteError(db_, rc, "bind");
    }
    return absl::OkStatus();
  }

  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, Prepared> statements_;
};

using Pool = ConnectionPool<Connection>;

class SqliteTransaction final : public Transaction {
 public:
  SqliteTransaction(Pool::Lease lease, std::unique_lock<std::mutex> writer)
      : writer_(std::move(writer)), lease_(std::move(lease)) {}
  ~SqliteTransaction() override {
    if (!done_ && lease_->in_transaction()) {
      if (!lease_->Exec("ROLLBACK").ok()) lease_.Discard();
    }
  }
  absl::StatusOr<Rows> Query(absl::string_view sql, const std::vector<Value>& params) override {
    return lease_->Run(sql, params, nullptr);
  }
  absl::StatusOr<int64_t> Execute(absl::string_view sql,
                                  const std::vector<Value>& params) override {
    int64_t changes = 0;
    RETURN_IF_ERROR(lease_->Run(sql, params, &changes).status());
    return changes;
  }
  absl::Status ExecuteScript(absl::string_view sql) override { return lease_->Exec(sql); }
  absl::Status Commit() override {
    absl::Status s = lease_->Exec("COMMIT");
    done_ = s.ok();
    return s;
  }

 private:
  std::unique_lock<std::mutex> writer_;  // released after the lease's ROLLBACK/COMMIT
  Pool::Lease lease_;
  bool done_ = false;
};

class SqliteDatabaseImpl final : public Database {
 public:
  SqliteDatabaseImpl(std::string path, const DatabaseOptions& options)
      : path_(std::move(path)),
        pool_(options.pool_size, options.acquire_timeout, [this] { return Connection::Open(path_); }) {}

  Dialect dialect() const override { return Dialect::kSqlite; }

  // SQLite has one writer at a time. Writers of this process queue on a mutex rather than
  // on SQLite's busy handler, which polls with sleeps of up to 100 ms and so turns contention
  // into long tail latency. (Other processes on the same file still meet the busy timeout.)
  absl::StatusOr<std::unique_ptr<Transaction>> Begin() override {
    ASSIGN_OR_RETURN(Pool::Lease lease, pool_.Acquire());
    std::unique_lock writer(write_mu_);
    RETURN_IF_ERROR(lease->Exec("BEGIN IMMEDIATE"));
    return std::make_unique<SqliteTransaction>(std::move(lease), std::move(writer));
  }

  absl::StatusOr<Rows> Query(absl::string_view sql, const std::vector<Value>& params) override {
    ASSIGN_OR_RETURN(Pool::Lease lease, pool_.Acquire());
    ASSIGN_OR_RETURN(bool read_only, lease->ReadOnly(sql));
    if (read_only) return lease->Run(sql, params, nullptr);
    std::lock_guard writer(write_mu_);
    return lease->Run(sql, params, nullptr);
  }

  absl::Status Ping() override { return Query("SELECT 1", {}).status(); }

 private:
  std::string path_;
  Pool pool_;
  std::mutex write_mu_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> SqliteDatabase::Create(const DatabaseOptions& options) {
  std::string path = options.url.substr(absl::string_view("sqlite://").size());
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("sqlite URL needs an absolute path (sqlite:///abs/path.db): ", options.url));
  }
  auto db = std::make_unique<SqliteDatabaseImpl>(path, options);
  // Open one connection now so a bad path fails at start, not at the first request.
  RETURN_IF_ERROR(db->Ping());
  return std::unique_ptr<Database>(std::move(db));
}

}  // namespace edgeloop::store
