#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/database.h"

namespace edgeloop::store {

/// One step of the schema's history. Applied steps are never edited; a change is a new step.
/// `sql` is written once for both dialects with two tokens the driver expands:
/// {{SERIAL}} (an auto-increment primary key) and {{BYTES}} (BLOB / BYTEA).
struct Migration {
  int version;
  std::string name;
  std::string sql;
};

/// The schema's history, in order.
const std::vector<Migration>& SchemaMigrations();

/// Applies every migration not yet recorded in `schema_migrations`, all in one transaction.
/// On PostgreSQL a transaction-scoped advisory lock serialises replicas starting together;
/// on SQLite the write lock does. Returns the schema version now in force. Fails, changing
/// nothing, when the database is newer than this binary knows.
absl::StatusOr<int> ApplyMigrations(Database& db);

/// The schema version recorded in the database; used by /readyz. An error before the first
/// migration ran (no schema_migrations table) or when the database cannot be queried.
absl::StatusOr<int> CurrentSchemaVersion(Database& db);

}  // namespace edgeloop::store
