#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop::compiler {

/// Samples of a model's inputs and what the reference interpreter computed for them: the
/// material a version's reference statistics are made of.
struct ReferenceRun {
  std::vector<std::map<std::string, Tensor>> inputs;  // per sample, by input name
  std::vector<Tensor> first_outputs;                  // per sample: the model's first output
  std::vector<int64_t> labels;                        // per sample, or empty
};

/// The reference a version's devices are compared with (proto/edgeloop/v1/telemetry.proto):
/// for each of `features` its edges (minimum, the nine deciles interpolated linearly as
/// numpy's default quantile does, maximum) and its histogram on them; for a classifier the
/// argmax count per class and the top-1 confidence histogram (the output as probabilities
/// when it is a probability vector, else its softmax), otherwise a histogram of the first
/// output's value (its mean when it has several elements); accuracy when there are labels.
/// INVALID_ARGUMENT without samples or when a feature yields NaN on one.
absl::StatusOr<v1::ReferenceStatistics> ComputeReferenceStatistics(
    const ReferenceRun& run, const std::vector<v1::MonitoredFeature>& features);

}  // namespace edgeloop::compiler
