#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "store/database.h"

namespace edgeloop::ci {

struct PlannerOptions {
  store::Database* database = nullptr;  // not owned
  const Clock* clock = SystemClock::Get();
  /// Targets every version is compiled for, besides those of the devices in the fleet.
  std::vector<std::string> default_targets = {"x86_64-v2"};
  /// How often the planner looks for versions to build for a class that joined the fleet
  /// after they were planned (it reads every device; the events are read every pass).
  absl::Duration new_class_interval = absl::Seconds(10);
  /// Versions devices can be told to run besides those aliases and assignments name: the
  /// candidates of rollouts (the rollout component provides them; unset, none).
  std::function<absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>>(store::Reader&)>
      more_versions = nullptr;
};

/// Turns each `version.created` registry event into one durable compile job per target class
/// (the fleet's active classes plus the defaults) and marks the version COMPILING; and, every
/// new_class_interval, plans the versions devices can be told to run for classes that joined
/// the fleet after those versions were built. Several replicas may plan at once: the event
/// offset's row lock serialises them. Not thread-safe (one planner thread per process).
class Planner {
 public:
  explicit Planner(const PlannerOptions& options) : options_(options) {}

  /// One pass over the new registry events (and, when due, over classes new to the fleet).
  absl::Status PlanOnce();

 private:
  absl::Status PlanForNewClasses(store::Transaction& tx, int64_t now_ms);

  PlannerOptions options_;
  absl::Time next_new_class_pass_ = absl::InfinitePast();
};

}  // namespace edgeloop::ci
