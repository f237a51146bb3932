#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "compiler/ir.h"
#include "compiler/onnx_limits.h"

namespace edgeloop::compiler {

/// Whether the compiler implements the operator (its registry, compiler/ops, has it).
bool IsSupportedOperator(const std::string& op_type);

/// Loads an ONNX model into the IR: runs ONNX's checker and shape inference, fixes a symbolic
/// leading (batch) dimension of the inputs to 1, and requires every other shape to be static.
/// Errors: INVALID_ARGUMENT for a malformed or hostile model (with the reason), UNIMPLEMENTED
/// naming every unsupported operator and the nodes that use it (one message for all of them).
absl::StatusOr<Graph> ImportOnnx(const std::string& model_bytes, const ImportLimits& limits = {});

/// A TensorProto (test data, initialisers) as an IR tensor; UNIMPLEMENTED for element types
/// the compiler does not handle.
absl::StatusOr<Tensor> TensorFromProtoBytes(const std::string& bytes);

}  // namespace edgeloop::compiler
