#pragma once

#include <cstdint>

namespace edgeloop::telemetry {

/// A proportion with its Wilson score interval.
struct Proportion {
  int64_t successes = 0;
  int64_t trials = 0;
  double value = 0;  // successes / trials; 0 without trials
  double low = 0;    // the interval; [0, 1] without trials
  double high = 1;
};

/// The Wilson score interval for `successes` out of `trials` at `z` standard deviations (1.96:
/// 95 %). Unlike the normal approximation it stays inside [0, 1] and is honest for small
/// samples and proportions near 0 or 1, which is where a device cohort's accuracy often is.
Proportion Wilson(int64_t successes, int64_t trials, double z = 1.959963984540054);

}  // namespace edgeloop::telemetry
