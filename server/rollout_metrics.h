#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>

#include "absl/time/time.h"
#include "common/clock.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "rollout/controller.h"

namespace edgeloop::server {

/// Rollouts on /metrics: how many are in each state, and for every unfinished rollout (and
/// those finished within the last day) its state, current wave, devices by where they are
/// with the candidate, and each gate's last value and verdict. Labels are bounded: at most
/// 100 rollouts, each with a fixed set of statuses and at most 16 gates. Read from the
/// database at most every `kEvery`, so scrapes do not load it.
class RolloutMetrics {
 public:
  RolloutMetrics(prometheus::Registry& registry, rollout::Controller* controller,
                 const Clock* clock);

  void Refresh();

  static constexpr absl::Duration kEvery = absl::Seconds(5);
  static constexpr absl::Duration kRecent = absl::Hours(24);

 private:
  rollout::Controller& controller_;
  const Clock& clock_;
  std::mutex mu_;
  absl::Time next_ = absl::InfinitePast();
  prometheus::Family<prometheus::Gauge>* by_state_;
  prometheus::Family<prometheus::Gauge>* transitions_;
  prometheus::Family<prometheus::Gauge>* info_;
  prometheus::Family<prometheus::Gauge>* wave_;
  prometheus::Family<prometheus::Gauge>* devices_;
  prometheus::Family<prometheus::Gauge>* gate_value_;
  prometheus::Family<prometheus::Gauge>* gate_passing_;
  // Every per-rollout series exported, so those of a rollout no longer shown are removed.
  using Series = std::map<prometheus::Gauge*, prometheus::Family<prometheus::Gauge>*>;
  std::map<std::string, Series> series_;  // by rollout id
  std::map<std::string, prometheus::Gauge*> states_;
  std::map<std::string, prometheus::Gauge*> transition_series_;
};

}  // namespace edgeloop::server
