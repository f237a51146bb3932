#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/onnx_limits.h"
#include "edgeloop/v1/registry.pb.h"
#include "store/blob_store.h"

namespace edgeloop::registry {

/// What the registry records about an ONNX file.
struct OnnxSummary {
  std::vector<v1::TensorSpec> inputs;  // graph inputs that are not initialisers, in order
  std::vector<v1::TensorSpec> outputs;
  int64_t opset = 0;     // default-domain opset import
  std::string producer;  // "pytorch 2.1", "" when not set
};

/// Parses an ONNX model from a blob with libonnx, checks it against the compiler's limits
/// (nesting, node count, external data, names) before ONNX's checker runs on it, and reads
/// its input/output signature. INVALID_ARGUMENT naming the problem when the bytes are not an
/// ONNX model, break a limit or do not pass the checker.
absl::StatusOr<OnnxSummary> InspectOnnx(store::BlobReader& reader,
                                        const compiler::ImportLimits& limits = {});

}  // namespace edgeloop::registry
