#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgeloop::compiler::testing {

/// A real ONNX model, serialised: input "input" [N, in] (N symbolic "batch") →
/// Gemm → Relu → Gemm → Softmax → output "probabilities" [N, out], opset 13, weights laid
/// out as PyTorch exports nn.Linear (Gemm transB=1, [out, in]; OpenCV DNN reads only that), with
/// deterministic pseudo-random weights from `seed`. About 4*(in*hidden + hidden*out) bytes.
std::string MlpOnnx(int in, int hidden, int out, uint32_t seed = 1);

/// The same with any number of layers: widths {in, hidden..., out}, Relu between Gemms.
std::string MlpOnnx(const std::vector<int>& widths, uint32_t seed = 1);

/// A small image classifier, as exported from a typical framework: input "image" [N, 3, 32, 32]
/// → three blocks of 3x3 Conv (16, 32, 64 maps, pads 1; the first followed by
/// BatchNormalization) + Relu, MaxPool 2x2 after the first two → GlobalAveragePool → Flatten
/// → Gemm (10) → Softmax → "probabilities" [N, 10]. Opset 13, deterministic weights.
std::string CnnOnnx(uint32_t seed = 1);

/// An MLP whose serialised size is at least `bytes` (for upload and push benchmarks).
std::string OnnxOfAtLeast(int64_t bytes, uint32_t seed = 1);

/// A validation set as `onnx.helper.make_sequence` writes it: `values` stacked as the float
/// tensor `input` of shape `dims` ([n, ...]), plus int64 "labels" [n] unless empty.
std::string ValidationSetOnnx(const std::string& input, const std::vector<int64_t>& dims,
                              const std::vector<float>& values,
                              const std::vector<int64_t>& labels);

/// A syntactically valid ModelProto that ONNX's checker rejects: a node consumes a tensor
/// that nothing produces.
std::string DanglingInputOnnx();

/// Models that attack their reader rather than compute (the server's push inspection, the
/// compiler): an input named `name` (Relu to "output"); a weight whose data is said to be in
/// the file `location` beside the model; `depth` If nodes nested in each other's branches.
std::string ReluOnnxWithInputName(const std::string& name);
std::string ExternalDataOnnx(const std::string& location);
std::string NestedSubgraphsOnnx(int depth);

}  // namespace edgeloop::compiler::testing
