#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/model_host.h"
#include "agent/telemetry_spool.h"
#include "agent/window_counters.h"
#include "common/clock.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::agent {

/// The device side of the feedback loop: takes the monitoring specs that come with desired
/// modules (verified, kept in `<state-dir>/telemetry/specs.pb` so monitoring resumes after a
/// restart before the first sync), gives each loaded module its version's counters, closes
/// their windows when they end and keeps the closed ones in the spool until the server has
/// them. Runs on the agent's background threads, never on a call's. Thread-safe.
class DeviceTelemetry {
 public:
  struct Options {
    std::string state_dir;
    int64_t spool_bytes = int64_t{4} << 20;
    const Clock* clock = nullptr;
  };
  static absl::StatusOr<std::unique_ptr<DeviceTelemetry>> Open(const Options& options);

  /// The specs of `desired` (its signing key already the trusted one). A spec that does not
  /// verify is logged and its version is not monitored; the module is installed regardless.
  void SetSpecs(const v1::SyncResponse& desired);
  /// Gives every module `host` has loaded the counters of its version's spec: new counters
  /// when it has none or an older spec (the old ones close their last window as usual).
  void Attach(ModelHost& host);
  /// Closes the windows that have ended into the spool; returns when the next one ends
  /// (InfiniteFuture with nothing monitored).
  absl::Time CloseDue();
  /// On shutdown: closes every open window now, so what it counted is kept (the spool merges
  /// it with the rest of that window after the restart).
  void CloseAll();
  /// A label for the prediction `counters_id` made at `predicted_at`.
  void Label(uint64_t counters_id, int64_t predicted, int64_t label, absl::Time predicted_at);

  /// The oldest closed windows that are final, for one report (TelemetrySpool::Batch): a
  /// window closed at shutdown whose time is not over is held back while this run counts the
  /// rest of it, which the spool then merges in; sent earlier, the rest would arrive as a
  /// duplicate of a window the server already stored, and be lost.
  std::vector<v1::TelemetryWindow> Ready(int max_windows, int64_t max_bytes);

  TelemetrySpool& spool() { return *spool_; }

 private:
  DeviceTelemetry(const Options& options, std::unique_ptr<TelemetrySpool> spool)
      : options_(options), spool_(std::move(spool)) {}
  absl::Status SaveSpecs();  // with mu_ held
  void Close(absl::Time now, bool all);

  Options options_;
  std::unique_ptr<TelemetrySpool> spool_;
  std::mutex mu_;
  using Key = std::pair<std::string, int64_t>;  // model, version
  std::map<Key, v1::ModuleRef> specs_;          // the ref's model, version, spec, signature
  std::string signing_key_;                     // that verified them
  std::map<Key, v1::MonitoringSpec> verified_;
  std::map<uint64_t, std::shared_ptr<WindowCounters>> counters_;  // by id, open or closing
};

}  // namespace edgeloop::agent
