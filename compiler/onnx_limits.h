#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "compiler/ir.h"

// Declared, not included: users of ImportLimits need not see libonnx's headers.
namespace onnx {
class ModelProto;
}  // namespace onnx
namespace google::protobuf::io {
class CodedInputStream;
}  // namespace google::protobuf::io

namespace edgeloop::compiler {

/// What a model file may ask of whoever reads it. The same limits hold where the server
/// inspects a pushed model and where the compiler imports it, so nothing the registry accepts
/// is refused later for its size, and nothing hostile gets further than the first reader.
struct ImportLimits {
  int64_t max_nodes = 100000;  // in the graph and every subgraph together
  int64_t max_tensor_elements = kMaxTensorElements;
  int64_t max_rank = 8;
  int64_t max_name_bytes = 4096;  // node, value and dimension names
  int recursion_limit = 64;       // protobuf nesting (subgraphs in attributes nest messages)
};

/// Parses an onnx.ModelProto from `in` with the limits' recursion bound (hostile nesting is
/// refused by the parser, not by our stack), requiring the whole input to be one message with
/// a graph. INVALID_ARGUMENT otherwise.
absl::Status ParseOnnxModel(google::protobuf::io::CodedInputStream& in, const ImportLimits& limits,
                            onnx::ModelProto* model);

/// A name taken from a model (node, value, dimension) may be echoed in errors, logs, JSON and
/// the generated module's string literals: it must be UTF-8 without control characters and at
/// most `max_name_bytes` long. INVALID_ARGUMENT saying which rule it breaks, with the name
/// shown escaped.
absl::Status CheckModelText(absl::string_view what, absl::string_view name,
                            const ImportLimits& limits);

/// Checks a parsed model before ONNX's checker or anything else reads it: at most `max_nodes`
/// nodes (subgraphs included), no tensor that keeps its data in an external file (the checker
/// would look for such a file on the reader's disk), and every name per CheckModelText.
absl::Status CheckModelLimits(const onnx::ModelProto& model, const ImportLimits& limits);

}  // namespace edgeloop::compiler
