#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "compiler/ir.h"

namespace edgeloop::compiler {

/// What code generation decided, for the manifest and reports.
struct GeneratedModule {
  std::string c_source;  // one self-contained C file implementing the module ABI
  uint64_t workspace_bytes = 0;
  uint64_t weight_bytes = 0;  // constant data embedded in the module
  int runtime_nodes = 0;      // operators left after folding and fusion
  int folded_nodes = 0;       // evaluated at compile time
  int fused_nodes = 0;        // activations and batch norms merged into their producer
};

struct CBackendOptions {
  std::string model_digest;  // "sha256:..." of the ONNX file, recorded in the module
  std::string target;        // target class, recorded in the module
  int vector_floats = 4;     // floats per SIMD register of the target: weights are packed to it
};

/// Generates C for `graph`: runs the passes (compiler/passes: constant folding, dead-node
/// removal, BatchNorm folding, activation fusion), places every intermediate at a fixed offset
/// of one workspace (PlanWorkspace), and writes each remaining node with its operator's C
/// emitter (compiler/ops). Embeds self-test vectors the reference interpreter computes on the
/// imported graph, so a module's self-test checks the passes too. UNIMPLEMENTED for what the C
/// backend cannot run (3-D convolution, integer tensors at run time, ...). Deterministic: same
/// graph, same text.
absl::StatusOr<GeneratedModule> GenerateC(const Graph& graph, const CBackendOptions& options);

}  // namespace edgeloop::compiler
