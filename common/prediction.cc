#include "common/prediction.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace edgeloop {

bool IsClassifierOutput(const std::vector<int64_t>& shape) {
  if (shape.size() == 1) return shape[0] >= 2;
  return shape.size() == 2 && shape[0] == 1 && shape[1] >= 2;
}

TopClass TopClassOf(const float* output, int64_t n) {
  TopClass top;
  if (n <= 0) return top;
  double sum = 0;
  bool in_range = true;
  int64_t best = 0;
  for (int64_t k = 0; k < n; ++k) {
    const float v = output[k];
    if (std::isnan(v)) return top;
    sum += v;
    in_range = in_range && v >= 0 && v <= 1;
    if (v > output[best]) best = k;
  }
  top.index = best;
  if (in_range && std::abs(sum - 1) <= 1e-3) {
    top.probability = output[best];
    return top;
  }
  // softmax(best) = 1 / Σ exp(v - max): the largest term is 1, so nothing overflows.
  double total = 0;
  for (int64_t k = 0; k < n; ++k) total += std::exp(static_cast<double>(output[k]) - output[best]);
  top.probability = 1.0 / total;
  return top;
}

int ConfidenceBin(double probability) {
  if (!(probability >= 0)) return 0;
  return std::min(static_cast<int>(probability * kConfidenceBins), kConfidenceBins - 1);
}

double PredictionValue(const float* output, int64_t n) {
  if (n <= 0) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (int64_t k = 0; k < n; ++k) sum += output[k];
  return sum / static_cast<double>(n);
}

}  // namespace edgeloop
