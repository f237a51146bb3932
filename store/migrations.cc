#include "store/migrations.h"

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

const std::vector<Migration>& SchemaMigrations() {
  static const auto* migrations = new std::vector<Migration>{
      {1, "registry", R"sql(
CREATE TABLE models (
  id {{SERIAL}},
  name TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL,
  labels TEXT NOT NULL,
  next_version BIGINT NOT NULL DEFAULT 1,
  created_at_ms BIGINT NOT NULL,
  created_by TEXT NOT NULL
);
CREATE TABLE model_versions (
  model_id BIGINT NOT NULL REFERENCES models(id),
  version BIGINT NOT NULL,
  onnx_digest TEXT NOT NULL,
  onnx_size BIGINT NOT NULL,
  status TEXT NOT NULL,
  status_message TEXT NOT NULL,
  details TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  PRIMARY KEY (model_id, version)
);
CREATE TABLE aliases (
  model_id BIGINT NOT NULL REFERENCES models(id),
  alias TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL,
  updated_by TEXT NOT NULL,
  PRIMARY KEY (model_id, alias),
  FOREIGN KEY (model_id, version) REFERENCES model_versions(model_id, version)
);
CREATE TABLE alias_history (
  id {{SERIAL}},
  model_id BIGINT NOT NULL REFERENCES models(id),
  alias TEXT NOT NULL,
  from_version BIGINT NOT NULL,
  to_version BIGINT NOT NULL,
  actor TEXT NOT NULL,
  at_ms BIGINT NOT NULL
);
CREATE INDEX alias_history_by_alias ON alias_history (model_id, alias, id);
CREATE TABLE registry_events (
  sequence BIGINT PRIMARY KEY,
  type TEXT NOT NULL,
  model TEXT NOT NULL,
  version BIGINT NOT NULL,
  alias TEXT NOT NULL,
  actor TEXT NOT NULL,
  at_ms BIGINT NOT NULL
);
CREATE TABLE registry_event_counter (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_sequence BIGINT NOT NULL
);
INSERT INTO registry_event_counter (id, last_sequence) VALUES (1, 0);
)sql"},
      {2, "api_tokens", R"sql(
CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  secret_hash TEXT NOT NULL UNIQUE,
  created_at_ms BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  revoked_at_ms BIGINT NOT NULL
);
)sql"},
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
      {4, "fleet", R"sql(
CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  labels TEXT NOT NULL,
  max_uses BIGINT NOT NULL,
  uses BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  revoked_at_ms BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  created_by TEXT NOT NULL
);
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  serial TEXT NOT NULL,
  labels TEXT NOT NULL,
  profile TEXT NOT NULL,
  profile_hash TEXT NOT NULL,
  target TEXT NOT NULL,
  arch TEXT NOT NULL,
  ram_mb BIGINT NOT NULL,
  storage_mb BIGINT NOT NULL,
  cores BIGINT NOT NULL,
  accel TEXT NOT NULL,
  status TEXT NOT NULL,
  state TEXT NOT NULL,
  enrollment_token_id TEXT NOT NULL,
  cert_expires_at_ms BIGINT NOT NULL,
  enrolled_at_ms BIGINT NOT NULL,
  last_seen_ms BIGINT NOT NULL,
  generation BIGINT NOT NULL
);
CREATE INDEX devices_by_target ON devices (target, status);
)sql"},
      {5, "compile_pipeline", R"sql(
CREATE TABLE compile_jobs (
  id {{SERIAL}},
  model_id BIGINT NOT NULL REFERENCES models(id),
  version BIGINT NOT NULL,
  target TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts BIGINT NOT NULL,
  lease_owner TEXT NOT NULL,
  lease_expires_ms BIGINT NOT NULL,
  error TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL,
  UNIQUE (model_id, version, target)
);
CREATE INDEX compile_jobs_by_state ON compile_jobs (state, id);
CREATE TABLE artifacts (
  model_id BIGINT NOT NULL REFERENCES models(id),
  version BIGINT NOT NULL,
  target TEXT NOT NULL,
  backend TEXT NOT NULL,
  module_digest TEXT NOT NULL,
  module_size BIGINT NOT NULL,
  manifest TEXT NOT NULL,
  signature TEXT NOT NULL,
  validation TEXT NOT NULL,
  compile_seconds DOUBLE PRECISION NOT NULL,
  created_at_ms BIGINT NOT NULL,
  PRIMARY KEY (model_id, version, target)
);
CREATE TABLE event_consumers (
  name TEXT PRIMARY KEY,
  last_sequence BIGINT NOT NULL
);
)sql"},
      {6, "compile_reasons", R"sql(
ALTER TABLE compile_jobs ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE artifacts ADD COLUMN reason TEXT NOT NULL DEFAULT '';
)sql"},
      {7, "assignments", R"sql(
CREATE TABLE assignments (
  id {{SERIAL}},
  model_id BIGINT NOT NULL REFERENCES models(id),
  selector TEXT NOT NULL,
  device_id TEXT NOT NULL,
  version BIGINT NOT NULL,
  alias TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL
);
CREATE TABLE desired_state (
  id INTEGER PRIMARY KEY,
  generation BIGINT NOT NULL
);
INSERT INTO desired_state (id, generation) VALUES (1, 0);
CREATE INDEX artifacts_by_module ON artifacts (module_digest);
)sql"},
      // A sync reads the device's own assignments and the selector ones, not every device's.
      {8, "assignments_by_device", R"sql(
CREATE INDEX assignments_by_device ON assignments (device_id, id);
CREATE INDEX assignments_with_selector ON assignments (id) WHERE selector <> '';
)sql"},
      // The key a device enrolled with: a retried Enroll (same token, key and serial) whose
      // answer was lost finds its device instead of spending another use.
      {9, "devices_enrollment_key", R"sql(
ALTER TABLE devices ADD COLUMN enrollment_key TEXT NOT NULL DEFAULT '';
CREATE INDEX devices_by_enrollment ON devices (enrollment_token_id, enrollment_key);
)sql"},
  };
  return *migrations;
}

absl::StatusOr<int> CurrentSchemaVersion(Database& db) {
  ASSIGN_OR_RETURN(Rows rows,
                   db.Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {}));
  return static_cast<int>(rows[0].Int(0));
}

absl::StatusOr<int> ApplyMigrations(Database& db) {
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
                     tx.Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
    current = static_cast<int>(rows[0].Int(0));
    const auto& all = SchemaMigrations();
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
