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

/// The steps one component declares for the tables it owns (docs/architecture.md lists who
/// owns which). Version numbers are global: a new step takes the next number after the
/// highest any component uses.
struct ComponentMigrations {
  std::string component;
  std::vector<Migration> steps;
};

/// Steps up to this version predate per-component schemas: some of them created tables of
/// several components at once, so each of those components declares its part under the same
/// number and the parts run together as one step. Past it, every number belongs to one
/// component.
constexpr int kLastSharedStep = 9;

/// Merges the components' steps into the one ordered sequence ApplyMigrations runs.
/// INTERNAL when two components claim a number past kLastSharedStep, or one claims a number
/// twice.
absl::StatusOr<std::vector<Migration>> MergeMigrations(
    const std::vector<const ComponentMigrations*>& components);

/// The store's own tables: blobs and their chunks (schema_migrations is ApplyMigrations's).
const ComponentMigrations& BlobMigrations();

/// Applies every step of `schema` (MergeMigrations's result) not yet recorded in
/// `schema_migrations`, all in one transaction.
/// On PostgreSQL a transaction-scoped advisory lock serialises replicas starting together;
/// on SQLite the write lock does. Returns the schema version now in force. Fails, changing
/// nothing, when the database is newer than this binary knows.
absl::StatusOr<int> ApplyMigrations(Database& db, const std::vector<Migration>& schema);

/// The schema version recorded in the database; used by /readyz. An error before the first
/// migration ran (no schema_migrations table) or when the database cannot be queried.
absl::StatusOr<int> CurrentSchemaVersion(Database& db);

}  // namespace edgeloop::store
