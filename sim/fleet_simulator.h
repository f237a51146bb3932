#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "edgeloop/v1/device.grpc.pb.h"
#include "sim/module_cache.h"
#include "sim/scenario_rules.h"

namespace edgeloop::sim {

struct SimulatorOptions {
  std::string server;        // the device port, HOST:PORT
  std::string enroll_token;  // one token with a use per device
  int devices = 100;
  absl::Duration ramp_up = absl::Seconds(10);  // enrollments spread over this long
  int threads = 4;       // workers making the devices' calls; Watch streams need none
  std::string work_dir;  // where fetched modules are kept
  bool watch = true;     // devices hold a Watch stream, as agents do
  /// Each device sends a closed window after its own delay within this (as agents do with
  /// --telemetry-spread-seconds), so a fleet's reports do not all land as the minute turns.
  absl::Duration report_spread = absl::Seconds(10);
};

/// What the fleet did, for the summary table.
struct SimulatorCounts {
  std::atomic<int64_t> enrolled{0}, enroll_failed{0}, syncs{0}, syncs_failed{0}, watch_events{0},
      installs{0}, installs_failed{0}, shadows{0}, windows_sent{0}, windows_stored{0},
      reports_failed{0};
};

/// Many virtual devices in one process, each with its own key, certificate (enrolled through
/// the real Enroll), hardware profile and labels, speaking the real device protocol over mTLS
/// gRPC: Sync on the server's pacing, a Watch stream each (gRPC's callback API: no thread per
/// device; telemetry reports the same way), installs of what they are told — the real module for classes this host runs,
/// verified and loaded as the agent does, an emulated one for the others — and telemetry
/// windows from the scenario's behaviours, marked `emulated` where the module is. A few worker
/// threads make every call. Thread-safe.
class FleetSimulator {
 public:
  static absl::StatusOr<std::unique_ptr<FleetSimulator>> Create(const SimulatorOptions& options,
                                                                ScenarioRules rules);
  ~FleetSimulator();

  void Start();
  /// Stops the workers and closes every stream.
  void Stop();
  const SimulatorCounts& counts() const { return counts_; }
  /// Devices running each model version now ("model vN" → devices).
  std::map<std::string, int64_t> Running() const;
  /// The table printed at the end and on SIGINT.
  std::string Summary() const;
  /// How far the workers are behind: the age of the oldest task that is due (0 when none is).
  /// A benchmark waits for the simulator to catch up before it measures the server.
  absl::Duration Lag();
  /// When each Watch event arrived, in order (how fast the server notified the fleet).
  std::vector<absl::Time> WatchEventTimes() const;

 private:
  struct Device;
  struct Installed;
  class WatchReactor;
  struct ReportCall;
  struct SyncCall;
  enum class Task { kEnroll, kSync, kSyncDone, kReport, kWatch, kApplyPushed };
  struct Event {
    absl::Time at;
    int device;
    Task task;
    bool operator>(const Event& o) const { return at > o.at; }
  };

  FleetSimulator(const SimulatorOptions& options, ScenarioRules rules);
  void Schedule(int device, Task task, absl::Time at);
  void Work();
  void Enroll(Device& d);
  void Sync(Device& d);
  /// Applies the answer of the device's sync in flight (on a worker, as every task).
  void SyncDone(Device& d);
  void Report(Device& d);
  void ApplyPushed(Device& d);
  /// Installs what `desired` names and drops what it no longer does; true when that changed
  /// what the device runs or reports.
  bool ApplyDesired(Device& d, const v1::SyncResponse& desired);
  void Watch(Device& d);
  void Install(Device& d, const v1::ModuleRef& ref);
  /// Verifies (and, for a class the host runs, fetches and loads) `ref`: what a device would
  /// run of it, or why it cannot.
  absl::StatusOr<Installed> Prepare(Device& d, const v1::ModuleRef& ref);
  /// Runs `shadow` beside what the device serves of its model (a rollout's shadow stage).
  void InstallShadow(Device& d, const v1::ShadowModule& shadow);
  absl::Status Fetch(Device& d, const v1::ModuleRef& ref, const std::string& path);
  v1::TelemetryWindow Window(Device& d, const std::string& model, int64_t start_ms, int64_t end_ms,
                             std::mt19937_64& rng);
  absl::Duration Elapsed() const { return absl::Now() - started_; }

  SimulatorOptions options_;
  ScenarioRules rules_;
  std::string ca_pem_;
  std::string host_target_;
  std::unique_ptr<v1::DeviceService::Stub> bootstrap_;  // TLS to the server, for Enroll
  ModuleCache modules_;
  std::vector<std::unique_ptr<Device>> devices_;
  SimulatorCounts counts_;
  absl::Time started_;

  std::mutex mu_;
  std::condition_variable wake_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;  // guarded
  bool stop_ = false;                                                           // guarded
  std::vector<absl::Time> sync_due_, report_due_;  // guarded: each device's pending event
  std::atomic<int> watches_{0};                    // Watch streams open
  std::atomic<int> reports_in_flight_{0};          // ReportTelemetry calls not answered yet
  std::atomic<int> syncs_in_flight_{0};            // Sync calls not answered yet
  mutable std::mutex watch_times_mu_;
  std::vector<absl::Time> watch_times_;  // guarded by watch_times_mu_
  std::vector<std::thread> workers_;
};

}  // namespace edgeloop::sim
