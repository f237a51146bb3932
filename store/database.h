#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace edgeloop::store {

enum class Dialect { kSqlite, kPostgres };

/// Binary data, bound as BLOB (SQLite) or BYTEA (PostgreSQL).
struct Bytes {
  std::string data;
};

/// A statement parameter or a result cell. monostate is SQL NULL.
using Value = std::variant<std::monostate, int64_t, double, std::string, Bytes>;

/// The names of a result's columns, shared by its rows.
using ColumnNames = std::shared_ptr<const std::vector<std::string>>;

/// One result row, read by column name (`row.Int("version")`), so that adding a column to a
/// query or a table cannot shift what another reader gets. Accessors convert between the
/// representations the two drivers return (SQLite gives typed cells, PostgreSQL text), so
/// callers read columns the same way. An unknown name is a programming error: it aborts.
class Row {
 public:
  Row(ColumnNames names, std::vector<Value> cells)
      : names_(std::move(names)), cells_(std::move(cells)) {}
  bool IsNull(absl::string_view column) const;
  int64_t Int(absl::string_view column) const;  // NULL reads as 0
  double Real(absl::string_view column) const;
  std::string Text(absl::string_view column) const;  // NULL reads as ""
  std::string Blob(absl::string_view column) const;  // bytea/BLOB contents

 private:
  const Value& Cell(absl::string_view column) const;
  ColumnNames names_;
  std::vector<Value> cells_;
};
using Rows = std::vector<Row>;

/// A database transaction. Statements use `$1, $2, ...` placeholders in both dialects and are
/// always sent with bound parameters, never with values spliced into the SQL text.
/// Destroying an uncommitted transaction rolls it back. Not thread-safe.
/// A component's read methods take a `Reader` (the database, or the caller's transaction when
/// the read must see that transaction's writes or be consistent with them).
///
/// Errors: a unique-constraint violation is ALREADY_EXISTS; a serialisation failure or
/// deadlock is ABORTED (retry the whole transaction); a lost connection is UNAVAILABLE.
class Reader {
 public:
  virtual ~Reader() = default;
  virtual absl::StatusOr<Rows> Query(absl::string_view sql,
                                     const std::vector<Value>& params = {}) = 0;
};

class Transaction : public Reader {
 public:
  /// Runs a statement and returns the number of rows it changed.
  virtual absl::StatusOr<int64_t> Execute(absl::string_view sql,
                                          const std::vector<Value>& params = {}) = 0;
  /// Inserts `rows` (a value per column each) into `table` and returns what the statement's
  /// `suffix` (e.g. "ON CONFLICT DO NOTHING RETURNING id") returns: the way to write many rows
  /// at once. This default runs multi-row INSERTs (SQLite); PostgreSQL COPYs the rows into a
  /// temporary twin of the table and inserts from there in one statement.
  virtual absl::StatusOr<Rows> BulkInsert(absl::string_view table,
                                          const std::vector<std::string>& columns,
                                          const std::vector<std::vector<Value>>& rows,
                                          absl::string_view suffix);
  /// Tells every process listening on `channel` (ChangeFeed) `payload` (at most 7,999
  /// bytes) when this transaction commits, and nothing when it does not. On SQLite, nothing:
  /// one process serves it and hears its own changes in process.
  virtual absl::Status Publish(absl::string_view channel, absl::string_view payload);
  /// Runs several parameterless statements (schema changes).
  virtual absl::Status ExecuteScript(absl::string_view sql) = 0;
  virtual absl::Status Commit() = 0;
};

struct DatabaseOptions {
  /// `sqlite:///abs/path.db` or `postgresql://user@host:port/db?host=/socket/dir`.
  std::string url;
  /// Connections kept open. SQLite serialises writers itself; readers run in parallel (WAL).
  int pool_size = 8;
  /// How long a caller waits for a free connection before UNAVAILABLE.
  absl::Duration acquire_timeout = absl::Seconds(10);
  /// PostgreSQL: statements running longer are cancelled (DEADLINE_EXCEEDED). SQLite runs in
  /// process and waits for its write lock through busy_timeout instead.
  absl::Duration statement_timeout = absl::Seconds(30);
};

/// A pool of connections to one database. Thread-safe: every method may be called from
/// any thread; each transaction holds one pooled connection until it ends.
class Database : public Reader {
 public:

  /// Opens the database the URL names. Does not apply migrations (see migrations.h).
  static absl::StatusOr<std::unique_ptr<Database>> Open(const DatabaseOptions& options);

  virtual Dialect dialect() const = 0;
  /// Starts a transaction that may write. On SQLite this takes the write lock at once
  /// (BEGIN IMMEDIATE) so that two writers never deadlock on lock upgrade.
  virtual absl::StatusOr<std::unique_ptr<Transaction>> Begin() = 0;
  // Query() runs one read statement outside an explicit transaction.
  /// Cheap round trip used by /readyz.
  virtual absl::Status Ping() = 0;
};

/// Runs `body` in a transaction and commits it, retrying a few times when the database
/// reports a serialisation conflict (ABORTED). `body` must be safe to run again.
absl::Status RunInTransaction(Database& db, const std::function<absl::Status(Transaction&)>& body);

}  // namespace edgeloop::store
