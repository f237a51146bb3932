#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace edgeloop::compiler {

enum class DType { kFloat32, kInt64, kBool };

/// The most elements one tensor may have anywhere in the compiler: 1 GiB of float32, more than
/// any model meant for a device holds in one tensor, and small enough that sums and products of
/// a few sizes within it cannot overflow int64.
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 28;

/// Elements of a shape that comes from a model (or from arithmetic on one): INVALID_ARGUMENT
/// for a negative dimension or more than kMaxTensorElements elements, computed without ever
/// overflowing.
absl::StatusOr<int64_t> CheckedElementCount(const std::vector<int64_t>& shape);

/// Number of elements of a shape (1 for a scalar).
inline int64_t ElementCount(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

/// Row-major strides of a shape, in elements.
inline std::vector<int64_t> RowMajorStrides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

/// A dense tensor. Float32 data lives in `f`; integer and boolean data (shape operands, masks)
/// in `i`. Row-major.
struct Tensor {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<float> f;
  std::vector<int64_t> i;

  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

using Attribute =
    std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>, Tensor>;

/// An activation a pass merged into the operator that produces its input (Conv, Gemm): the
/// operator's output is the activation's. Not an ONNX concept; only passes set it.
struct FusedActivation {
  enum class Kind { kNone = 0, kRelu = 1, kClip = 2 };  // the C kernels' numbering
  Kind kind = Kind::kNone;
  float lo = 0, hi = 0;  // kClip's bounds

  float Apply(float v) const {
    if (kind == Kind::kRelu) return v > 0 ? v : 0.0f;
    if (kind == Kind::kClip) return v < lo ? lo : (v > hi ? hi : v);
    return v;
  }
};

struct Node {
  std::string name;
  std::string op;
  std::vector<std::string> inputs;   // "" marks an omitted optional input
  std::vector<std::string> outputs;  // "" marks an unused optional output
  std::map<std::string, Attribute> attributes;
  FusedActivation activation;  // applied to outputs[0]

  int64_t Int(const std::string& key, int64_t fallback) const;
  float Float(const std::string& key, float fallback) const;
  std::string String(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> Ints(const std::string& key) const;
  bool Has(const std::string& key) const { return attributes.count(key) > 0; }
};

struct ValueInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;  // static
};

/// A model as the compiler sees it: static shapes, constants materialised, nodes in
/// topological order.
struct Graph {
  int64_t opset = 0;
  std::vector<ValueInfo> inputs;
  std::vector<ValueInfo> outputs;
  std::map<std::string, Tensor> constants;  // initialisers
  std::vector<Node> nodes;

  /// `base`, or `base` with a suffix, such that no constant, input or node output has it: for
  /// values a pass creates.
  std::string UnusedName(const std::string& base) const;
};

}  // namespace edgeloop::compiler
