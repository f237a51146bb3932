#pragma once

// What the fleet's windows say about a model: summed windows of one version judged against its
// reference (drift per feature and of the predictions, accuracy and error rate with their
// intervals, latency quantiles), and the queries operators run through the API.
#include <cstdint>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "edgeloop/v1/telemetry.pb.h"
#include "store/database.h"
#include "telemetry/drift.h"
#include "telemetry/drift_settings.h"

namespace edgeloop::telemetry {

/// The summary of `sum` (windows of one version summed with MergeWindow; `windows` of them)
/// against `reference` (nullptr: none yet, so no drift). A feature is judged only where the
/// devices binned on the reference's edges; its KS p-values are corrected across the features
/// judged (Benjamini-Hochberg), and it drifts when PSI, the Jensen-Shannon distance or the
/// corrected KS test passes its threshold. The predictions are compared by PSI and JS.
v1::TelemetrySummary Summarize(const v1::TelemetryWindow& sum, int64_t windows,
                               const v1::ReferenceStatistics* reference,
                               const DriftThresholds& thresholds);

struct TelemetryQueryOptions {
  store::Database* database = nullptr;  // not owned
  const Clock* clock = nullptr;         // not owned
  DriftThresholds drift;
  std::string cohort_label;  // as ingestion uses it, shown with the answers
  absl::Duration bucket = absl::Seconds(60);
};

/// The read side of telemetry for the API: a model's versions over a time range from the
/// aggregates (every series summed, or one cohort's), and one device's latest windows.
class TelemetryQueries {
 public:
  /// At most this many points per version in one answer.
  static constexpr int kMaxPoints = 1440;

  explicit TelemetryQueries(const TelemetryQueryOptions& options) : options_(options) {}

  /// NOT_FOUND for an unknown model; INVALID_ARGUMENT for a range that is empty or reversed,
  /// or a step that would give more than kMaxPoints points.
  absl::StatusOr<v1::ModelTelemetry> Model(const v1::GetModelTelemetryRequest& request) const;
  /// What the device reported (zeros for one that never reported); the caller checks that the
  /// device exists.
  absl::StatusOr<v1::DeviceTelemetryReport> Device(
      const v1::GetDeviceTelemetryRequest& request) const;
  /// The summary of one version's raw windows starting in [from_ms, to_ms) — of every device,
  /// or only of `devices` — against its reference, with the model's thresholds: what a
  /// rollout's gates read of the devices of a wave.
  absl::StatusOr<v1::TelemetrySummary> DevicesSummary(int64_t model_id, int64_t version,
                                                      const std::set<std::string>* devices,
                                                      int64_t from_ms, int64_t to_ms) const;
  /// The thresholds a model's summaries are judged with: the defaults and the operator's
  /// overrides. NOT_FOUND for an unknown model.
  absl::StatusOr<v1::ModelDriftSettings> DriftSettings(const std::string& model) const;
  /// Replaces the model's overrides; INVALID_ARGUMENT for an out-of-range one.
  absl::StatusOr<v1::ModelDriftSettings> SetDriftSettings(
      const v1::SetDriftSettingsRequest& request) const;

 private:
  TelemetryQueryOptions options_;
};

}  // namespace edgeloop::telemetry
