#include "server/ci/compile_pipeline.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "compiler/toolchain.h"
#include "fleet/assignments.h"
#include "registry/registry.h"
#include "edgeloop/v1/registry.pb.h"

namespace edgeloop::server {
namespace {

namespace fs = std::filesystem;
constexpr char kPlanner[] = "compile-planner";

// Queues building `version` of a model for `target` (nothing when that job exists already).
absl::Status QueueJob(store::Transaction& tx, int64_t model_id, int64_t version,
                      const std::string& target, int64_t now, const std::string& reason) {
  return tx
      .Execute("INSERT INTO compile_jobs (model_id, version, target, state, attempts, "
               "lease_owner, lease_expires_ms, error, created_at_ms, updated_at_ms, reason) "
               "VALUES ($1, $2, $3, 'QUEUED', 0, '', 0, '', $4, $4, $5) ON CONFLICT DO NOTHING",
               {model_id, version, target, now, reason})
      .status();
}

}  // namespace

absl::Status CompilePipeline::RecoverAbandonedJobs() {
  const std::string host = options_.worker_id.substr(0, options_.worker_id.rfind(':') + 1);
  ASSIGN_OR_RETURN(store::Rows rows,
                   options_.database->Query(
                       "SELECT id, lease_owner FROM compile_jobs WHERE state = 'RUNNING'", {}));
  for (const store::Row& row : rows) {
    const std::string owner = row.Text(1);
    int pid = 0;
    if (owner.rfind(host, 0) != 0 || owner == options_.worker_id ||
        !absl::SimpleAtoi(owner.substr(host.size()), &pid) || pid <= 0) {
      continue;
    }
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // still alive (or not ours to judge)
    RETURN_IF_ERROR(store::RunInTransaction(*options_.database, [&](store::Transaction& tx) {
      return tx
          .Execute(
              "UPDATE compile_jobs SET state = 'QUEUED', lease_owner = '' WHERE id = $1 AND "
              "lease_owner = $2 AND state = 'RUNNING'",
              {row.Int(0), owner})
          .status();
    }));
    Log(LogLevel::kInfo, "requeued a compile job its dead worker held",
        {{"job", row.Int(0)}, {"worker", owner}});
  }
  return absl::OkStatus();
}

void CompilePipeline::Start() {
  if (absl::Status s = RecoverAbandonedJobs(); !s.ok()) {
    Log(LogLevel::kWarning, "cannot recover abandoned compile jobs", {{"error", s.ToString()}});
  }
  threads_.emplace_back([this] {
    while (!stopping_) {
      if (absl::Status s = PlanOnce(); !s.ok())
        Log(LogLevel::kWarning, "compile planner", {{"error", s.ToString()}});
      absl::SleepFor(options_.poll_interval);
    }
  });
  for (int w = 0; w < options_.workers; ++w) {
    threads_.emplace_back([this] {
      while (!stopping_) {
        auto worked = WorkOnce();
        if (!worked.ok())
          Log(LogLevel::kWarning, "compile worker", {{"error", worked.status().ToString()}});
        if (!worked.ok() || !*worked) absl::SleepFor(options_.poll_interval);
      }
    });
  }
}

void CompilePipeline::Shutdown() {
  stopping_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
}

absl::Status CompilePipeline::PlanForNewClasses(store::Transaction& tx, int64_t now) {
  // A class that joined the fleet after a version was planned gets it built too, so that its
  // devices run a module for their own CPU rather than a narrower one. The version stays
  // READY meanwhile; devices swap to the new module when it is signed.
  ASSIGN_OR_RETURN(
      store::Rows missing,
      tx.Query("SELECT w.model_id, w.version, d.target, d.devices FROM "
               "(SELECT model_id, version FROM aliases UNION SELECT model_id, version FROM "
               "assignments WHERE version > 0 AND id IN (SELECT MAX(id) FROM assignments "
               "GROUP BY model_id, selector, device_id)) w "
               "JOIN model_versions v ON v.model_id = w.model_id AND v.version = w.version "
               "AND v.status = 'READY' "
               "CROSS JOIN (SELECT target, COUNT(*) AS devices FROM devices WHERE status = "
               "'ACTIVE' AND target <> '' GROUP BY target) d "
               "WHERE NOT EXISTS (SELECT 1 FROM compile_jobs j WHERE j.model_id = w.model_id "
               "AND j.version = w.version AND j.target = d.target)"));
  for (const store::Row& row : missing) {
    RETURN_IF_ERROR(QueueJob(tx, row.Int(0), row.Int(1), row.Text(2), now,
                             absl::StrCat(row.Int(3), " active device(s) of this class joined "
                                                      "the fleet after this version was built")));
    Log(LogLevel::kInfo, "compile job planned for a class new to the fleet",
        {{"model_id", row.Int(0)}, {"version", row.Int(1)}, {"target", row.Text(2)}});
  }
  return absl::OkStatus();
}

absl::Status CompilePipeline::PlanOnce() {
  store::Database& db = *options_.database;
  const int64_t now = absl::ToUnixMillis(absl::Now());
  int planned = 0;
  RETURN_IF_ERROR(store::RunInTransaction(db, [&](store::Transaction& tx) -> absl::Status {
    planned = 0;
    // Taking the consumer's row first serialises planners on several replicas.
    ASSIGN_OR_RETURN(store::Rows offset,
                     tx.Query("UPDATE event_consumers SET last_sequence = last_sequence "
                              "WHERE name = $1 RETURNING last_sequence",
                              {std::string(kPlanner)}));
    if (offset.empty()) {
      RETURN_IF_ERROR(tx.Execute("INSERT INTO event_consumers (name, last_sequence) VALUES ($1, 0)",
                                 {std::string(kPlanner)})
                          .status());
    }
    const int64_t after = offset.empty() ? 0 : offset[0].Int(0);
    if (absl::Now() >= next_new_class_pass_) {
      RETURN_IF_ERROR(PlanForNewClasses(tx, now));
      next_new_class_pass_ = absl::Now() + options_.new_class_interval;
    }
    ASSIGN_OR_RETURN(store::Rows events,
                     tx.Query("SELECT sequence, type, model, version FROM registry_events "
                              "WHERE sequence > $1 ORDER BY sequence LIMIT 100",
                              {after}));
    if (events.empty()) return absl::OkStatus();
    // Each target class with the reason it is built: the fleet's, then configured defaults.
    std::map<std::string, std::string> targets;
    ASSIGN_OR_RETURN(store::Rows fleet,
                     tx.Query("SELECT target, COUNT(*) FROM devices WHERE status = 'ACTIVE' AND "
                              "target <> '' GROUP BY target"));
    for (const store::Row& row : fleet) {
      targets[row.Text(0)] =
          absl::StrCat(row.Int(1), " active device(s) of this class in the fleet");
    }
    for (const std::string& t : options_.default_targets) {
      targets.emplace(t, "configured default (--compile-targets)");
    }
    for (const store::Row& event : events) {
      if (event.Text(1) != "version.created") continue;
      ASSIGN_OR_RETURN(store::Rows model,
                       tx.Query("SELECT id FROM models WHERE name = $1", {event.Text(2)}));
      if (model.empty()) continue;
      for (const auto& [target, reason] : targets) {
        RETURN_IF_ERROR(QueueJob(tx, model[0].Int(0), event.Int(3), target, now, reason));
      }
      RETURN_IF_ERROR(
          tx.Execute("UPDATE model_versions SET status = 'COMPILING' WHERE model_id = $1 AND "
                     "version = $2 AND status = 'REGISTERED'",
                     {model[0].Int(0), event.Int(3)})
              .status());
      ++planned;
    }
    return tx
        .Execute("UPDATE event_consumers SET last_sequence = $2 WHERE name = $1",
                 {std::string(kPlanner), events.back().Int(0)})
        .status();
  }));
  if (planned > 0) Log(LogLevel::kInfo, "compile jobs planned", {{"versions", planned}});
  return absl::OkStatus();
}

absl::StatusOr<bool> CompilePipeline::Claim(Job* job) {
  store::Database& db = *options_.database;
  const bool postgres = db.dialect() == store::Dialect::kPostgres;
  const int64_t now = absl::ToUnixMillis(absl::Now());
  bool claimed = false;
  RETURN_IF_ERROR(store::RunInTransaction(db, [&](store::Transaction& tx) -> absl::Status {
    claimed = false;
    ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.Query(
            absl::StrCat("SELECT id FROM compile_jobs WHERE state = 'QUEUED' OR (state = 'RUNNING' "
                         "AND lease_expires_ms < $1) ORDER BY id LIMIT 1",
                         postgres ? " FOR UPDATE SKIP LOCKED" : ""),
            {now}));
    if (rows.empty()) return absl::OkStatus();
    const int64_t id = rows[0].Int(0);
    RETURN_IF_ERROR(
        tx.Execute("UPDATE compile_jobs SET state = 'RUNNING', attempts = attempts + 1, "
                   "lease_owner = $2, "
                   "lease_expires_ms = $3, updated_at_ms = $4 WHERE id = $1",
                   {id, options_.worker_id, now + absl::ToInt64Milliseconds(options_.lease), now})
            .status());
    ASSIGN_OR_RETURN(
        store::Rows details,
        tx.Query("SELECT j.model_id, m.name, j.version, j.target, v.onnx_digest, j.attempts, "
                 "v.details FROM "
                 "compile_jobs j JOIN models m ON m.id = j.model_id JOIN model_versions v ON "
                 "v.model_id = j.model_id AND v.version = j.version WHERE j.id = $1",
                 {id}));
    if (details.empty()) return absl::InternalError("compile job without its version");
    const store::Row& d = details[0];
    v1::ModelVersion version;
    RETURN_IF_ERROR(ParseProtoJson(d.Text(6), &version));
    *job = Job{id,        d.Int(0), d.Text(1), d.Int(2), d.Text(3), d.Text(4),
               d.Int(5), version.validation_digest()};
    claimed = true;
    return absl::OkStatus();
  }));
  return claimed;
}

