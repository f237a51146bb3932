#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "edgeloop/v1/rollout.pb.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop::rollout {

/// What the controller measured on the devices of the current wave, for the gates.
struct WaveMeasurements {
  v1::WaveCounts counts;
  int64_t local_rollbacks = 0;  // devices that ran the candidate, then went back on their own
  /// The candidate's windows from the wave's devices over the gate's window.
  v1::TelemetrySummary candidate;
  /// The replaced version's windows from every device (none when nothing was replaced).
  v1::TelemetrySummary replaced;
  bool has_replaced = false;
  /// In the shadow stage: how the candidate compared beside the served module on the wave's
  /// devices (none before any of them counted a shadowed call).
  v1::ShadowSummary shadow;
  bool has_shadow = false;
};

/// The metrics a gate may read, in the order docs/rollouts.md lists them.
const std::vector<std::string>& GateMetrics();

/// Fills a gate's defaults (the comparison each metric usually wants) and checks it:
/// INVALID_ARGUMENT for an unknown metric or comparison, a NaN threshold, or a negative
/// minimum sample size or window.
absl::Status NormalizeGate(v1::RolloutGate& gate);

/// Judges a gate on the measurements: INCONCLUSIVE below its minimum sample size or without
/// the data it compares against; otherwise PASS when the comparison holds and FAIL when it
/// does not — except accuracy_delta, which fails only when its whole 95 % interval lies on the
/// failing side (a worse point estimate inside the noise stays INCONCLUSIVE).
v1::GateResult JudgeGate(const v1::RolloutGate& gate, const WaveMeasurements& m);

}  // namespace edgeloop::rollout
