#include "ci/planner.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "ci/compile_jobs.h"
#include "common/logging.h"
#include "common/status.h"
#include "fleet/assignments.h"
#include "fleet/device_registry.h"
#include "registry/registry.h"

namespace edgeloop::ci {
namespace {

constexpr char kPlanner[] = "compile-planner";

}  // namespace

absl::Status Planner::PlanForNewClasses(store::Transaction& tx, int64_t now_ms) {
  // A class that joined the fleet after a version was planned gets it built too, so that its
  // devices run a module for their own CPU rather than a narrower one. The version stays
  // READY meanwhile; devices swap to the new module when it is signed. The versions that
  // matter are those devices can be told to run: what an alias, an assignment or a rollout
  // names.
  ASSIGN_OR_RETURN(const auto classes, fleet::DeviceRegistry::ActiveClasses(tx));
  if (classes.empty()) return absl::OkStatus();
  std::set<std::pair<int64_t, int64_t>> wanted;
  ASSIGN_OR_RETURN(const auto aliased, registry::Registry::AliasedVersions(tx));
  ASSIGN_OR_RETURN(const auto pinned, fleet::Assignments::PinnedVersions(tx));
  wanted.insert(aliased.begin(), aliased.end());
  wanted.insert(pinned.begin(), pinned.end());
  if (options_.more_versions) {
    ASSIGN_OR_RETURN(const auto more, options_.more_versions(tx));
    wanted.insert(more.begin(), more.end());
  }
  for (const auto& [model_id, version] : wanted) {
    auto source = registry::Registry::FindVersion(tx, model_id, version);
    if (absl::IsNotFound(source.status())) continue;
    RETURN_IF_ERROR(source.status());
    if (source->status != v1::READY) continue;
    for (const auto& [target, devices] : classes) {
      ASSIGN_OR_RETURN(bool planned, CompileJobs::Exists(tx, model_id, version, target));
      if (planned) continue;
      RETURN_IF_ERROR(CompileJobs::Queue(
          tx, model_id, version, target, now_ms,
          absl::StrCat(devices,
                       " active device(s) of this class joined the fleet after this version "
                       "was built")));
      Log(LogLevel::kInfo, "compile job planned for a class new to the fleet",
          {{"model", source->model}, {"version", version}, {"target", target}});
    }
  }
  return absl::OkStatus();
}

absl::Status Planner::PlanOnce() {
  store::Database& db = *options_.database;
  const absl::Time now = options_.clock->Now();
  const int64_t now_ms = absl::ToUnixMillis(now);
  int planned = 0;
  bool new_class_pass = false;
  RETURN_IF_ERROR(store::RunInTransaction(db, [&](store::Transaction& tx) -> absl::Status {
    planned = 0;
    new_class_pass = false;
    // Taking the offset's row first serialises planners on several replicas.
    ASSIGN_OR_RETURN(const int64_t after, CompileJobs::LockEventOffset(tx, kPlanner));
    if (now >= next_new_class_pass_) {
      RETURN_IF_ERROR(PlanForNewClasses(tx, now_ms));
      new_class_pass = true;
    }
    ASSIGN_OR_RETURN(std::vector<v1::RegistryEvent> events,
                     registry::Registry::EventsAfter(tx, after, 100));
    if (events.empty()) return absl::OkStatus();
    // Each target class with the reason it is built: the fleet's, then configured defaults.
    std::map<std::string, std::string> targets;
    ASSIGN_OR_RETURN(const auto classes, fleet::DeviceRegistry::ActiveClasses(tx));
    for (const auto& [target, devices] : classes) {
      targets[target] = absl::StrCat(devices, " active device(s) of this class in the fleet");
    }
    for (const std::string& t : options_.default_targets) {
      targets.emplace(t, "configured default (--compile-targets)");
    }
    for (const v1::RegistryEvent& event : events) {
      if (event.type() != "version.created") continue;
      ASSIGN_OR_RETURN(std::optional<int64_t> model_id,
                       registry::Registry::FindModelId(tx, event.model()));
      if (!model_id) continue;
      for (const auto& [target, reason] : targets) {
        RETURN_IF_ERROR(CompileJobs::Queue(tx, *model_id, event.version(), target, now_ms, reason));
      }
      RETURN_IF_ERROR(registry::Registry::MarkCompiling(tx, *model_id, event.version()));
      ++planned;
    }
    return CompileJobs::SetEventOffset(tx, kPlanner, events.back().sequence());
  }));
  // Only a pass that committed counts: a failed one is retried at the next poll.
  if (new_class_pass) next_new_class_pass_ = now + options_.new_class_interval;
  if (planned > 0) Log(LogLevel::kInfo, "compile jobs planned", {{"versions", planned}});
  return absl::OkStatus();
}

}  // namespace edgeloop::ci
