#pragma once

// An operator's per-model drift thresholds: the server's defaults (DriftThresholds) with the fields the operator set for one model in their place. Every summary the API
// and /metrics give for the model is judged with them, and says which were in force.
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgeloop/v1/telemetry.pb.h"
#include "store/database.h"
#include "telemetry/drift.h"

namespace edgeloop::telemetry {

/// INVALID_ARGUMENT unless every field is unset (0: the default) or sensible: PSI in (0, 10],
/// the Jensen-Shannon distance in (0, 1], the KS significance level in (0, 0.5], the minimum
/// count in [1, 10^9].
absl::Status CheckDriftOverrides(const v1::DriftSettings& overrides);

/// `defaults` with each field `overrides` sets in its place.
DriftThresholds WithOverrides(DriftThresholds defaults, const v1::DriftSettings& overrides);

v1::DriftSettings ToProto(const DriftThresholds& thresholds);

/// The overrides stored per model (table telemetry_drift_settings).
class DriftSettingsStore {
 public:
  /// The model's overrides; all fields 0 when it has none.
  static absl::StatusOr<v1::DriftSettings> Overrides(store::Reader& db, int64_t model_id);
  /// Replaces the model's overrides (checked by the caller); all fields 0 removes them.
  static absl::Status SetOverrides(store::Transaction& tx, int64_t model_id,
                                   const v1::DriftSettings& overrides, int64_t now_ms);
};

}  // namespace edgeloop::telemetry
