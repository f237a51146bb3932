#include "store/postgres_database.h"

#include <optional>
#include <pqxx/pqxx>
#include <pqxx/tablewriter>
#include <string>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "common/status.h"
#include "store/connection_pool_internal.h"

namespace edgeloop::store {
namespace {

struct PgConnection {
  PgConnection(const std::string& url, absl::Duration statement_timeout) : conn(url) {
    // No statement holds a connection (and its locks) for ever: a runaway query is cancelled
    // and its caller told, instead of the pool draining one stuck request at a time.
    conn.set_variable("statement_timeout",
                      std::to_string(absl::ToInt64Milliseconds(statement_timeout)));
  }
  pqxx::connection conn;
  std::unordered_set<std::string> prepared;
};

using Pool = ConnectionPool<PgConnection>;

/// Translates a libpqxx exception into a Status; `broken` is set when the connection is gone.
absl::Status FromException(const std::exception& e, bool* broken) {
  *broken = false;
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    *broken = true;
    return absl::UnavailableError(absl::StrCat("postgresql connection lost: ", e.what()));
  }
  if (dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr) {
    return absl::AlreadyExistsError(e.what());
  }
  if (dynamic_cast<const pqxx::serialization_failure*>(&e) != nullptr ||
      dynamic_cast<const pqxx::deadlock_detected*>(&e) != nullptr) {
    return absl::AbortedError(e.what());
  }
  if (dynamic_cast<const pqxx::disk_full*>(&e) != nullptr) {
    return absl::UnavailableError(e.what());
  }
  if (dynamic_cast<const pqxx::integrity_constraint_violation*>(&e) != nullptr) {
    return absl::FailedPreconditionError(e.what());
  }
  if (auto* sql = dynamic_cast<const pqxx::sql_error*>(&e);
      sql != nullptr && sql->sqlstate() == "57014") {  // query_canceled: statement_timeout
    return absl::DeadlineExceededError(
        absl::StrCat("postgresql statement took longer than its timeout: ", e.what()));
  }
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    *broken = true;
    return absl::UnavailableError(absl::StrCat("commit outcome unknown: ", e.what()));
  }
  return absl::InternalError(absl::StrCat("postgresql: ", e.what()));
}

std::vector<std::optional<std::string>> ToParams(const std::vector<Value>& params) {
  std::vector<std::optional<std::string>> out;
  out.reserve(params.size());
  for (const Value& v : params) {
    if (auto* n = std::get_if<int64_t>(&v)) {
      out.emplace_back(std::to_string(*n));
    } else if (auto* d = std::get_if<double>(&v)) {
      out.emplace_back(absl::StrCat(*d));
    } else if (auto* s = std::get_if<std::string>(&v)) {
      out.emplace_back(*s);
    } else if (auto* b = std::get_if<Bytes>(&v)) {
      // bytea in its text input form; the value still travels as a bound parameter.
      out.emplace_back(absl::StrCat("\\x", HexEncode(b->data)));
    } else {
      out.emplace_back(std::nullopt);
    }
  }
  return out;
}

Rows ToRows(const pqxx::result& result) {
  Rows rows;
  rows.reserve(result.size());
  auto names = std::make_shared<std::vector<std::string>>();
  for (pqxx::row::size_type c = 0; c < result.columns(); ++c) {
    names->emplace_back(result.column_name(c));
  }
  const ColumnNames shared = std::move(names);
  for (const pqxx::row& r : result) {
    std::vector<Value> cells;
    cells.reserve(r.size());
    for (const pqxx::field& f : r) {
      if (f.is_null()) {
        cells.emplace_back(std::monostate{});
      } else {
        cells.emplace_back(std::string(f.c_str(), f.size()));
      }
    }
    rows.emplace_back(shared, std::move(cells));
  }
  return rows;
}

/// Runs a statement as a prepared statement on `conn`, preparing it on first use.
pqxx::result RunPrepared(PgConnection& conn, pqxx::transaction_base& tx, absl::string_view sql,
                         const std::vector<Value>& params) {
  std::string name = "s" + Sha256Hex(sql).substr(0, 16);
  if (conn.prepared.insert(name).second) conn.conn.prepare(name, std::string(sql));
  auto values = ToParams(params);
  return tx.exec_prepared(name, pqxx::prepare::make_dynamic_params(values));
}

class PostgresTransaction final : public Transaction {
 public:
  explicit PostgresTransaction(Pool::Lease lease)
      : lease_(std::move(lease)), work_(std::make_unique<pqxx::work>(lease_->conn)) {}
  ~PostgresTransaction() override {
    try {
      work_.reset();  // aborts when not committed
    } catch (const std::exception&) {
      lease_.Discard();
    }
    if (broken_) lease_.Discard();
  }

