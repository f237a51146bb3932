#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ci/planner.h"
#include "ci/worker.h"

namespace edgeloop::ci {

struct CompilePipelineOptions {
  PlannerOptions planner;
  WorkerOptions worker;
  int workers = 1;
  /// How long an idle planner or worker waits before it looks again.
  absl::Duration poll_interval = absl::Milliseconds(500);
};

/// The CI stage as the server runs it: one planner thread and `workers` worker threads
/// (planner.h, worker.h). Several replicas may run it against one database. Thread-safe.
class CompilePipeline {
 public:
  explicit CompilePipeline(const CompilePipelineOptions& options);
  ~CompilePipeline() { Shutdown(); }

  void Start();
  /// Stops the threads; a job being compiled finishes first (or its lease lapses on kill).
  void Shutdown();

 private:
  /// Waits up to poll_interval, or less when Shutdown() is called.
  void Idle();

  CompilePipelineOptions options_;
  Planner planner_;
  Worker worker_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace edgeloop::ci
