#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"
#include "edgeloop/v1/device.pb.h"
#include "fleet/selector.h"
#include "store/database.h"

namespace edgeloop::fleet {

/// What a device should monitor of a model version: fills ModuleRef.monitoring and
/// monitoring_signature (the telemetry component provides it; unset, nothing is monitored).
using MonitoringLookup = std::function<absl::Status(int64_t model_id, v1::ModuleRef& ref)>;

/// A version a device should run that comes from outside the direct assignments — a rollout
/// that has released the device. `ordered_at_ms` (when the rollout was created) orders it
/// against the assignments: the newer of the two wins.
///
/// With `shadow` set, the device runs the version beside the module it would run otherwise
/// (v1::ShadowModule: sample_ratio, cpu_budget and tolerance filled) instead of serving it.
struct DesiredOverride {
  int64_t model_id = 0;
  int64_t version = 0;
  int64_t ordered_at_ms = 0;
  std::optional<v1::ShadowModule> shadow;
};

/// The overrides in force for a device (the rollout component provides them).
using OverrideLookup = std::function<absl::StatusOr<std::vector<DesiredOverride>>(
    const std::string& device_id, const Attributes& attributes)>;

/// Direct assignments — the simplest rollout: an operator pins a model version (or an alias)
/// for one device or for the devices a selector matches — and what they resolve to for a
/// device. Assignments are append-only: for each model, a device runs the newest assignment
/// that applies to it, so assigning again replaces and the table keeps the history.
///
/// What devices should run also changes when an alias moves or a version's modules are built;
/// whoever makes such a change calls Touch(), which bumps the fleet-wide desired-state
/// generation that devices watch. Thread-safe.
class Assignments {
 public:
  Assignments(store::Database* database, const Clock* clock, MonitoringLookup monitoring = nullptr,
              OverrideLookup overrides = nullptr)
      : database_(database),
        clock_(clock),
        monitoring_(std::move(monitoring)),
        overrides_(std::move(overrides)) {}

  /// Records an assignment. INVALID_ARGUMENT unless exactly one of selector/device and one of
  /// version/alias is given and the selector parses; NOT_FOUND for an unknown model, version,
  /// alias or device.
  absl::StatusOr<v1::Assignment> Assign(const v1::AssignModelRequest& request,
                                        const std::string& actor);
  /// Newest first, a page at a time (of one model, or every model when request.model is empty).
  absl::StatusOr<v1::ListAssignmentsResponse> List(const v1::ListAssignmentsRequest& request);

  /// The modules a device should run — the one place that decides it. Per model:
  ///  1. the newest direct assignment that applies (the device's own or a selector's that
  ///     matches; an alias resolved now) gives a version;
  ///  2. a rollout override newer than that assignment replaces it, but only when the
  ///     rollout's version has a module the device runs (an incompatible device keeps 1.);
  ///  3. the version's module for the highest target class the device runs is the answer.
  ///  4. a shadow override newer than what 1–2 chose adds its version's module to
  ///     `shadow_modules` beside it; with nothing chosen there is nothing to shadow beside,
  ///     and the shadow's version is the answer of 3.
  /// A model whose version has no module for the device yet (still compiling, or no such
  /// target) is left out until it has one. Fills desired_modules and shadow_modules.
  absl::Status DesiredFor(const std::string& device_id, const Attributes& attributes,
                          const std::string& device_target, v1::SyncResponse* out);

  /// True when `digest` is a module the CI stage built (what devices may fetch).
  absl::StatusOr<bool> IsModule(const std::string& digest);

  /// (model id, version) of every assignment in force that pins a version (not an alias): the
  /// versions the CI stage builds for classes that join the fleet later.
  static absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>> PinnedVersions(
      store::Reader& db);

  /// Fleet-wide part of every device's desired-state generation.
  absl::StatusOr<int64_t> Generation();
  /// Bumps it: something that changes what devices should run happened.
  absl::Status Touch();
  /// The same inside the caller's transaction.
  static absl::Status Touch(store::Transaction& tx);

 private:
  store::Database* database_;
  const Clock* clock_;
  MonitoringLookup monitoring_;
  OverrideLookup overrides_;
};

}  // namespace edgeloop::fleet
