#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir.h"

namespace edgeloop::compiler {

/// Samples a version is validated on, from the validation blob pushed with it.
///
/// Format: a serialised onnx.SequenceProto of tensors (what `onnx.helper.make_sequence` writes).
/// One float32 tensor per model input, named as the input, holding n samples stacked on a new
/// first axis: [n, *input shape] (with the input's batch dimension of 1, [n, 1, ...] and
/// [n, ...] are both accepted). Optionally "labels": int64 or int32 [n], the expected class
/// index (arg max of the model's first output), which makes validation report accuracy.
struct ValidationSet {
  int64_t total_samples = 0;                        // in the file
  std::vector<std::map<std::string, Tensor>> samples;  // the first `max_samples` of them
  std::vector<int64_t> labels;                       // per kept sample; empty without labels
};

/// Reads and checks a validation set against the model's inputs: every input present with a
/// matching shape, the same n everywhere, labels within [0, classes). Keeps at most
/// `max_samples` samples. INVALID_ARGUMENT naming the problem otherwise.
absl::StatusOr<ValidationSet> ParseValidationSet(const std::string& bytes, const Graph& graph,
                                                 int max_samples);

}  // namespace edgeloop::compiler
