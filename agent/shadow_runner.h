#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/serving_model.h"
#include "common/clock.h"

namespace edgeloop::agent {

/// A rollout's shadow stage on the device: candidate modules loaded beside their model's
/// active one, run on a sampled share of the live calls — after the caller's call is answered
/// from the active module, on a thread of their own at background priority — to count how
/// often the candidate agrees and how long it takes. Its results never reach a caller.
///
/// The cost is bounded twice: by a CPU budget (a token bucket filled at `cpu_budget` seconds
/// per second on the clock, holding at most kBurst of that, drained by the CPU time each
/// shadowed call took on the shadow thread) and by a queue of a few calls. A sampled call that
/// finds either spent is counted as skipped. Counts go to the telemetry of the active version
/// (WindowCounters::RecordShadow), so windows the server already checks and stores carry them.
/// Thread-safe.
class ShadowRunner {
 public:
  struct Settings {
    double sample_ratio = 0.1;  // (0, 1]
    double cpu_budget = 0.1;    // share of one core, (0, 1]
    double tolerance = 0;       // see ShadowModule.tolerance (device.proto)
  };
  /// The budget a candidate may spend at once: this many seconds of filling.
  static constexpr absl::Duration kBurst = absl::Milliseconds(200);

  explicit ShadowRunner(const Clock* clock = SystemClock::Get(), size_t queue_limit = 8);
  ~ShadowRunner();
  ShadowRunner(const ShadowRunner&) = delete;
  ShadowRunner& operator=(const ShadowRunner&) = delete;

  /// Runs `candidate` beside its model's active module from now on, in place of any other
  /// candidate of that model (with a full budget).
  void Set(std::shared_ptr<ServingModel> candidate, const Settings& settings);
  /// Stops shadowing `model`; the candidate is unloaded once queued calls on it are done.
  void Clear(const std::string& model);
  /// The candidates being run, for the device's report and its memory accounting.
  std::vector<std::shared_ptr<ServingModel>> Candidates() const;

  /// After a call that succeeded on `active` (inputs and its outputs in the module's order):
  /// maybe queues it for the model's candidate. Cheap when nothing is shadowed (one relaxed
  /// load); otherwise a lock for the draw and the budget, and a copy of the call's tensors
  /// when it is queued.
  void Offer(const std::shared_ptr<ServingModel>& active, const void* const* inputs,
             const void* const* outputs);

  /// Returns once every call queued so far has run (tests).
  void WaitIdle();

 private:
  struct Candidate {
    std::shared_ptr<ServingModel> module;
    Settings settings;
    double tokens = 0;  // seconds of CPU it may spend now
    absl::Time filled;  // when tokens were last topped up
    uint64_t draws = 0;
  };
  struct Job {
    std::shared_ptr<ServingModel> active, candidate;
    double tolerance = 0;
    std::vector<std::vector<float>> inputs, outputs;  // the active call's
  };
  void Loop();
  /// Runs one job; returns the CPU time it took on this thread.
  absl::Duration Run(const Job& job);

  const Clock* clock_;
  const size_t queue_limit_;
  std::atomic<bool> any_{false};  // some model has a candidate
  mutable std::mutex mu_;
  std::condition_variable wake_, idle_;
  std::map<std::string, Candidate> candidates_;  // by model; guarded by mu_
  std::deque<Job> queue_;                        // guarded by mu_
  bool running_job_ = false;                     // guarded by mu_
  bool stop_ = false;                            // guarded by mu_
  std::thread thread_;
};

/// Whether a candidate's outputs agree with the active module's (ShadowModule.tolerance):
/// with tolerance 0 the first output's argmax (its value when it has one element); above 0
/// every element of every output within the tolerance.
bool OutputsAgree(const elm_module& module, const std::vector<std::vector<float>>& active,
                  const std::vector<std::vector<float>>& candidate, double tolerance);

}  // namespace edgeloop::agent
