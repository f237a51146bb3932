#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/prediction_log.h"
#include "agent/serving_model.h"
#include "agent/shadow_runner.h"
#include "edgeloop/v1/local.pb.h"

namespace edgeloop::agent {

namespace lv1 = ::edgeloop::local::v1;  // the local API's messages

/// The models this device serves, one slot per model name. Requests take a reference to a
/// slot's active module (RCU-style: a shared_ptr copied under a lock held for a reference
/// count increment) and keep it for their call; a swap publishes the new module in one
/// pointer exchange, so calls already running finish on the old one, which is unloaded when
/// the last of them ends. The module replaced is kept as the
/// slot's previous one, for an instant local rollback. Thread-safe.
class ModelHost {
 public:
  /// After a swap the new module is on probation: once it has served `min_calls` calls, an
  /// error rate above `max_error_rate`, or a mean run time above `max_latency_ratio` times the
  /// previous module's (and more than `latency_slack_us` above it, so that sub-microsecond
  /// modules do not flap on timer noise), swaps the previous one back at once (on the request
  /// thread: a pointer exchange) and tells `on_rollback`. Probation ends after
  /// `min_calls * 10` good calls.
  struct RollbackPolicy {
    bool enabled = true;
    int64_t min_calls = 50;
    double max_error_rate = 0.05;
    double max_latency_ratio = 3.0;
    double latency_slack_us = 100;
  };
  using RollbackCallback = std::function<void(const v1::ModuleRef& refused, const std::string& why)>;
  void SetRollbackPolicy(const RollbackPolicy& policy, RollbackCallback on_rollback);

  /// Where Feedback's labels go: the counters id of the version that predicted, its
  /// prediction, the label and when it predicted. Set before serving starts.
  using LabelCallback = std::function<void(uint64_t counters, int64_t predicted, int64_t label,
                                           absl::Time predicted_at)>;
  void SetLabelCallback(LabelCallback on_label) { on_label_ = std::move(on_label); }

  /// Where answered calls are offered for a shadowed candidate (not owned; set before
  /// serving starts).
  void SetShadowRunner(ShadowRunner* shadow) { shadow_ = shadow; }

  /// Publishes `model` as its model's active module; the one it replaces becomes previous.
  /// Returns the module that was previous until now, so that the caller chooses where its
  /// unloading runs (it is unloaded when the returned pointer and any call on it let go).
  std::shared_ptr<ServingModel> Activate(std::shared_ptr<ServingModel> model);
  /// Swaps active and previous back. FAILED_PRECONDITION when there is no previous module.
  absl::Status Rollback(const std::string& model);

  /// For a device without memory for two modules at once: from now on new calls to `model`
  /// wait (at most `max_waiting` of them; more get RESOURCE_EXHAUSTED) while the calls running
  /// on its modules finish; then both the active and the previous module are unloaded. The
  /// next Activate() releases the waiting calls onto the new module. DEADLINE_EXCEEDED (and
  /// nothing unloaded) when running calls do not finish within `timeout`.
  absl::Status Drain(const std::string& model, absl::Duration timeout, int max_waiting = 256);
  /// Ends a drain without a new module (loading it failed): the old one is loaded again by
  /// the caller through Activate(); waiting calls get UNAVAILABLE if none comes.
  void EndDrain(const std::string& model);

  std::shared_ptr<ServingModel> Active(const std::string& model) const;
  std::shared_ptr<ServingModel> Previous(const std::string& model) const;

  /// Every model with a module loaded, and its modules, taken in one go — for the background
  /// thread (memory check, state file, report, cache pruning) one raise to normal priority
  /// rather than one per lookup. Holding the pointers delays unloading, so callers let go
  /// of them right after use.
  struct Loaded {
    std::string model;
    std::shared_ptr<ServingModel> active, previous;
  };
  std::vector<Loaded> LoadedModels() const;

  /// Checks the request against the module's signature (count, names, dtype, dims, bytes) and
  /// runs it. NOT_FOUND for a model not served here, INVALID_ARGUMENT naming what does not fit.
  absl::StatusOr<lv1::PredictResponse> Predict(const lv1::PredictRequest& request);
  /// Records the true label of an earlier prediction (the last 65536 or so are remembered),
  /// and hands it to the telemetry of the version that made it.
  absl::StatusOr<lv1::FeedbackResponse> Feedback(const lv1::FeedbackRequest& request);
  lv1::ListModelsResponse List() const;

 private:
  // The module new calls go to. Behind a mutex rather than std::atomic<std::shared_ptr>:
  // libstdc++ builds that on a spin lock (pause, no sleeping), so a thread preempted while
  // holding it — easily, on a busy two-core device — leaves the calls behind it spinning out
  // their time slice. A futex waiter sleeps instead; the critical section is one reference
  // count increment.
  class ActiveModule {
   public:
    std::shared_ptr<ServingModel> load() const {
      std::lock_guard lock(mu_);
      return module_;
    }
    /// The old module is returned, so that it is released outside the lock.
    std::shared_ptr<ServingModel> exchange(std::shared_ptr<ServingModel> module) {
      std::lock_guard lock(mu_);
      module_.swap(module);
      return module;
    }

   private:
    mutable std::mutex mu_;
    std::shared_ptr<ServingModel> module_;
  };

  struct Slot {
    ActiveModule active;
    std::shared_ptr<ServingModel> previous;  // guarded by swap_mu_
    std::atomic<bool> probation{false};      // the active module was just swapped in
    std::atomic<bool> draining{false};
    std::mutex drain_mu;
    std::condition_variable drained;  // signalled when draining ends
    int waiting = 0;                  // calls queued behind a drain; guarded by drain_mu
    int max_waiting = 0;
  };
  // The module a call runs on: waits behind a drain, then takes the active one.
  absl::StatusOr<std::shared_ptr<ServingModel>> Acquire(Slot& slot, const std::string& model);
  // Judges a module on probation after one of its calls.
  void Watch(Slot& slot, const std::shared_ptr<ServingModel>& model);
  RollbackPolicy policy_;
  RollbackCallback on_rollback_;
  Slot* Find(const std::string& model) const;
  Slot& FindOrCreate(const std::string& model);

  mutable std::shared_mutex slots_mu_;  // the map only; slots never move or go away
  std::map<std::string, std::unique_ptr<Slot>> slots_;
  mutable std::mutex swap_mu_;  // one swap at a time; guards previous

  PredictionLog predictions_;  // for Feedback: per-thread rings, no lock on the call path
  LabelCallback on_label_;
  ShadowRunner* shadow_ = nullptr;
};

}  // namespace edgeloop::agent
