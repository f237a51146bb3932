#include "rollout/gates.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace edgeloop::rollout {
namespace {

// Each metric's usual comparison, used when a gate gives none.
const std::map<std::string, std::string>& DefaultOps() {
  static const auto* ops = new std::map<std::string, std::string>{
      {"install_success_ratio", ">="}, {"failed_installs", "<="}, {"error_rate", "<="},
      {"latency_p95_ratio", "<="},     {"accuracy_delta", ">="},  {"drifted_feature_ratio", "<="},
      {"shadow_agreement", ">="},
  };
  return *ops;
}

bool Holds(const std::string& op, double value, double threshold) {
  if (op == "<") return value < threshold;
  if (op == "<=") return value <= threshold;
  if (op == ">") return value > threshold;
  return value >= threshold;
}

v1::GateResult Inconclusive(v1::GateResult r, const std::string& why) {
  r.set_verdict("INCONCLUSIVE");
  r.set_detail(why);
  return r;
}

// The verdict of a plain comparison with a minimum sample size.
v1::GateResult Compare(v1::GateResult r, const v1::RolloutGate& gate, double value, int64_t samples,
                       const char* unit) {
  r.set_value(value);
  r.set_samples(samples);
  if (samples < std::max<int64_t>(gate.min_samples(), 1)) {
    return Inconclusive(r, absl::StrCat(samples, " ", unit, ", ",
                                        std::max<int64_t>(gate.min_samples(), 1), " needed"));
  }
  r.set_verdict(Holds(gate.op(), value, gate.threshold()) ? "PASS" : "FAIL");
  return r;
}

}  // namespace

const std::vector<std::string>& GateMetrics() {
  static const auto* metrics = new std::vector<std::string>{
      "install_success_ratio", "failed_installs", "error_rate",
      "latency_p95_ratio",     "accuracy_delta",  "drifted_feature_ratio", "shadow_agreement"};
  return *metrics;
}

absl::Status NormalizeGate(v1::RolloutGate& gate) {
  auto op = DefaultOps().find(gate.metric());
  if (op == DefaultOps().end()) {
    std::string known;
    for (const std::string& m : GateMetrics())
      absl::StrAppend(&known, known.empty() ? "" : ", ", m);
    return absl::InvalidArgumentError(
        absl::StrCat("unknown gate metric \"", gate.metric().substr(0, 64), "\" (", known, ")"));
  }
  if (gate.op().empty()) gate.set_op(op->second);
  if (gate.op() != "<" && gate.op() != "<=" && gate.op() != ">" && gate.op() != ">=") {
    return absl::InvalidArgumentError(absl::StrCat("gate ", gate.metric(),
                                                   ": unknown comparison \"",
                                                   gate.op().substr(0, 8), "\" (<, <=, >, >=)"));
  }
  if (!std::isfinite(gate.threshold())) {
    return absl::InvalidArgumentError(
        absl::StrCat("gate ", gate.metric(), ": threshold must be a number"));
  }
  if (gate.min_samples() < 0 || gate.window_seconds() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gate ", gate.metric(), ": minSamples and windowSeconds must not be negative"));
  }
  return absl::OkStatus();
}

