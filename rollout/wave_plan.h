#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "edgeloop/v1/rollout.pb.h"

namespace edgeloop::rollout {

/// A rollout's waves as cumulative device counts. A spec gives percentages of the matching
/// devices (`1, 10, 50, 100`), device counts (`5, 50, 500`) or an exponential rate; whatever it
/// gives, the plan ends with a wave of every matching device (added when the spec stops short),
/// so a finished rollout always covers its selector.
class WavePlan {
 public:
  /// INVALID_ARGUMENT for more than one kind of wave, waves that do not increase, percentages
  /// outside (0, 100], counts below 1, a factor not above 1 or more than kMaxWaves waves.
  static absl::StatusOr<WavePlan> FromSpec(const v1::RolloutSpec& spec);

  static constexpr int kMaxWaves = 32;

  /// Devices released by the end of each wave when `matching` devices match (the last entry is
  /// `matching`). A wave always has at least one device while any is left; waves that can add
  /// none for a small fleet repeat the previous count.
  std::vector<int64_t> Cumulative(int64_t matching) const;
  /// How the operator wrote wave `index` ("1%", "50 devices", "all").
  std::string Label(int index, int64_t matching) const;
  /// Releases per minute at most (0: no limit).
  int64_t max_per_minute() const { return max_per_minute_; }

 private:
  enum class Kind { kPercent, kCount, kExponential };
  Kind kind_ = Kind::kPercent;
  std::vector<double> steps_;  // percentages or counts as given
  int64_t start_ = 0;
  double factor_ = 0;
  int64_t max_per_minute_ = 0;
};

}  // namespace edgeloop::rollout
