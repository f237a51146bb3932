#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "edgeloop/module_abi.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop::agent {

/// What one model version served in the current window, counted as its spec says (the
/// monitored features binned on the reference edges, predictions, confidence, latency,
/// labelled outcomes), closed into a TelemetryWindow every spec.window_seconds.
///
/// The request path (Record, RecordLabel) bumps counters in its thread's slot
/// (thread_slot.h): no allocation, no lock, no atomic read-modify-write, no cache line shared
/// with calls on other threads (unless there are more calling threads than slots; those share
/// one slot with atomic adds). Counters only grow; CloseIfDue sums the slots and takes what
/// each grew by since the last close, so a call that races with it counts whole in this
/// window or partly in the next, never twice or nowhere. CloseIfDue has one caller at a time.
class WindowCounters {
 public:
  /// For `spec` (verified) on `module` (its inputs and first output); the first window is
  /// the one `now` falls in. Features whose input the module lacks are left out (the module
  /// and the spec are of one version, so only a bad build gets here).
  WindowCounters(const v1::MonitoringSpec& spec, std::string module_digest,
                 const elm_module& module, absl::Time now);
  WindowCounters(const WindowCounters&) = delete;
  WindowCounters& operator=(const WindowCounters&) = delete;

  /// One call: `inputs` and `outputs` in the module's order (outputs unread when !ok).
  /// Returns the predicted class (-1 for a regressor, a failed call or NaN output).
  int64_t Record(const void* const* inputs, const void* const* outputs, absl::Duration run,
                 bool ok) noexcept;
  /// A label for a prediction of this version, within a window of it; a late one is only
  /// counted as late.
  void RecordLabel(int64_t predicted, int64_t label) noexcept;
  void RecordLateLabel() noexcept;

  /// One call of this version also run on the candidate `version` it shadows (from the
  /// shadow runner's thread, off the request path: a short lock).
  void RecordShadow(int64_t version, const std::string& digest, bool ok, bool agreed,
                    absl::Duration run);
  /// A call sampled for the candidate `version` but not run on it (the request thread: no
  /// lock, two relaxed atomic operations).
  void RecordShadowSkipped(int64_t version) noexcept;

  /// When the current window has ended by `now`: takes its counts (resetting them) and
  /// starts the window `now` falls in; the window is returned unless nothing happened in it.
  std::optional<v1::TelemetryWindow> CloseIfDue(absl::Time now);
  absl::Time window_end() const;

  /// Unique in this process: how a remembered prediction names the counters of its version.
  uint64_t id() const { return id_; }
  const v1::MonitoringSpec& spec() const { return spec_; }
  absl::Duration window() const { return window_; }
  bool classifier() const { return classes_ > 0; }

 private:
  struct Feature {
    v1::MonitoredFeature def;
    int input = -1;               // the module input it is computed from
    std::vector<int64_t> shape;   // that input's
    int edges_at = 0, edges = 0;  // its edges in edges_, how many
    size_t bins_at = 0;           // its first bin cell
    size_t sampled_at = 0;        // its counter of samples taken this window, in Shard::sampled
    size_t samples_at = 0;        // its first sample slot
  };
  struct Shard {  // one per thread slot; each array its own allocation (no false sharing)
    std::unique_ptr<std::atomic<int64_t>[]> cells;
    std::unique_ptr<std::atomic<int64_t>[]> sampled;  // reset by Close: atomic adds only
    std::unique_ptr<std::atomic<float>[]> samples;
  };
  std::vector<int64_t> Take(size_t at, size_t n);  // sets taken_any_ for a non-zero count
  bool taken_any_ = false;                         // Close's only

  const uint64_t id_;
  v1::MonitoringSpec spec_;
  std::string digest_;
  absl::Duration window_;
  std::vector<Feature> features_;
  std::vector<double> edges_;  // every feature's, then the prediction's
  int prediction_edges_at_ = 0, prediction_edges_ = 0;
  int64_t classes_ = 0;  // > 0 for a classifier
  int64_t output_elements_ = 0;
  int sample_values_ = 0;
  // Cell layout, the same in every shard.
  size_t latency_at_ = 0, classes_at_ = 0, confidence_at_ = 0, predictions_at_ = 0,
         labelled_at_ = 0, correct_at_ = 0, predicted_labelled_at_ = 0, cells_ = 0,
         sample_slots_ = 0;
  std::vector<Shard> shards_;
  std::vector<int64_t> totals_;           // each cell's sum over shards at the last close
  std::atomic<int64_t> window_start_ms_;  // written by Close, read by window_end()
  std::mutex shadow_mu_;
  std::map<int64_t, v1::TelemetryWindow::Shadow> shadows_;  // by candidate; guarded
  // Skipped calls, of the candidate last skipped (one candidate per model at a time).
  std::atomic<int64_t> shadow_skipped_{0}, skipped_version_{0};
};

}  // namespace edgeloop::agent
