#include "ci/compile_pipeline.h"

#include "common/logging.h"

namespace edgeloop::ci {

CompilePipeline::CompilePipeline(const CompilePipelineOptions& options)
    : options_(options), planner_(options.planner), worker_(options.worker) {}

void CompilePipeline::Idle() {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.poll_interval);
}

void CompilePipeline::Start() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  if (absl::Status s = worker_.RecoverAbandonedJobs(); !s.ok()) {
    Log(LogLevel::kWarning, "cannot recover abandoned compile jobs", {{"error", s.ToString()}});
  }
  auto stopping = [this] {
    absl::MutexLock lock(&mu_);
    return stopping_;
  };
  threads_.emplace_back([this, stopping] {
    while (!stopping()) {
      if (absl::Status s = planner_.PlanOnce(); !s.ok())
        Log(LogLevel::kWarning, "compile planner", {{"error", s.ToString()}});
      Idle();
    }
  });
  for (int w = 0; w < options_.workers; ++w) {
    threads_.emplace_back([this, stopping] {
      while (!stopping()) {
        auto worked = worker_.WorkOnce();
        if (!worked.ok())
          Log(LogLevel::kWarning, "compile worker", {{"error", worked.status().ToString()}});
        if (!worked.ok() || !*worked) Idle();
      }
    });
  }
}

void CompilePipeline::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace edgeloop::ci
