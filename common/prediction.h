#pragma once

// What a device records of each prediction, computed by one definition that the compiler (a
// version's reference) and the agent (every call) share, so that the two histograms compared
// later were filled by the same code. Nothing here allocates: the agent runs it per call.
#include <cstdint>
#include <vector>

namespace edgeloop {

/// Confidence histograms have this many equal bins on [0, 1].
inline constexpr int kConfidenceBins = 20;

/// Classifiers with more classes are monitored as regressors: per-class counts stay small.
inline constexpr int64_t kMaxClasses = 4096;

/// A model is a classifier when its first output is a vector [C] or [1, C] with C >= 2.
bool IsClassifierOutput(const std::vector<int64_t>& shape);

/// The predicted class and its probability. The output is taken as probabilities when it
/// already is a probability vector (every value in [0, 1], summing to 1 within 1e-3: a model
/// ending in Softmax), else as logits (its softmax). Ties go to the lower class; NaN in the
/// output gives class -1.
struct TopClass {
  int64_t index = -1;
  double probability = 0;
};
TopClass TopClassOf(const float* output, int64_t n);

/// The confidence bin of a probability: [k/20, (k+1)/20), the last closed.
int ConfidenceBin(double probability);

/// A regressor's prediction value: its first output's mean (NaN for an empty output).
double PredictionValue(const float* output, int64_t n);

}  // namespace edgeloop
