#pragma once

// What an operator's C emitter can ask of the C backend while it writes one node.
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "compiler/c_literal.h"
#include "compiler/ir.h"

namespace edgeloop::compiler {

class CEmitContext {
 public:
  using Shape = std::vector<int64_t>;
  virtual ~CEmitContext() = default;

  virtual const Node& node() const = 0;
  virtual int64_t opset() const = 0;
  /// Every value at compile time: constants exactly, the others as computed on the sample
  /// inputs (so their shapes and types are known).
  virtual const Tensor& Value(const std::string& name) const = 0;
  virtual bool IsConst(const std::string& name) const = 0;
  /// The C expression (a `float*`) for a value: an input, an output, a workspace slot or an
  /// embedded constant.
  virtual std::string Ref(const std::string& value) = 0;
  /// Embeds a tensor computed at compile time; returns its C array's name.
  virtual std::string Const(const Tensor& t) = 0;
  /// Embeds an i64 array (shapes, strides, offsets); returns its name.
  virtual std::string Array(const std::string& prefix, const Shape& values) = 0;
  /// Constant B (K x N, element (p, j) from `b`) in el_gemm_pb's panels.
  virtual std::string PackPanels(int64_t K, int64_t N,
                                 const std::function<float(int64_t, int64_t)>& b) = 0;
  /// Constant A (`groups` of `rows` x K) in el_gemm_pa's panels.
  virtual std::string PackRows(const Tensor& a, int64_t groups, int64_t rows, int64_t K) = 0;
  /// This node's scratch region (as its CScratch asked for).
  virtual std::string Scratch() = 0;
  /// Appends C statements to the module's run().
  virtual void Emit(absl::string_view code) = 0;

  // Shorthands over the above.
  std::string In(size_t k) { return Ref(node().inputs.at(k)); }
  const Shape& InShape(size_t k) const { return Value(node().inputs.at(k)).shape; }
  bool HasInput(size_t k) const { return node().inputs.size() > k && !node().inputs[k].empty(); }
  const Tensor& Out() const { return Value(node().outputs.at(0)); }
  std::string OutRef() { return Ref(node().outputs.at(0)); }
  absl::Status Unsupported(absl::string_view why) const;
};

}  // namespace edgeloop::compiler