absl::Status CompilePipeline::ResignArtifacts(store::Database& database,
                                              const crypto::SigningKey& signer) {
  return store::RunInTransaction(database, [&](store::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(store::Rows rows,
                     tx.Query("SELECT model_id, version, target, manifest FROM artifacts", {}));
    for (const store::Row& row : rows) {
      ASSIGN_OR_RETURN(std::string signature, signer.Sign(row.Text(3)));
      RETURN_IF_ERROR(tx.Execute("UPDATE artifacts SET signature = $4 WHERE model_id = $1 AND "
                                 "version = $2 AND target = $3",
                                 {row.Int(0), row.Int(1), row.Text(2), signature})
                          .status());
    }
    return absl::OkStatus();
  });
}

absl::Status CompilePipeline::Run(const Job& job, std::string* error, bool* permanent) {
  compiler::Sandbox& sandbox = *options_.sandbox;
  ASSIGN_OR_RETURN(const std::string dir,
                   sandbox.NewScratch(absl::StrCat("job-", job.id, "-", job.attempts, "-")));
  struct Cleanup {
    compiler::Sandbox& sandbox;
    const std::string& dir;
    ~Cleanup() { sandbox.Remove(dir); }
  } cleanup{sandbox, dir};
  // The model goes to a file for the compiler process.
  ASSIGN_OR_RETURN(auto reader, options_.blobs->Open(job.onnx_digest));
  ASSIGN_OR_RETURN(std::string onnx, store::ReadWholeBlob(*reader));
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/model.onnx", onnx, 0644));
  std::vector<std::string> args = {
      dir + "/model.onnx", "--target", job.target, "--out", dir + "/out", "--validate",
      "--timeout-seconds", std::to_string(absl::ToInt64Seconds(options_.compile_timeout))};
  if (!job.validation_digest.empty()) {
    ASSIGN_OR_RETURN(auto set_reader, options_.blobs->Open(job.validation_digest));
    ASSIGN_OR_RETURN(std::string set, store::ReadWholeBlob(*set_reader));
    RETURN_IF_ERROR(WriteFileAtomically(dir + "/validation.pb", set, 0644));
    args.insert(args.end(), {"--validation-set", dir + "/validation.pb", "--validation-samples",
                             std::to_string(options_.validation_samples)});
  }
  const absl::Time started = absl::Now();
  auto ran = sandbox.Run(options_.compile_binary, args, dir, "compile.log",
                         options_.compile_timeout + absl::Minutes(1));
  if (!ran.ok()) {
    // A hung compiler is worth another try; a missing one is not.
    *permanent = !absl::IsDeadlineExceeded(ran.status());
    *error = absl::IsDeadlineExceeded(ran.status()) ? "compile timed out"
                                                    : std::string(ran.status().message());
    return absl::OkStatus();
  }
  const int code = *ran;
  if (code != 0) {
    std::string log = sandbox.ReadOutput(dir, "compile.log", 1 << 20).value_or("");
    log = std::string(absl::StripAsciiWhitespace(log));
    if (size_t at = log.rfind("edgeloop-compile: "); at != std::string::npos)
      log = log.substr(at + 18);
    // Exit 1 (the model cannot be compiled) and 3 (the module is wrong) do not get better by
    // retrying; a timeout or a crash might.
    *permanent = code == 1 || code == 3 || code == 2;
    *error = code > 128 ? absl::StrCat("compiler crashed (signal ", code - 128, ")")
                        : log.substr(0, 1000);
    return absl::OkStatus();
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  // What the run left is as untrusted as the model: read without following links, bounded.
  auto read_output = [&](const char* name, int64_t max_bytes) -> absl::StatusOr<std::string> {
    auto bytes = sandbox.ReadOutput(dir, absl::StrCat("out/", name), max_bytes);
    if (!bytes.ok()) {
      return absl::Status(bytes.status().code(),
                          absl::StrCat("the compiler's output: ", bytes.status().message()));
    }
    return bytes;
  };
  auto manifest = read_output("manifest.json", 1 << 20);
  auto validation = read_output("validation.json", 1 << 20);
  auto module = read_output("module.so", int64_t{4} << 30);
  for (const auto* output : {&manifest, &validation, &module}) {
    if (!output->ok()) {
      *permanent = true;
      *error = std::string(output->status().message());
      return absl::OkStatus();
    }
  }
  const std::string manifest_text(absl::StripTrailingAsciiWhitespace(*manifest));
  const std::string validation_text(absl::StripTrailingAsciiWhitespace(*validation));
  ASSIGN_OR_RETURN(std::string signature, options_.signer->Sign(manifest_text));
  ASSIGN_OR_RETURN(auto writer, options_.blobs->NewWriter(int64_t{4} << 30));
  RETURN_IF_ERROR(writer->Write(*module));
  ASSIGN_OR_RETURN(store::BlobInfo blob, writer->Commit(""));
  const int64_t now = absl::ToUnixMillis(absl::Now());
  bool still_ours = false, desired_changed = false;
  RETURN_IF_ERROR(
      store::RunInTransaction(*options_.database, [&](store::Transaction& tx) -> absl::Status {
        ASSIGN_OR_RETURN(int64_t changed,
                         tx.Execute("UPDATE compile_jobs SET state = 'DONE', error = '', "
                                    "updated_at_ms = $3 WHERE id = $1 AND lease_owner = $2 AND "
                                    "state = 'RUNNING'",
                                    {job.id, options_.worker_id, now}));
        still_ours = changed == 1;
        if (!still_ours) return absl::OkStatus();  // the lease ran out and another worker took over
        // The artifact carries the reason its job was planned with.
        RETURN_IF_ERROR(
            tx.Execute(
                  "INSERT INTO artifacts (model_id, version, target, backend, module_digest, "
                  "module_size, manifest, signature, validation, compile_seconds, created_at_ms, "
                  "reason) SELECT $1, $2, $3, 'c', $4, $5, $6, $7, $8, $9, $10, reason FROM "
                  "compile_jobs WHERE id = $11 ON CONFLICT DO NOTHING",
                  {job.model_id, job.version, job.target, blob.digest, blob.size, manifest_text,
                   signature, validation_text, seconds, now, job.id})
                .status());
        ASSIGN_OR_RETURN(store::Rows open,
                         tx.Query("SELECT COUNT(*) FROM compile_jobs WHERE model_id = $1 AND "
                                  "version = $2 AND state <> 'DONE'",
                                  {job.model_id, job.version}));
        ASSIGN_OR_RETURN(store::Rows status,
                         tx.Query("SELECT status FROM model_versions WHERE model_id = $1 AND "
                                  "version = $2",
                                  {job.model_id, job.version}));
        if (!status.empty() && status[0].Text(0) == "READY") {
          // A module for a class that joined later: devices of that class switch to it.
          RETURN_IF_ERROR(fleet::Assignments::Touch(tx));
          desired_changed = true;
        } else if (open[0].Int(0) == 0) {
          ASSIGN_OR_RETURN(
              int64_t changed,
              tx.Execute("UPDATE model_versions SET status = 'READY', status_message = '' WHERE "
                         "model_id = $1 AND version = $2 AND status NOT IN ('FAILED', 'READY')",
                         {job.model_id, job.version}));
          // Rollouts wait for this event rather than polling versions.
          if (changed == 1) {
            RETURN_IF_ERROR(
                registry::AppendEvent(tx, "version.ready", job.model, job.version, "", "ci", now));
            RETURN_IF_ERROR(fleet::Assignments::Touch(tx));
            desired_changed = true;
          }
        }
        return absl::OkStatus();
      }));
  if (desired_changed && options_.on_desired_state_changed) options_.on_desired_state_changed();
  if (still_ours) {
    Log(LogLevel::kInfo, "module built",
        {{"model", job.model},
         {"version", job.version},
         {"target", job.target},
         {"module", blob.digest}});
  }
  return absl::OkStatus();
}

absl::Status CompilePipeline::Fail(const Job& job, const std::string& error, bool permanent) {
  const bool give_up = permanent || job.attempts >= options_.max_attempts;
  const int64_t now = absl::ToUnixMillis(absl::Now());
  Log(LogLevel::kWarning, "compile job failed",
      {{"model", job.model},
       {"version", job.version},
       {"target", job.target},
       {"error", error},
       {"final", give_up ? "yes" : "no"}});
  return store::RunInTransaction(*options_.database, [&](store::Transaction& tx) -> absl::Status {
    RETURN_IF_ERROR(tx.Execute("UPDATE compile_jobs SET state = $3, error = $4, lease_owner = '', "
                               "updated_at_ms = $5 "
                               "WHERE id = $1 AND lease_owner = $2",
                               {job.id, options_.worker_id,
                                std::string(give_up ? "FAILED" : "QUEUED"), error, now})
                        .status());
    if (!give_up) return absl::OkStatus();
    // The first target that fails for good names the reason. A version already READY (this
    // was a class that joined later) stays so: its devices keep the module they run.
    ASSIGN_OR_RETURN(
        int64_t changed,
        tx.Execute("UPDATE model_versions SET status = 'FAILED', status_message = $3 WHERE "
                   "model_id = $1 AND version = $2 AND status NOT IN ('FAILED', 'READY')",
                   {job.model_id, job.version, absl::StrCat("target ", job.target, ": ", error)}));
    if (changed != 1) return absl::OkStatus();
    return registry::AppendEvent(tx, "version.failed", job.model, job.version, "", "ci", now);
  });
}

absl::StatusOr<bool> CompilePipeline::WorkOnce() {
  Job job;
  ASSIGN_OR_RETURN(bool claimed, Claim(&job));
  if (!claimed) return false;
  std::string error;
  bool permanent = false;
  absl::Status ran = Run(job, &error, &permanent);
  if (!ran.ok()) error = ran.ToString();
  if (!error.empty()) RETURN_IF_ERROR(Fail(job, error, permanent));
  return true;
}

}  // namespace edgeloop::server
