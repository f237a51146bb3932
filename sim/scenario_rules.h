#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sim/scenario.pb.h"

namespace edgeloop::sim {

/// What a model does on a device now, by the scenario's behaviours.
struct ModelBehaviour {
  double accuracy = 0.9;
  double error_rate = 0;
  double latency_us = 1000;
  double agreement = 0.98;  // with the served version, when shadowed beside it
};

/// A scenario with its defaults filled in, and the questions the simulator asks of it.
/// Immutable once loaded; thread-safe.
class ScenarioRules {
 public:
  /// From JSON (proto3 mapping of edgeloop.sim.Scenario); "" is the default scenario.
  /// INVALID_ARGUMENT naming what is wrong (unknown fault kind, a share outside [0, 1]...).
  static absl::StatusOr<ScenarioRules> FromJson(const std::string& json);

  const Scenario& scenario() const { return scenario_; }
  /// The last behaviour matching the model, version, cohort and time since the start.
  ModelBehaviour BehaviourOf(const std::string& model, int64_t version, const std::string& cohort,
                             absl::Duration elapsed) const;
  /// Whether a fault of `kind` applies to device `index` now; its factor in *factor.
  bool Faulty(const std::string& kind, int index, const std::string& cohort,
              const std::string& model, int64_t version, absl::Duration elapsed,
              double* factor = nullptr) const;

 private:
  Scenario scenario_;
};

}  // namespace edgeloop::sim
