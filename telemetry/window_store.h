#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "edgeloop/v1/telemetry.pb.h"
#include "store/database.h"

namespace edgeloop::telemetry {

/// Windows summed, and how many.
struct WindowSum {
  v1::TelemetryWindow sum;
  int64_t windows = 0;
};

/// Devices whose cohort label value finds no free slot (the cap is reached) are counted here.
inline constexpr char kOtherCohort[] = "_other";

/// A checked window and what the server files it under.
struct IncomingWindow {
  std::string device_id;
  int64_t model_id = 0;
  std::string target;  // the device's target class
  std::string cohort;  // its cohort label's value ("" without the label)
  v1::TelemetryWindow window;
};

/// One series' sums over one time bucket.
struct Aggregate {
  int64_t version = 0;
  std::string target;
  std::string cohort;
  int64_t bucket_ms = 0;
  int64_t windows = 0;
  v1::TelemetryWindow summary;  // summed counts; no raw samples
};

/// What one device has reported, for operators.
struct DeviceReports {
  int64_t windows_stored = 0;
  int64_t windows_refused = 0;
  int64_t windows_dropped = 0;  // by the device itself (its spool full)
  int64_t last_report_ms = 0;
  std::string last_refusal;
};

/// The telemetry component's tables, through which every other part of the server reads and
/// writes telemetry. Writes take the caller's transaction.
class WindowStore {
 public:
  /// Stores each window not stored before (the key: device, model, version, start) and adds
  /// it to its aggregate, the bucket being its start floored to `bucket`. Returns, per input,
  /// whether it is new: false for a window an earlier report (or an earlier entry of this
  /// batch) stored, which changes nothing. Multi-row inserts; aggregate rows are taken in key
  /// order (locked on PostgreSQL) so concurrent batches neither lose an update nor deadlock.
  static absl::StatusOr<std::vector<bool>> Store(store::Transaction& tx, store::Dialect dialect,
                                                 const std::vector<IncomingWindow>& windows,
                                                 absl::Duration bucket, int64_t now_ms);

  /// The cohort a device with this label value is filed under: the value itself while fewer
  /// than `max_cohorts` values have a slot (taking one), else kOtherCohort. "" stays "".
  static absl::StatusOr<std::string> Cohort(store::Transaction& tx, const std::string& value,
                                            int max_cohorts, int64_t now_ms);
  /// Every cohort value with a slot.
  static absl::StatusOr<std::vector<std::string>> Cohorts(store::Reader& db);

  /// Adds one report's outcome to the device's record.
  static absl::Status CountReport(store::Transaction& tx, const std::string& device_id,
                                  int64_t stored, int64_t refused, int64_t dropped,
                                  const std::string& last_refusal, int64_t now_ms);
  static absl::StatusOr<std::optional<DeviceReports>> Reports(store::Reader& db,
                                                              const std::string& device_id);

  /// The model's aggregates with bucket in [from_ms, to_ms), of one version and one cohort
  /// when given, oldest first.
  static absl::StatusOr<std::vector<Aggregate>> Aggregates(store::Reader& db, int64_t model_id,
                                                           std::optional<int64_t> version,
                                                           std::optional<std::string> cohort,
                                                           int64_t from_ms, int64_t to_ms);
  /// One device's raw windows starting in [from_ms, to_ms), newest first, at most `limit`.
  static absl::StatusOr<std::vector<v1::TelemetryWindow>> DeviceWindows(
      store::Reader& db, const std::string& device_id, int64_t from_ms, int64_t to_ms, int limit);

  /// The version's first raw windows (oldest first, from every device), up to `limit`.
  static absl::StatusOr<std::vector<v1::TelemetryWindow>> VersionWindows(store::Reader& db,
                                                                         int64_t model_id,
                                                                         int64_t version,
                                                                         int limit);

  /// The version's raw windows starting in [from_ms, to_ms) summed with MergeWindow (no raw
  /// samples): of every device, or only of `devices` when given. Read in batches.
  static absl::StatusOr<WindowSum> SumWindows(store::Reader& db, int64_t model_id,
                                              int64_t version,
                                              const std::set<std::string>* devices,
                                              int64_t from_ms, int64_t to_ms);

  /// Deletes raw windows that ended before `raw_before_ms` and aggregates whose bucket started
  /// before `aggregates_before_ms`; returns the rows deleted.
  static absl::StatusOr<int64_t> Prune(store::Transaction& tx, int64_t raw_before_ms,
                                       int64_t aggregates_before_ms);
};

}  // namespace edgeloop::telemetry