  absl::StatusOr<Rows> Query(absl::string_view sql, const std::vector<Value>& params) override {
    try {
      return ToRows(RunPrepared(*lease_, *work_, sql, params));
    } catch (const std::exception& e) {
      return FromException(e, &broken_);
    }
  }
  absl::StatusOr<int64_t> Execute(absl::string_view sql,
                                  const std::vector<Value>& params) override {
    try {
      return static_cast<int64_t>(RunPrepared(*lease_, *work_, sql, params).affected_rows());
    } catch (const std::exception& e) {
      return FromException(e, &broken_);
    }
  }
  absl::StatusOr<Rows> BulkInsert(absl::string_view table, const std::vector<std::string>& columns,
                                  const std::vector<std::vector<Value>>& rows,
                                  absl::string_view suffix) override {
    // COPY cannot resolve conflicts or return rows: it fills a temporary twin of the table
    // (one per connection, emptied at commit), from which one INSERT ... SELECT takes them.
    try {
      const std::string twin = absl::StrCat(table, "_bulk");
      const std::string list = absl::StrJoin(columns, ", ");
      work_->exec(absl::StrCat("CREATE TEMPORARY TABLE IF NOT EXISTS ", twin, " (LIKE ", table,
                               ") ON COMMIT DELETE ROWS"));
      work_->exec(absl::StrCat("TRUNCATE ", twin));
      {
        // libpqxx 6.4's stream_to takes only tuples; for rows whose width is known at run time
        // its COPY writer is tablewriter (deprecated there in favour of stream_to, which takes
        // containers from 7.0 on).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        // Its null marker defaults to "", which would turn every empty string into NULL; a NUL
        // byte, which no PostgreSQL text holds, stands for it instead.
        pqxx::tablewriter copy(*work_, twin, columns.begin(), columns.end(), std::string(1, '\0'));
#pragma GCC diagnostic pop
        std::vector<std::string> fields;
        for (const std::vector<Value>& row : rows) {
          fields.clear();
          for (std::optional<std::string>& f : ToParams(row)) {
            // Every column bulk-loaded is NOT NULL; an absent value would be refused anyway.
            fields.push_back(f.has_value() ? std::move(*f) : std::string(1, '\0'));
          }
          copy.insert(fields.begin(), fields.end());
        }
        copy.complete();
      }
      return ToRows(work_->exec(absl::StrCat("INSERT INTO ", table, " (", list, ") SELECT ", list,
                                             " FROM ", twin, " ", suffix)));
    } catch (const std::exception& e) {
      return FromException(e, &broken_);
    }
  }
  absl::Status Publish(absl::string_view channel, absl::string_view payload) override {
    // NOTIFY is transactional: delivered at commit, dropped on rollback, and a payload
    // repeated within one transaction is delivered once.
    return Query("SELECT pg_notify($1, $2)", {std::string(channel), std::string(payload)})
        .status();
  }
  absl::Status ExecuteScript(absl::string_view sql) override {
    try {
      work_->exec(std::string(sql));
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return FromException(e, &broken_);
    }
  }
  absl::Status Commit() override {
    try {
      work_->commit();
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return FromException(e, &broken_);
    }
  }

 private:
  Pool::Lease lease_;
  std::unique_ptr<pqxx::work> work_;
  bool broken_ = false;
};

class PostgresDatabaseImpl final : public Database {
 public:
  explicit PostgresDatabaseImpl(const DatabaseOptions& options)
      : url_(options.url),
        statement_timeout_(options.statement_timeout),
        pool_(options.pool_size, options.acquire_timeout,
              [this]() -> absl::StatusOr<std::unique_ptr<PgConnection>> {
                try {
                  return std::make_unique<PgConnection>(url_, statement_timeout_);
                } catch (const std::exception& e) {
                  return absl::UnavailableError(
                      absl::StrCat("cannot connect to postgresql: ", e.what()));
                }
              }) {}

  Dialect dialect() const override { return Dialect::kPostgres; }

  absl::StatusOr<std::unique_ptr<Transaction>> Begin() override {
    ASSIGN_OR_RETURN(Pool::Lease lease, pool_.Acquire());
    try {
      return std::unique_ptr<Transaction>(new PostgresTransaction(std::move(lease)));
    } catch (const std::exception& e) {
      bool broken = false;
      return FromException(e, &broken);
    }
  }

  absl::StatusOr<Rows> Query(absl::string_view sql, const std::vector<Value>& params) override {
    ASSIGN_OR_RETURN(Pool::Lease lease, pool_.Acquire());
    try {
      pqxx::nontransaction tx(lease->conn);
      return ToRows(RunPrepared(*lease, tx, sql, params));
    } catch (const std::exception& e) {
      bool broken = false;
      absl::Status s = FromException(e, &broken);
      if (broken) lease.Discard();
      return s;
    }
  }

  absl::Status Ping() override { return Query("SELECT 1", {}).status(); }

 private:
  std::string url_;
  absl::Duration statement_timeout_;
  Pool pool_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> PostgresDatabase::Create(const DatabaseOptions& options) {
  auto db = std::make_unique<PostgresDatabaseImpl>(options);
  RETURN_IF_ERROR(db->Ping());
  return std::unique_ptr<Database>(std::move(db));
}

}  // namespace edgeloop::store
