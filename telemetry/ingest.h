#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "edgeloop/v1/device.pb.h"
#include "store/database.h"
#include "telemetry/monitoring_specs.h"
#include "telemetry/window_check.h"
#include "telemetry/window_store.h"

namespace edgeloop::telemetry {

/// At most this many windows per report (the device port also caps a message at 1 MiB).
inline constexpr int kMaxReportWindows = 64;

/// Why a window was refused, for the metric that counts refusals (a fixed set of labels).
enum class Refusal { kUnknownModel, kNotGiven, kInvalid, kStale, kCount };
const char* RefusalLabel(Refusal r);

struct IngestOptions {
  store::Database* database = nullptr;  // not owned
  const Clock* clock = nullptr;         // not owned
  MonitoringSpecs* specs = nullptr;     // not owned: what each version's windows must match
  /// The device label whose value is a window's cohort ("" for none), and how many distinct
  /// values get a series of their own; devices with others are counted under kOtherCohort.
  std::string cohort_label;
  int max_cohorts = 32;
  /// Aggregates sum windows over buckets of this length.
  absl::Duration bucket = absl::Seconds(60);
  /// Raw windows are kept this long (and older ones refused); aggregates longer.
  absl::Duration raw_retention = absl::Hours(24 * 7);
  absl::Duration aggregate_retention = absl::Hours(24 * 90);
  absl::Duration prune_every = absl::Minutes(10);
  /// A transaction stores up to this many windows, from however many reports are waiting.
  int max_batch_windows = 1024;
  /// Reports waiting past this many windows are answered RESOURCE_EXHAUSTED.
  int max_pending_windows = 8192;
  /// Per device: windows a minute, and the burst a device back from an outage may send.
  double device_windows_per_minute = 120;
  double device_burst_windows = 1024;
  WindowBounds bounds;
  /// A version without a reference takes one from its devices' first windows once every
  /// monitored feature has this many raw values (read from at most reference_max_windows).
  int reference_min_samples = 200;
  int reference_max_windows = 4096;
  absl::Duration reference_every = absl::Seconds(5);
  /// Told of each reference this server took (after it committed); may be empty.
  std::function<void(int64_t model_id, int64_t version)> on_reference;
};

/// What ingestion has done since the server started, for /metrics.
struct IngestCounts {
  std::atomic<int64_t> windows_stored{0};
  std::atomic<int64_t> windows_duplicate{0};  // sent again, stored once
  std::array<std::atomic<int64_t>, static_cast<size_t>(Refusal::kCount)> windows_refused{};
  std::atomic<int64_t> windows_dropped_by_devices{0};  // devices' own drops, as reported
  std::atomic<int64_t> reports_throttled{0};           // RESOURCE_EXHAUSTED answers
  std::atomic<int64_t> batches{0};
  std::atomic<int64_t> batch_failures{0};
  std::atomic<int64_t> pending_windows{0};
  std::atomic<double> lag_seconds{0};  // the last batch's: its oldest window's end to commit
};

/// A model series as /metrics shows it: model, version, cohort (bounded by the cohort cap).
using SeriesKey = std::tuple<std::string, int64_t, std::string>;
/// What the windows of one series that this server stored added up to since it started.
struct SeriesTotals {
  int64_t windows = 0;
  int64_t requests = 0;
  int64_t errors = 0;
  int64_t labelled = 0;
  int64_t correct = 0;
  std::vector<int64_t> latency;  // on the shared latency buckets (common/latency_buckets.h)
};

/// Telemetry from devices into the store. Report() checks each window against its version's
/// monitoring spec and the device (refusing with a reason what no honest agent sends), then
/// waits while a single writer stores what every device sent meanwhile in one transaction
/// (group commit: one multi-row insert or COPY per batch, not per report) and answers which
/// windows are stored. A device sending more than its rate, or a writer that has fallen behind,
/// gets RESOURCE_EXHAUSTED: other devices' reports are never blocked behind one device's flood.
/// Nothing is acknowledged before it is committed. Thread-safe.
class TelemetryIngest {
 public:
  explicit TelemetryIngest(const IngestOptions& options);
  ~TelemetryIngest();  // Stop()s

  /// Starts the writer (and the retention sweep).
  void Start();
  /// Answers every waiting report UNAVAILABLE and stops the writer.
  void Stop();

  /// One device's report; `device_id` is the one its client certificate proved.
  absl::StatusOr<v1::ReportTelemetryResponse> Report(const std::string& device_id,
                                                     const v1::ReportTelemetryRequest& request);

  const IngestCounts& counts() const { return counts_; }
  /// Every series' totals: counters for /metrics, summed across replicas by Prometheus (a
  /// window is stored, and so counted, by exactly one of them).
  std::map<SeriesKey, SeriesTotals> Series() const;

 private:
  struct Pending;
  /// The version a module digest was built for, and the class it was built for.
  struct ModuleOf {
    std::string model;
    int64_t model_id = 0;
    int64_t version = 0;
    std::string target;
  };
  /// Checks one window; on refusal the reason, else its IncomingWindow filled but the cohort.
  absl::Status Check(const std::string& device_target, const v1::TelemetryWindow& window,
                     absl::Time now, IncomingWindow* out, Refusal* why);
  absl::StatusOr<std::optional<ModuleOf>> FindModule(const std::string& model, int64_t version,
                                                     const std::string& digest);
  bool Admit(const std::string& device_id, int windows, absl::Time now);
  void WriterLoop();
  /// Takes the reference of every version in awaiting_ that has enough raw values by now.
  void TakeReferences();
  /// True when the version has a reference now (taken by this call or before).
  absl::StatusOr<bool> TakeReference(int64_t model_id, const std::string& model, int64_t version);
  absl::Status Write(std::vector<std::shared_ptr<Pending>>& batch);

  IngestOptions options_;
  IngestCounts counts_;

  std::mutex cache_mu_;
  std::map<std::string, ModuleOf> modules_;  // by digest: a module's version never changes
  std::set<std::string> cohorts_;            // values known to have a slot (writer's only)

  struct Bucket {
    double tokens = 0;
    absl::Time at;
  };
  mutable std::mutex series_mu_;
  std::map<SeriesKey, SeriesTotals> series_;

  std::mutex rate_mu_;
  std::map<std::string, Bucket> rates_;

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Pending>> queue_;
  int64_t queued_windows_ = 0;
  bool stopping_ = false;
  std::thread writer_;
  absl::Time next_prune_ = absl::InfinitePast();
  // Versions whose windows carry raw values (they have no reference yet): the writer's only.
  std::map<std::pair<int64_t, int64_t>, std::string> awaiting_;  // (model id, version) → name
  absl::Time next_reference_ = absl::InfinitePast();
};

}  // namespace edgeloop::telemetry
