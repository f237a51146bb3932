#include "ci/worker.h"

#include <signal.h>

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ci/compile_jobs.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/monitored_feature.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "common/status.h"
#include "compiler/compile_contract.h"
#include "fleet/assignments.h"
#include "registry/registry.h"

namespace edgeloop::ci {

struct Worker::Job {
  CompileJob job;
  registry::VersionSource version;
};

// What one run of the compiler gave: a module, or why not.
namespace {

bool SameFeatures(const v1::ReferenceStatistics& reference,
                  const std::vector<v1::MonitoredFeature>& features) {
  if (reference.features_size() != static_cast<int>(features.size())) return false;
  for (size_t k = 0; k < features.size(); ++k) {
    if (reference.features(k).feature().SerializeAsString() != features[k].SerializeAsString()) {
      return false;
    }
  }
  return true;
}

}  // namespace

struct Worker::Outcome {
  std::string error;  // empty: built
  bool permanent = false;
  std::string manifest;
  std::string validation;
  std::string module;
  double seconds = 0;
  std::optional<v1::ReferenceStatistics> reference;
};

absl::Status Worker::RecoverAbandonedJobs() {
  const std::string host = options_.worker_id.substr(0, options_.worker_id.rfind(':') + 1);
  ASSIGN_OR_RETURN(std::vector<CompileJob> running, CompileJobs::Running(*options_.database));
  for (const CompileJob& job : running) {
    const std::string& owner = job.lease_owner;
    int pid = 0;
    if (owner.rfind(host, 0) != 0 || owner == options_.worker_id ||
        !absl::SimpleAtoi(owner.substr(host.size()), &pid) || pid <= 0) {
      continue;
    }
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // still alive (or not ours to judge)
    bool requeued = false;
    RETURN_IF_ERROR(store::RunInTransaction(*options_.database, [&](store::Transaction& tx) {
      ASSIGN_OR_RETURN(requeued, CompileJobs::Requeue(tx, job.id, owner));
      return absl::OkStatus();
    }));
    if (requeued) {
      Log(LogLevel::kInfo, "requeued a compile job its dead worker held",
          {{"job", job.id}, {"worker", owner}});
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Worker::Outcome> Worker::Compile(const Job& job) {
  compiler::Sandbox& sandbox = *options_.sandbox;
  ASSIGN_OR_RETURN(const std::string dir, sandbox.NewScratch(absl::StrCat(
                                              "job-", job.job.id, "-", job.job.attempts, "-")));
  struct Cleanup {
    compiler::Sandbox& sandbox;
    const std::string& dir;
    ~Cleanup() { sandbox.Remove(dir); }
  } cleanup{sandbox, dir};
  // The model goes to a file for the compiler process.
  ASSIGN_OR_RETURN(auto reader, options_.blobs->Open(job.version.onnx_digest));
  ASSIGN_OR_RETURN(std::string onnx, store::ReadWholeBlob(*reader));
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/model.onnx", onnx, 0644));
  std::vector<std::string> args = {
      dir + "/model.onnx", "--target", job.job.target, "--out", dir + "/out", "--validate",
      "--result", dir + "/report.json", "--timeout-seconds",
      std::to_string(absl::ToInt64Seconds(options_.compile_timeout))};
  if (!job.version.monitored_features.empty()) {
    v1::MonitoredFeatureList features;
    features.mutable_features()->Add(job.version.monitored_features.begin(),
                                     job.version.monitored_features.end());
    RETURN_IF_ERROR(WriteFileAtomically(dir + "/monitor.json", PrintProtoJson(features), 0644));
    args.insert(args.end(), {"--monitor", dir + "/monitor.json"});
  }
  if (!job.version.validation_digest.empty()) {
    ASSIGN_OR_RETURN(auto set_reader, options_.blobs->Open(job.version.validation_digest));
    ASSIGN_OR_RETURN(std::string set, store::ReadWholeBlob(*set_reader));
    RETURN_IF_ERROR(WriteFileAtomically(dir + "/validation.pb", set, 0644));
    args.insert(args.end(), {"--validation-set", dir + "/validation.pb", "--validation-samples",
                             std::to_string(options_.validation_samples)});
  }
  const absl::Time started = options_.clock->Now();
  auto ran = sandbox.Run(options_.compile_binary, args, dir, "compile.log",
                         options_.compile_timeout + absl::Minutes(1));
  Outcome outcome;
  if (!ran.ok()) {
    // A hung compiler is worth another try; a missing one is not.
    outcome.permanent = !absl::IsDeadlineExceeded(ran.status());
    outcome.error = absl::IsDeadlineExceeded(ran.status()) ? "compile timed out"
                                                           : std::string(ran.status().message());
    return outcome;
  }
  const std::optional<compiler::CompileExit> exit = compiler::ExitFromStatus(*ran);
  if (!exit) {
    // A crash might not happen again (memory, a flaky machine): retried.
    outcome.error = *ran > 128 ? absl::StrCat("compiler crashed (signal ", *ran - 128, ")")
                               : absl::StrCat("compiler exited with unknown status ", *ran);
    return outcome;
  }
  // What the run left is as untrusted as the model: read without following links, bounded,
  // and checked against each other.
  auto report_bytes = sandbox.ReadOutput(dir, "report.json", 16 << 20);
  absl::StatusOr<v1::CompileReport> report =
      report_bytes.ok() ? compiler::ParseReport(*report_bytes) : report_bytes.status();
  if (!report.ok()) {
    outcome.permanent = *exit != compiler::CompileExit::kOk;
    outcome.error = absl::StrCat("the compiler exited with status ", *ran,
                                 " and left no usable report: ", report.status().message());
    return outcome;
  }
  if (report->outcome() != compiler::OutcomeFor(*exit)) {
    outcome.error = absl::StrCat("the compiler's report (", v1::CompileOutcome_Name(report->outcome()),
                                 ") contradicts its exit status ", *ran);
    return outcome;
  }
  if (report->outcome() != v1::COMPILE_OK) {
    outcome.permanent = compiler::IsPermanent(report->outcome());
    outcome.error = report->error().substr(0, 1000);
    return outcome;
  }
  auto module = sandbox.ReadOutput(dir, "out/module.so", int64_t{4} << 30);
  if (!module.ok()) {
    outcome.permanent = true;
    outcome.error = absl::StrCat("the compiler's output: ", module.status().message());
    return outcome;
  }
  if (DigestFromHex(Sha256Hex(*module)) != report->module_digest()) {
    outcome.permanent = true;
    outcome.error = "the compiler's module does not match the digest in its report";
    return outcome;
  }
  outcome.manifest = std::string(absl::StripTrailingAsciiWhitespace(report->manifest()));
  outcome.validation = std::string(absl::StripTrailingAsciiWhitespace(report->validation()));
  outcome.module = *std::move(module);
  if (report->has_reference()) {
    // The reference is for monitoring: a malformed one is dropped (the version then takes its
    // reference from the fleet), the module stays good.
    absl::Status usable = CheckReferenceStatistics(report->reference());
    if (usable.ok() && !job.version.monitored_features.empty() &&
        !SameFeatures(report->reference(), job.version.monitored_features)) {
      usable = absl::InvalidArgumentError("its features are not the version's");
    }
    if (usable.ok()) {
      outcome.reference = report->reference();
    } else {
      Log(LogLevel::kWarning, "the compiler's reference statistics are unusable",
          {{"model", job.version.model},
           {"version", absl::StrCat(job.version.version)},
           {"error", std::string(usable.message())}});
    }
  }
  outcome.seconds = absl::ToDoubleSeconds(options_.clock->Now() - started);
  return outcome;
}

absl::Status Worker::Publish(const Job& job, const Outcome& outcome) {
  ASSIGN_OR_RETURN(std::string signature, options_.signer->Sign(outcome.manifest));
  ASSIGN_OR_RETURN(auto writer, options_.blobs->NewWriter(int64_t{4} << 30));
  RETURN_IF_ERROR(writer->Write(outcome.module));
  ASSIGN_OR_RETURN(store::BlobInfo blob, writer->Commit(""));
  const int64_t now = absl::ToUnixMillis(options_.clock->Now());
  bool still_ours = false, desired_changed = false;
  RETURN_IF_ERROR(
      store::RunInTransaction(*options_.database, [&](store::Transaction& tx) -> absl::Status {
        desired_changed = false;
        ASSIGN_OR_RETURN(still_ours, CompileJobs::Complete(tx, job.job.id, options_.worker_id, now));
        if (!still_ours) return absl::OkStatus();  // the lease ran out and another worker took over
        ASSIGN_OR_RETURN(const int64_t unfinished,
                         CompileJobs::Unfinished(tx, job.job.model_id, job.job.version));
        registry::ArtifactRecord artifact;
        artifact.model_id = job.job.model_id;
        artifact.version = job.job.version;
        artifact.target = job.job.target;
        artifact.module_digest = blob.digest;
        artifact.module_size = blob.size;
        artifact.manifest = outcome.manifest;
        artifact.signature = signature;
        artifact.validation = outcome.validation;
        artifact.compile_seconds = outcome.seconds;
        artifact.created_at_ms = now;
        artifact.reason = job.job.reason;  // the reason its job was planned with
        artifact.reference = outcome.reference;
        ASSIGN_OR_RETURN(registry::ArtifactOutcome recorded,
                         registry::Registry::RecordArtifact(tx, artifact, unfinished == 0));
        // A version that became READY, or a module for a class that joined later: devices
        // assigned to it have something new to run.
        if (recorded != registry::ArtifactOutcome::kRecorded) {
          RETURN_IF_ERROR(fleet::Assignments::Touch(tx));
          desired_changed = true;
        }
        return absl::OkStatus();
      }));
  if (desired_changed && options_.on_desired_state_changed) options_.on_desired_state_changed();
  if (still_ours) {
    Log(LogLevel::kInfo, "module built",
        {{"model", job.version.model},
         {"version", job.job.version},
         {"target", job.job.target},
         {"module", blob.digest}});
  }
  return absl::OkStatus();
}

absl::Status Worker::Fail(const Job& job, const std::string& error, bool permanent) {
  const bool give_up = permanent || job.job.attempts >= options_.max_attempts;
  const int64_t now = absl::ToUnixMillis(options_.clock->Now());
  Log(LogLevel::kWarning, "compile job failed",
      {{"model", job.version.model},
       {"version", job.job.version},
       {"target", job.job.target},
       {"error", error},
       {"final", give_up ? "yes" : "no"}});
  return store::RunInTransaction(*options_.database, [&](store::Transaction& tx) -> absl::Status {
    RETURN_IF_ERROR(CompileJobs::Release(tx, job.job.id, options_.worker_id, give_up, error, now));
    if (!give_up) return absl::OkStatus();
    // The first target that fails for good names the reason. A version already READY (this
    // was a class that joined later) stays so: its devices keep the module they run.
    return registry::Registry::MarkFailed(tx, job.job.model_id, job.job.version,
                                          absl::StrCat("target ", job.job.target, ": ", error), now)
        .status();
  });
}

absl::StatusOr<bool> Worker::WorkOnce() {
  store::Database& db = *options_.database;
  const int64_t now = absl::ToUnixMillis(options_.clock->Now());
  std::optional<Job> job;
  RETURN_IF_ERROR(store::RunInTransaction(db, [&](store::Transaction& tx) -> absl::Status {
    job.reset();
    ASSIGN_OR_RETURN(std::optional<CompileJob> claimed,
                     CompileJobs::Claim(tx, db.dialect(), options_.worker_id, now,
                                        absl::ToInt64Milliseconds(options_.lease)));
    if (!claimed) return absl::OkStatus();
    ASSIGN_OR_RETURN(registry::VersionSource version,
                     registry::Registry::FindVersion(tx, claimed->model_id, claimed->version));
    job = Job{*std::move(claimed), std::move(version)};
    return absl::OkStatus();
  }));
  if (!job) return false;
  absl::StatusOr<Outcome> outcome = Compile(*job);
  std::string error;
  bool permanent = false;
  if (!outcome.ok()) {
    error = outcome.status().ToString();
  } else if (!outcome->error.empty()) {
    error = outcome->error;
    permanent = outcome->permanent;
  } else if (absl::Status published = Publish(*job, *outcome); !published.ok()) {
    error = published.ToString();
  }
  if (!error.empty()) RETURN_IF_ERROR(Fail(*job, error, permanent));
  return true;
}

}  // namespace edgeloop::ci
