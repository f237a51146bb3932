#pragma once

#include <cstdint>
#include <string>

namespace edgeloop::registry::testing {

/// A real ONNX model, serialised: input "input" [N, in] (N symbolic "batch") →
/// Gemm → Relu → Gemm → Softmax → output "probabilities" [N, out], opset 13, with
/// deterministic pseudo-random weights from `seed`. About 4*(in*hidden + hidden*out) bytes.
std::string MlpOnnx(int in, int hidden, int out, uint32_t seed = 1);

/// An MLP whose serialised size is at least `bytes` (for upload and push benchmarks).
std::string OnnxOfAtLeast(int64_t bytes, uint32_t seed = 1);

/// A syntactically valid ModelProto that ONNX's checker rejects: a node consumes a tensor
/// that nothing produces.
std::string DanglingInputOnnx();

}  // namespace edgeloop::registry::testing
