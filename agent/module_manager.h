#pragma once

#include <map>
#include <set>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "agent/model_host.h"
#include "agent/module_store.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::agent {

/// Brings what the device serves to what the server wants: for each desired module not
/// active yet, download (resumable), verify (signature, digest, size, target), load and check
/// (ABI, CPU, self-test, warm-up) — all off the request path — then swap it in. A module that
/// fails any step is reported with its reason and the model keeps serving what it served. A
/// model the desired state no longer names keeps serving too (the server only ever asks for
/// modules it has; it never asks a device to stop serving).
///
/// Which module is active and which is previous, per model, is written atomically to
/// `<state-dir>/active.json` after each swap, with the signing key that verified them and the
/// desired generation they came from: the one state file a swap writes (each fsync'd write
/// is CPU and I/O on the device's cores while applications call). Restore() brings those back
/// after a restart (verified again), so a kill -9 at any point leaves the old or the new
/// module serving. A desired state not recorded yet comes again with the first sync.
class ModuleManager {
 public:
  struct Options {
    std::string state_dir;
    std::string device_target;  // this CPU's class
    ModuleStore::Limits download;
    int64_t cache_bytes = int64_t{512} << 20;  // modules kept on disk besides active/previous
    /// Memory the loaded modules may use (0: what /proc/meminfo says is available). When the
    /// new module and the ones loaded do not fit, the model's calls wait while its old modules
    /// are drained and unloaded, then run on the new one.
    int64_t memory_budget_bytes = 0;
  };
  /// `shadow` (optional) runs the desired state's shadow modules (SyncResponse.shadow_modules).
  ModuleManager(const Options& options, ModelHost* host, ShadowRunner* shadow = nullptr)
      : options_(options), store_(options.state_dir + "/modules"), host_(*host), shadow_(shadow) {}

  /// Loads the modules active (and previous) before the restart.
  absl::Status Restore();
  /// The desired generation the recorded modules came from (0: none recorded).
  int64_t RecordedGeneration() const;
  /// One pass over the desired modules; returns the first error (the others are still tried).
  absl::Status Reconcile(const v1::SyncResponse& desired, const ModuleStore::Fetcher& fetch);
  /// What runs, what is kept as previous and what failed, for the next Sync.
  void Report(v1::DeviceState* state) const;
  /// The host swapped `refused` out after it misbehaved: never install it again (kept across
  /// restarts), report why, and record which module is active now.
  void OnLocalRollback(const v1::ModuleRef& refused, const std::string& why);

 private:
  absl::Status Install(const v1::ModuleRef& ref, const std::string& signing_key,
                       const ModuleStore::Fetcher& fetch);
  /// Downloads (or finds on disk) and verifies `ref` against its signed manifest.
  absl::StatusOr<ModuleFile> Fetch(const v1::ModuleRef& ref, const std::string& signing_key,
                                   const ModuleStore::Fetcher& fetch);
  /// Brings the shadowed candidates to the desired state's: loads new ones beside the active
  /// modules (never by unloading those: a candidate that does not fit fails), drops the rest.
  absl::Status ReconcileShadows(const v1::SyncResponse& desired, const ModuleStore::Fetcher& fetch);
  /// The digests to keep on disk: what is loaded (with mu_ not held).
  std::set<std::string> Loaded() const;
  absl::Status SaveActive();  // with mu_ held
  /// Reports `ref` failed for `why`, and never retries it when no retry can help. With mu_ held.
  void RecordFailure(const v1::ModuleRef& ref, const absl::Status& why);
  /// Whether `ref` can be loaded next to what is loaded; FAILED_PRECONDITION when it cannot
  /// be loaded even alone.
  absl::StatusOr<bool> FitsBesideLoaded(const v1::ModuleRef& ref) const;
  /// What a loaded module costs in memory: its object (weights and code) and the workspaces
  /// of a couple of concurrent calls, as its signed manifest states them.
  int64_t ModuleMemory(const v1::ModuleRef& ref) const;

  Options options_;
  ModuleStore store_;
  ModelHost& host_;
  ShadowRunner* shadow_;
  mutable std::mutex mu_;
  std::map<std::string, v1::ModuleStatus> shadow_failures_;  // by model; guarded by mu_
  std::map<std::string, v1::ModuleStatus> failures_;  // by model; cleared when it succeeds
  std::map<std::string, std::string> refused_;        // digest → why (not retried)
  std::set<std::string> rolled_back_;                 // digests refused for good (persisted)
  std::string signing_key_;                           // of the desired state being applied
  int64_t generation_ = 0;                            // of the desired state being applied
};

}  // namespace edgeloop::agent
