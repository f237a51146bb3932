#include "telemetry/accuracy.h"

#include <algorithm>
#include <cmath>

namespace edgeloop::telemetry {

Proportion Wilson(int64_t successes, int64_t trials, double z) {
  Proportion p;
  p.successes = successes;
  p.trials = trials;
  if (trials <= 0 || successes < 0 || successes > trials) return p;
  const double n = static_cast<double>(trials);
  const double phat = static_cast<double>(successes) / n;
  const double z2 = z * z;
  const double denominator = 1 + z2 / n;
  const double center = (phat + z2 / (2 * n)) / denominator;
  const double half = z / denominator * std::sqrt(phat * (1 - phat) / n + z2 / (4 * n * n));
  p.value = phat;
  p.low = std::max(0.0, center - half);
  p.high = std::min(1.0, center + half);
  return p;
}

}  // namespace edgeloop::telemetry
