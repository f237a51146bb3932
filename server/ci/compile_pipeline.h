#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/signing.h"
#include "compiler/sandbox.h"
#include "store/blob_store.h"
#include "store/database.h"

namespace edgeloop::server {

struct CompilePipelineOptions {
  store::Database* database = nullptr;         // not owned
  store::BlobStore* blobs = nullptr;           // not owned
  const crypto::SigningKey* signer = nullptr;  // not owned
  /// Targets every version is compiled for, besides those of the devices in the fleet.
  std::vector<std::string> default_targets = {"x86_64-v2"};
  std::string compile_binary;          // edgeloop-compile
  compiler::Sandbox* sandbox = nullptr;  // runs it, in a scratch directory per job; not owned
  std::string worker_id;       // names this process in job leases
  int workers = 1;
  absl::Duration poll_interval = absl::Milliseconds(500);
  /// How often the planner looks for versions to build for a class that joined the fleet
  /// after they were planned (it reads every device; the events are read every poll).
  absl::Duration new_class_interval = absl::Seconds(10);
  absl::Duration lease = absl::Minutes(15);  // a job whose worker vanished is retried after this
  absl::Duration compile_timeout = absl::Minutes(10);
  int validation_samples = 256;  // of a version's validation set, per module
  /// Called after a version became READY, or a READY version got a module for another class
  /// (the transaction also bumped the fleet's desired-state generation); wakes this process's
  /// device watchers.
  std::function<void()> on_desired_state_changed;
  int max_attempts = 3;
};

/// The CI stage. A planner turns each `version.created` registry event into one durable
/// compile job per target class (the fleet's plus the defaults) and marks the version
/// COMPILING. Workers claim jobs with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL), run
/// `edgeloop-compile --validate` (on the version's validation set when it has one) in the
/// compile sandbox (a crashing, hanging or hostile compile cannot hurt the server or read its
/// data; docs/security.md), sign the manifest, store the module as a blob and record the artifact — all of
/// that in the transaction that completes the job, so a killed worker leaves a job to retry,
/// never half an artifact. When every job of a version is done it becomes READY; a job that
/// fails for good makes it FAILED with the target and the reason. Thread-safe.
class CompilePipeline {
 public:
  explicit CompilePipeline(const CompilePipelineOptions& options) : options_(options) {}
  ~CompilePipeline() { Shutdown(); }

  void Start();
  void Shutdown();

  /// Signs every artifact's manifest again with `signer`, in one transaction (a rotation of the
  /// module signing key: devices that follow it accept only the new key's signatures).
  static absl::Status ResignArtifacts(store::Database& database, const crypto::SigningKey& signer);

  /// One planning pass over new registry events (and, when due, over classes new to the
  /// fleet). Exposed for tests.
  absl::Status PlanOnce();
  /// Claims and runs one job; false when there was none. Exposed for tests.
  absl::StatusOr<bool> WorkOnce();

 private:
  struct Job {
    int64_t id = 0;
    int64_t model_id = 0;
    std::string model;
    int64_t version = 0;
    std::string target;
    std::string onnx_digest;
    int64_t attempts = 0;
    std::string validation_digest;  // empty: validated on generated inputs
  };
  absl::StatusOr<bool> Claim(Job* job);
  /// Plans, for each class in the fleet, the versions devices can be told to run (an alias
  /// or the newest assignment of a selector or device names them) that were not built for it.
  absl::Status PlanForNewClasses(store::Transaction& tx, int64_t now);
  /// Requeues jobs that a process on this host held when it died (kill -9, crash), instead of
  /// waiting for their leases to run out.
  absl::Status RecoverAbandonedJobs();
  absl::Status Run(const Job& job, std::string* error, bool* permanent);
  absl::Time next_new_class_pass_ = absl::InfinitePast();  // planner thread only
  absl::Status Fail(const Job& job, const std::string& error, bool permanent);

  CompilePipelineOptions options_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
};

}  // namespace edgeloop::server
