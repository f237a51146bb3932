#include "ci/compile_jobs.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace edgeloop::ci {
namespace {

constexpr char kColumns[] =
    "id, model_id, version, target, state, attempts, lease_owner, lease_expires_ms, error, "
    "reason";

CompileJob FromRow(const store::Row& row) {
  CompileJob job;
  job.id = row.Int("id");
  job.model_id = row.Int("model_id");
  job.version = row.Int("version");
  job.target = row.Text("target");
  job.state = row.Text("state");
  job.attempts = row.Int("attempts");
  job.lease_owner = row.Text("lease_owner");
  job.lease_expires_ms = row.Int("lease_expires_ms");
  job.error = row.Text("error");
  job.reason = row.Text("reason");
  return job;
}

}  // namespace

absl::Status CompileJobs::Queue(store::Transaction& tx, int64_t model_id, int64_t version,
                                const std::string& target, int64_t now_ms,
                                const std::string& reason) {
  return tx
      .Execute("INSERT INTO compile_jobs (model_id, version, target, state, attempts, "
               "lease_owner, lease_expires_ms, error, created_at_ms, updated_at_ms, reason) "
               "VALUES ($1, $2, $3, 'QUEUED', 0, '', 0, '', $4, $4, $5) ON CONFLICT DO NOTHING",
               {model_id, version, target, now_ms, reason})
      .status();
}

absl::StatusOr<bool> CompileJobs::Exists(store::Reader& db, int64_t model_id, int64_t version,
                                         const std::string& target) {
  ASSIGN_OR_RETURN(store::Rows rows,
                   db.Query("SELECT id FROM compile_jobs WHERE model_id = $1 AND version = $2 AND "
                            "target = $3",
                            {model_id, version, target}));
  return !rows.empty();
}

absl::StatusOr<std::optional<CompileJob>> CompileJobs::Claim(store::Transaction& tx,
                                                             store::Dialect dialect,
                                                             const std::string& worker,
                                                             int64_t now_ms, int64_t lease_ms) {
  ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.Query(absl::StrCat("SELECT id FROM compile_jobs WHERE state = 'QUEUED' OR (state = "
                            "'RUNNING' AND lease_expires_ms < $1) ORDER BY id LIMIT 1",
                            dialect == store::Dialect::kPostgres ? " FOR UPDATE SKIP LOCKED" : ""),
               {now_ms}));
  if (rows.empty()) return std::nullopt;
  ASSIGN_OR_RETURN(
      store::Rows claimed,
      tx.Query(absl::StrCat("UPDATE compile_jobs SET state = 'RUNNING', attempts = attempts + 1, "
                            "lease_owner = $2, lease_expires_ms = $3, updated_at_ms = $4 WHERE "
                            "id = $1 RETURNING ",
                            kColumns),
               {rows[0].Int("id"), worker, now_ms + lease_ms, now_ms}));
  if (claimed.empty()) return std::nullopt;
  return FromRow(claimed[0]);
}

absl::StatusOr<bool> CompileJobs::Complete(store::Transaction& tx, int64_t id,
                                           const std::string& worker, int64_t now_ms) {
  ASSIGN_OR_RETURN(int64_t changed,
                   tx.Execute("UPDATE compile_jobs SET state = 'DONE', error = '', "
                              "updated_at_ms = $3 WHERE id = $1 AND lease_owner = $2 AND "
                              "state = 'RUNNING'",
                              {id, worker, now_ms}));
  return changed == 1;
}

absl::Status CompileJobs::Release(store::Transaction& tx, int64_t id, const std::string& worker,
                                  bool final, const std::string& error, int64_t now_ms) {
  return tx
      .Execute("UPDATE compile_jobs SET state = $3, error = $4, lease_owner = '', "
               "updated_at_ms = $5 WHERE id = $1 AND lease_owner = $2",
               {id, worker, std::string(final ? "FAILED" : "QUEUED"), error, now_ms})
      .status();
}

absl::StatusOr<int64_t> CompileJobs::Unfinished(store::Reader& db, int64_t model_id,
                                                int64_t version) {
  ASSIGN_OR_RETURN(store::Rows rows,
                   db.Query("SELECT COUNT(*) AS jobs FROM compile_jobs WHERE model_id = $1 AND "
                            "version = $2 AND state <> 'DONE'",
                            {model_id, version}));
  return rows[0].Int("jobs");
}

absl::StatusOr<CompileJob> CompileJobs::Get(store::Reader& db, int64_t id) {
  ASSIGN_OR_RETURN(store::Rows rows,
                   db.Query(absl::StrCat("SELECT ", kColumns, " FROM compile_jobs WHERE id = $1"),
                            {id}));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat("no compile job ", id));
  return FromRow(rows[0]);
}

absl::StatusOr<std::vector<v1::CompileJob>> CompileJobs::ForVersion(store::Reader& db,
                                                                    int64_t model_id,
                                                                    int64_t version) {
  ASSIGN_OR_RETURN(store::Rows rows,
                   db.Query(absl::StrCat("SELECT ", kColumns,
                                         " FROM compile_jobs WHERE model_id = $1 AND "
                                         "version = $2 ORDER BY target"),
                            {model_id, version}));
  std::vector<v1::CompileJob> jobs;
  for (const store::Row& row : rows) {
    const CompileJob job = FromRow(row);
    v1::CompileJob& out = jobs.emplace_back();
    out.set_target(job.target);
    out.set_state(job.state);
    out.set_attempts(static_cast<int32_t>(job.attempts));
    out.set_error(job.error);
    out.set_reason(job.reason);
  }
  return jobs;
}

absl::StatusOr<std::vector<CompileJob>> CompileJobs::Running(store::Reader& db) {
  ASSIGN_OR_RETURN(store::Rows rows,
                   db.Query(absl::StrCat("SELECT ", kColumns,
                                         " FROM compile_jobs WHERE state = 'RUNNING' ORDER BY id")));
  std::vector<CompileJob> jobs;
  for (const store::Row& row : rows) jobs.push_back(FromRow(row));
  return jobs;
}

absl::StatusOr<bool> CompileJobs::Requeue(store::Transaction& tx, int64_t id,
                                          const std::string& owner) {
  ASSIGN_OR_RETURN(int64_t changed,
                   tx.Execute("UPDATE compile_jobs SET state = 'QUEUED', lease_owner = '' WHERE "
                              "id = $1 AND lease_owner = $2 AND state = 'RUNNING'",
                              {id, owner}));
  return changed == 1;
}

absl::StatusOr<int64_t> CompileJobs::LockEventOffset(store::Transaction& tx,
                                                     const std::string& consumer) {
  ASSIGN_OR_RETURN(store::Rows offset,
                   tx.Query("UPDATE event_consumers SET last_sequence = last_sequence "
                            "WHERE name = $1 RETURNING last_sequence",
                            {consumer}));
  if (!offset.empty()) return offset[0].Int("last_sequence");
  RETURN_IF_ERROR(
      tx.Execute("INSERT INTO event_consumers (name, last_sequence) VALUES ($1, 0)", {consumer})
          .status());
  return 0;
}

absl::Status CompileJobs::SetEventOffset(store::Transaction& tx, const std::string& consumer,
                                         int64_t sequence) {
  return tx
      .Execute("UPDATE event_consumers SET last_sequence = $2 WHERE name = $1",
               {consumer, sequence})
      .status();
}

}  // namespace edgeloop::ci
