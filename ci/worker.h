#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/signing.h"
#include "compiler/sandbox.h"
#include "store/blob_store.h"
#include "store/database.h"

namespace edgeloop::ci {

struct WorkerOptions {
  store::Database* database = nullptr;         // not owned
  store::BlobStore* blobs = nullptr;           // not owned
  const crypto::SigningKey* signer = nullptr;  // not owned
  const Clock* clock = SystemClock::Get();
  std::string compile_binary;            // edgeloop-compile
  compiler::Sandbox* sandbox = nullptr;  // runs it, in a scratch directory per job; not owned
  std::string worker_id;                 // names this worker in job leases: "host:pid"
  absl::Duration lease = absl::Minutes(15);  // a job whose worker vanished is retried after this
  absl::Duration compile_timeout = absl::Minutes(10);
  int validation_samples = 256;  // of a version's validation set, per module
  int max_attempts = 3;          // of a job that keeps failing in ways a retry might fix
  /// Called after a version became READY, or a READY version got a module for another class
  /// (the transaction also bumped the fleet's desired-state generation).
  std::function<void()> on_desired_state_changed;
};

/// Claims compile jobs with a lease and runs `edgeloop-compile --validate --result` (on the
/// version's validation set when it has one) in the compile sandbox (a crashing, hanging or
/// hostile compile cannot hurt the server or read its data; docs/security.md). It reads the
/// tool's report (compile.proto), signs the manifest, stores the module as a blob and, in the
/// transaction that completes the job, records the artifact through the registry — so a
/// killed worker leaves a job to retry, never half an artifact. A failure the report calls
/// permanent (the model or module is wrong) fails the version at once; a crash or a timeout
/// is retried up to max_attempts. Thread-safe; one Worker may serve several threads.
class Worker {
 public:
  explicit Worker(const WorkerOptions& options) : options_(options) {}

  /// Claims and runs one job; false when there was none.
  absl::StatusOr<bool> WorkOnce();

  /// Requeues jobs that a process on this host held when it died (kill -9, crash), instead of
  /// waiting for their leases to run out.
  absl::Status RecoverAbandonedJobs();

 private:
  struct Job;
  struct Outcome;
  absl::StatusOr<Outcome> Compile(const Job& job);
  absl::Status Publish(const Job& job, const Outcome& outcome);
  absl::Status Fail(const Job& job, const std::string& error, bool permanent);

  WorkerOptions options_;
};

}  // namespace edgeloop::ci
