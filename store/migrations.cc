#include "store/migrations.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/logging.h"
#include "common/status.h"

namespace edgeloop::store {
namespace {

// Arbitrary constant that names "edgeloop schema migration" among advisory locks.
constexpr int64_t kMigrationLockKey = 0x6564676c6f6f70;  // "edgloop"

std::string Expand(const std::string& sql, Dialect dialect) {
  if (dialect == Dialect::kSqlite) {
    return absl::StrReplaceAll(
        sql, {{"{{SERIAL}}", "INTEGER PRIMARY KEY AUTOINCREMENT"}, {"{{BYTES}}", "BLOB"}});
  }
  return absl::StrReplaceAll(sql,
                             {{"{{SERIAL}}", "BIGSERIAL PRIMARY KEY"}, {"{{BYTES}}", "BYTEA"}});
}

}  // namespace

const ComponentMigrations& BlobMigrations() {
  static const auto* migrations = new ComponentMigrations{"store", {
      {3, "blobs", R"sql(
CREATE TABLE blobs (
  digest TEXT PRIMARY KEY,
  size BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL
);
CREATE TABLE blob_chunks (
  digest TEXT NOT NULL,
  seq BIGINT NOT NULL,
  data {{BYTES}} NOT NULL,
  PRIMARY KEY (digest, seq)
);
)sql"},
  }};
  return *migrations;
}

absl::StatusOr<std::vector<Migration>> MergeMigrations(
    const std::vector<const ComponentMigrations*>& components) {
  // version → (the merged step, the components that contributed to it)
  std::map<int, std::pair<Migration, std::vector<std::string>>> merged;
  for (const ComponentMigrations* component : components) {
    std::set<int> own;
    for (const Migration& step : component->steps) {
      if (!own.insert(step.version).second) {
        return absl::InternalError(absl::StrCat("component ", component->component,
                                                " declares migration ", step.version, " twice"));
      }
      auto [it, fresh] = merged.try_emplace(step.version, step, std::vector<std::string>{});
      if (!fresh) {
        if (step.version > kLastSharedStep) {
          return absl::InternalError(absl::StrCat(
              "migration ", step.version, " is declared by both ", it->second.second.front(),
              " and ", component->component, "; give the newer one the next free number"));
        }
        it->second.first.name += "+" + step.name;
        it->second.first.sql += step.sql;
      }
      it->second.second.push_back(component->component);
    }
  }
  std::vector<Migration> schema;
  for (auto& [version, step] : merged) schema.push_back(std::move(step.first));
  return schema;
}

absl::StatusOr<int> CurrentSchemaVersion(Database& db) {
  ASSIGN_OR_RETURN(Rows rows,
                   db.Query("SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations", {}));
  return static_cast<int>(rows[0].Int("version"));
}

absl::StatusOr<int> ApplyMigrations(Database& db, const std::vector<Migration>& schema) {
  if (schema.empty()) return absl::InvalidArgumentError("no migrations to apply");
  int current = 0;
  std::vector<std::string> applied;
  RETURN_IF_ERROR(RunInTransaction(db, [&](Transaction& tx) -> absl::Status {
    applied.clear();
    if (db.dialect() == Dialect::kPostgres) {
      // A schema change on a big table may run long, and a replica waits here for another's:
      // neither is a runaway statement.
      RETURN_IF_ERROR(tx.ExecuteScript("SET LOCAL statement_timeout = 0"));
      RETURN_IF_ERROR(tx.Query("SELECT pg_advisory_xact_lock($1)", {kMigrationLockKey}).status());
    }
    RETURN_IF_ERROR(tx.ExecuteScript(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)"));
    ASSIGN_OR_RETURN(Rows rows,
                     tx.Query("SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations"));
    current = static_cast<int>(rows[0].Int("version"));
    const auto& all = schema;
    if (current > all.back().version) {
      return absl::FailedPreconditionError(
          absl::StrCat("database schema version ", current, " is newer than this binary supports (",
                       all.back().version, "); upgrade edgeloop-server"));
    }
    for (const Migration& m : all) {
      if (m.version <= current) continue;
      RETURN_IF_ERROR(tx.ExecuteScript(Expand(m.sql, db.dialect())));
      RETURN_IF_ERROR(
          tx.Execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
                {int64_t{m.version}, m.name, absl::ToUnixMillis(absl::Now())})
              .status());
      applied.push_back(m.name);
      current = m.version;
    }
    return absl::OkStatus();
  }));
  for (const std::string& name : applied)
    Log(LogLevel::kInfo, "applied migration", {{"name", name}});
  return current;
}

}  // namespace edgeloop::store
