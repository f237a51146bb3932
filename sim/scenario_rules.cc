#include "sim/scenario_rules.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/proto_json.h"
#include "common/status.h"

namespace edgeloop::sim {
namespace {

bool Share(double share) { return std::isfinite(share) && share >= 0 && share <= 1; }

// A stable number in [0, 1) for (device, fault): the same devices suffer a fault every run.
double Draw(int index, int fault) {
  uint64_t x = static_cast<uint64_t>(index) * 0x9E3779B97F4A7C15ULL + fault * 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 29;
  return static_cast<double>(x >> 11) / static_cast<double>(1ULL << 53);
}

}  // namespace

absl::StatusOr<ScenarioRules> ScenarioRules::FromJson(const std::string& json) {
  ScenarioRules rules;
  if (!json.empty()) RETURN_IF_ERROR(ParseProtoJson(json, &rules.scenario_));
  Scenario& s = rules.scenario_;
  if (s.cohort_label().empty()) s.set_cohort_label("site");
  if (s.calls_per_second() == 0) s.set_calls_per_second(2);
  if (s.labelled_share() == 0) s.set_labelled_share(0.5);
  if (!(s.calls_per_second() > 0) || s.calls_per_second() > 10000) {
    return absl::InvalidArgumentError("callsPerSecond must be above 0 and at most 10000");
  }
  if (!Share(s.labelled_share())) return absl::InvalidArgumentError("labelledShare must be 0..1");
  for (const DeviceGroup& g : s.groups()) {
    if (!(g.weight() > 0)) return absl::InvalidArgumentError("a group's weight must be above 0");
    if (g.target().empty()) return absl::InvalidArgumentError("a group needs a target class");
  }
  for (const sim::Behaviour& b : s.behaviours()) {
    if (!Share(b.accuracy()) || !Share(b.error_rate()) || !Share(b.agreement()) ||
        b.latency_us() < 0) {
      return absl::InvalidArgumentError(
          "a behaviour's accuracy, errorRate and agreement must be 0..1 and latencyUs not "
          "negative");
    }
  }
  for (const Fault& f : s.faults()) {
    if (f.kind() != "fail_install" && f.kind() != "offline" && f.kind() != "flap" &&
        f.kind() != "slow") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown fault \"", f.kind(), "\" (fail_install, offline, flap, slow)"));
    }
    if (!Share(f.share())) return absl::InvalidArgumentError("a fault's share must be 0..1");
  }
  return rules;
}

ModelBehaviour ScenarioRules::BehaviourOf(const std::string& model, int64_t version,
                                          const std::string& cohort, absl::Duration elapsed) const {
  ModelBehaviour out;
  for (const sim::Behaviour& b : scenario_.behaviours()) {
    if (!b.model().empty() && b.model() != model) continue;
    if (b.version() != 0 && b.version() != version) continue;
    if (!b.cohort().empty() && b.cohort() != cohort) continue;
    if (elapsed < absl::Seconds(b.after_seconds())) continue;
    out.accuracy = b.accuracy();
    out.error_rate = b.error_rate();
    if (b.latency_us() > 0) out.latency_us = b.latency_us();
    if (b.agreement() > 0) out.agreement = b.agreement();
  }
  return out;
}

bool ScenarioRules::Faulty(const std::string& kind, int index, const std::string& cohort,
                           const std::string& model, int64_t version, absl::Duration elapsed,
                           double* factor) const {
  for (int k = 0; k < scenario_.faults_size(); ++k) {
    const Fault& f = scenario_.faults(k);
    if (f.kind() != kind) continue;
    if (!f.cohort().empty() && f.cohort() != cohort) continue;
    if (!f.model().empty() && !model.empty() && f.model() != model) continue;
    if (f.version() != 0 && version != 0 && f.version() != version) continue;
    if (elapsed < absl::Seconds(f.after_seconds())) continue;
    if (f.for_seconds() > 0 && elapsed >= absl::Seconds(f.after_seconds() + f.for_seconds())) {
      continue;
    }
    if (Draw(index, k) >= f.share()) continue;
    if (kind == "flap" &&
        (absl::ToInt64Seconds(elapsed - absl::Seconds(f.after_seconds())) / 10) % 2 == 1) {
      continue;  // the other half of the time it is back
    }
    if (factor != nullptr) *factor = f.factor() > 0 ? f.factor() : 1;
    return true;
  }
  return false;
}

}  // namespace edgeloop::sim
