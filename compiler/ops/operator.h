#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir.h"

namespace edgeloop::compiler {

class CEmitContext;  // compiler/ops/c_emit.h

/// What a reference kernel sees: the node, the model's opset and the node's inputs (nullptr
/// for an omitted optional input; trailing omitted ones are dropped).
struct KernelContext {
  const Node& node;
  int64_t opset;
  std::vector<const Tensor*> in;
};

/// Computes a node's outputs with plain loops. It is also the operator's shape and type
/// inference and its support check: the compiler runs it on sample inputs and reads every
/// shape from the result, and it refuses (UNIMPLEMENTED) the variants nothing implements.
using ReferenceKernel = absl::StatusOr<std::vector<Tensor>> (*)(const KernelContext&);

/// Writes the C for one node of the runtime graph (compiler/c_backend).
using CEmitter = absl::Status (*)(CEmitContext&);

/// Floats of workspace only this node uses while it runs (im2col columns); 0 for none.
using CScratch = absl::StatusOr<int64_t> (*)(const CEmitContext&);

/// Everything the compiler knows about one ONNX operator, in one place: adding an operator
/// is adding one of these to its family's file (compiler/ops/*.cc).
struct OperatorDef {
  std::string_view name;  // ONNX op_type in the default domain
  ReferenceKernel reference = nullptr;
  CEmitter emit_c = nullptr;  // nullptr: the C backend refuses the operator
  CScratch c_scratch = nullptr;
  int min_inputs = 1;  // fewer present inputs is INVALID_ARGUMENT before the kernel runs
};

/// The operator `op_type` of the default domain, or nullptr when the compiler lacks it.
const OperatorDef* FindOperator(std::string_view op_type);

/// Every operator, by name.
std::vector<std::string_view> OperatorNames();

}  // namespace edgeloop::compiler