v1::GateResult JudgeGate(const v1::RolloutGate& gate, const WaveMeasurements& m) {
  v1::GateResult r;
  r.set_metric(gate.metric());
  r.set_op(gate.op());
  r.set_threshold(gate.threshold());
  const v1::WaveCounts& c = m.counts;
  const std::string& metric = gate.metric();
  if (metric == "install_success_ratio") {
    // Of the devices whose install has settled; those still on the way are not failures yet.
    const int64_t settled = c.active() + c.failed();
    return Compare(r, gate, settled > 0 ? static_cast<double>(c.active()) / settled : 0, settled,
                   "installs settled");
  }
  if (metric == "failed_installs") {
    const int64_t told = c.pending() + c.downloading() + c.active() + c.failed() + c.offline();
    r.set_value(static_cast<double>(c.failed()));
    r.set_samples(told);
    if (told < gate.min_samples()) {
      return Inconclusive(r, absl::StrCat(told, " devices, ", gate.min_samples(), " needed"));
    }
    r.set_verdict(Holds(gate.op(), r.value(), gate.threshold()) ? "PASS" : "FAIL");
    if (m.local_rollbacks > 0) {
      r.set_detail(absl::StrCat(m.local_rollbacks, " of them went back on their own"));
    }
    return r;
  }
  if (metric == "error_rate") {
    r.set_low(m.candidate.errors().low());
    r.set_high(m.candidate.errors().high());
    return Compare(r, gate, m.candidate.errors().value(), m.candidate.requests(), "requests");
  }
  if (metric == "latency_p95_ratio") {
    if (!m.has_replaced || m.replaced.requests() == 0 || m.replaced.latency_p95_us() <= 0) {
      return Inconclusive(r, "no latency of the replaced version to compare with");
    }
    const int64_t samples = std::min(m.candidate.requests(), m.replaced.requests());
    const double ratio = m.candidate.latency_p95_us() / m.replaced.latency_p95_us();
    r = Compare(r, gate, ratio, samples, "requests");
    r.set_detail(absl::StrFormat("p95 %.0f us against %.0f us", m.candidate.latency_p95_us(),
                                 m.replaced.latency_p95_us()));
    return r;
  }
  if (metric == "accuracy_delta") {
    if (!m.has_replaced || m.replaced.accuracy().trials() == 0) {
      return Inconclusive(r, "no labelled outcomes of the replaced version to compare with");
    }
    const v1::Proportion& a = m.candidate.accuracy();
    const v1::Proportion& b = m.replaced.accuracy();
    // The difference of two proportions with Newcombe's interval from their Wilson intervals.
    const double delta = a.value() - b.value();
    const double low = delta - std::hypot(a.value() - a.low(), b.high() - b.value());
    const double high = delta + std::hypot(a.high() - a.value(), b.value() - b.low());
    r.set_value(100 * delta);
    r.set_low(100 * low);
    r.set_high(100 * high);
    r.set_samples(std::min(a.trials(), b.trials()));
    r.set_detail(absl::StrFormat("%.1f %% (%d labels) against %.1f %% (%d labels)", 100 * a.value(),
                                 a.trials(), 100 * b.value(), b.trials()));
    if (r.samples() < std::max<int64_t>(gate.min_samples(), 1)) {
      r.set_verdict("INCONCLUSIVE");
      return r;
    }
    if (Holds(gate.op(), r.value(), gate.threshold())) {
      r.set_verdict("PASS");
    } else {
      // Worse by the point estimate: a failure only when even the interval's best end is.
      const double best = (gate.op() == ">" || gate.op() == ">=") ? r.high() : r.low();
      r.set_verdict(Holds(gate.op(), best, gate.threshold()) ? "INCONCLUSIVE" : "FAIL");
    }
    return r;
  }
  if (metric == "drifted_feature_ratio") {
    if (m.candidate.features_size() == 0) {
      return Inconclusive(r, "no monitored features judged against a reference yet");
    }
    return Compare(r, gate, m.candidate.drifted_share(), m.candidate.requests(), "requests");
  }
  if (metric == "shadow_agreement") {
    if (!m.has_shadow || m.shadow.requests() == 0) {
      return Inconclusive(r, "no call has run on the candidate beside the served module yet");
    }
    const v1::Proportion& a = m.shadow.agreement();
    r.set_low(a.low());
    r.set_high(a.high());
    r = Compare(r, gate, a.value(), a.trials(), "shadowed calls");
    if (r.verdict() != "INCONCLUSIVE") {
      r.set_detail(absl::StrFormat(
          "%d of %d agreed; candidate p95 %.0f us, %d errors; %d sampled calls skipped "
          "(CPU budget)",
          a.successes(), a.trials(), m.shadow.latency_p95_us(), m.shadow.errors(),
          m.shadow.skipped()));
    }
    return r;
  }
  return Inconclusive(r, "unknown metric");
}

}  // namespace edgeloop::rollout
