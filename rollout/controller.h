#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "edgeloop/v1/rollout.pb.h"
#include "fleet/assignments.h"
#include "fleet/device_registry.h"
#include "fleet/selector.h"
#include "rollout/rollout_store.h"
#include "store/database.h"
#include "telemetry/analysis.h"

namespace edgeloop::rollout {

struct ControllerOptions {
  store::Database* database = nullptr;                     // not owned
  const Clock* clock = SystemClock::Get();                 // not owned
  const telemetry::TelemetryQueries* telemetry = nullptr;  // not owned; what gates read
  /// Called (outside any lock) after a change to what devices should run: wakes watchers,
  /// of every device or of the devices named.
  std::function<void()> on_desired_change = nullptr;
  std::function<void(const std::vector<std::string>&)> on_devices_change = nullptr;
  absl::Duration tick = absl::Seconds(1);
  /// Defaults for specs that leave them 0.
  absl::Duration offline_deadline = absl::Hours(24);
  absl::Duration inconclusive_limit = absl::Hours(1);
  /// The replaced version is measured from this long before the rollout began, so a wave of
  /// every device still has it to compare with.
  absl::Duration replaced_lookback = absl::Hours(1);
};

/// Staged rollouts: the operator's API (create, read, pause, resume, abort, promote) and the
/// control loop that releases devices wave by wave, judges each wave's gates on what its
/// devices report, and advances, pauses or rolls back. Every transition is written with its
/// event in one transaction, and only where the rollout's revision is the one it was decided
/// on: a transition is never applied twice, whoever runs the loop. Thread-safe.
class Controller {
 public:
  explicit Controller(const ControllerOptions& options);
  ~Controller();

  /// INVALID_ARGUMENT for a bad spec (selector, waves, gates, policy, cron, limits),
  /// NOT_FOUND for an unknown model, version or alias, FAILED_PRECONDITION for a version that
  /// is not READY, ALREADY_EXISTS when an unfinished rollout of the model covers some of the
  /// same devices and the spec does not supersede it. Nothing is written on error.
  absl::StatusOr<v1::Rollout> Create(const v1::RolloutSpec& spec, const std::string& actor);
  /// With per-wave device counts and the gates as last judged. NOT_FOUND.
  absl::StatusOr<v1::Rollout> Get(int64_t id);
  absl::StatusOr<v1::ListRolloutsResponse> List(const v1::ListRolloutsRequest& request);
  absl::StatusOr<v1::ListRolloutEventsResponse> Events(const v1::ListRolloutEventsRequest& request);

  /// Pause, resume and abort are idempotent (again on a rollout already there is OK);
  /// ABORTED (409) where the action cannot apply (promote of a finished rollout, resume of an
  /// aborted one). Abort undoes the rollout as a rollback does.
  absl::StatusOr<v1::Rollout> Pause(const v1::RolloutActionRequest& request,
                                    const std::string& actor);
  absl::StatusOr<v1::Rollout> Resume(const v1::RolloutActionRequest& request,
                                     const std::string& actor);
  absl::StatusOr<v1::Rollout> Abort(const v1::RolloutActionRequest& request,
                                    const std::string& actor);
  /// Passes the current wave without waiting for its bake time and gates.
  absl::StatusOr<v1::Rollout> Promote(const v1::RolloutActionRequest& request,
                                      const std::string& actor);

  /// Rollouts per state, and the unfinished ones with those that finished within `recent`
  /// (at most 100, newest first): what /metrics shows.
  absl::StatusOr<std::map<std::string, int64_t>> StateCounts();
  absl::StatusOr<std::vector<v1::Rollout>> Current(absl::Duration recent);
  /// Transitions this process wrote, by the state they led to.
  std::map<std::string, int64_t> TransitionsWritten();

  /// One pass of the control loop over every unfinished rollout (tests call it with a fake
  /// clock; Start() calls it every tick).
  absl::Status ReconcileAll();
  void Start();
  void Shutdown();

  /// The rollouts in force for a device, for fleet::Assignments (the newest per model).
  static absl::StatusOr<std::vector<fleet::DesiredOverride>> Overrides(
      store::Reader& db, const std::string& device_id, const fleet::Attributes& attributes);

 private:
  struct Observation;
  absl::StatusOr<Observation> Observe(const RolloutRecord& record);
  absl::Status Reconcile(RolloutRecord& record);
  /// A shadow_agreement gate on the wave's devices (in its shadow stage).
  absl::StatusOr<v1::GateResult> JudgeShadow(const RolloutRecord& record,
                                             const v1::RolloutGate& gate,
                                             const std::set<std::string>& devices, int64_t now_ms);
  /// The waves with their device counts, as `o` sees them.
  static v1::Rollout Observed(const RolloutRecord& record, const Observation& o, int64_t now_ms);
  /// Device counts as the controller's last pass stored them, or read now when `live` (or
  /// never stored).
  absl::StatusOr<v1::Rollout> ToProto(const RolloutRecord& record, bool live = false);
  /// Runs an operator action: `decide` returns the transition to apply, or none when the
  /// rollout is already where the action leads; retried when the loop moved it meanwhile.
  absl::StatusOr<v1::Rollout> Act(
      int64_t id,
      const std::function<absl::StatusOr<std::optional<Transition>>(const RolloutRecord&)>& decide);
  /// Writes `t` (and bumps the fleet's desired state when it changes what devices run);
  /// false when another writer moved the rollout first.
  absl::StatusOr<bool> Write(RolloutRecord& record, const Transition& t);
  void Notify();
  void Loop();

  ControllerOptions options_;
  fleet::MemberCache members_;  // every pass reads the fleet; unchanged devices are not parsed
  std::mutex counts_mu_;
  std::map<std::string, int64_t> transitions_;  // guarded by counts_mu_
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread loop_;
};

}  // namespace edgeloop::rollout
