#pragma once

// The passes over the IR between import and a backend. Each rewrites the graph into one that
// computes the same outputs (up to float rounding) and can be run and tested alone; the
// pipeline runs them in the order listed in GraphPasses().
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "compiler/ir.h"

namespace edgeloop::compiler {

/// What the passes did, for the manifest and the compile report.
struct PassStats {
  int folded_nodes = 0;   // evaluated at compile time
  int removed_nodes = 0;  // dead: nothing read their outputs
  int fused_nodes = 0;    // merged into the operator before them
};

using GraphPass = absl::Status (*)(Graph& graph, PassStats& stats);

struct Pass {
  std::string_view name;
  GraphPass run;
};

/// Nodes whose inputs are all constant are evaluated now (with their reference kernels); their
/// outputs become constants and the nodes go.
absl::Status FoldConstants(Graph& graph, PassStats& stats);

/// Nodes whose outputs nothing reads and the graph does not return go.
absl::Status RemoveDeadNodes(Graph& graph, PassStats& stats);

/// A BatchNormalization (inference, constant parameters) that is the only reader of a Conv
/// with constant weights is folded into the Conv's weights and bias.
absl::Status FoldBatchNorms(Graph& graph, PassStats& stats);

/// A Relu, or a Clip with constant bounds, that is the only reader of a Conv's or Gemm's
/// output becomes that node's fused activation.
absl::Status FuseActivations(Graph& graph, PassStats& stats);

/// The passes, in order: constant folding, dead-node removal, BatchNorm folding, activation
/// fusion. Adding a pass is adding it here.
const std::vector<Pass>& GraphPasses();

/// Runs GraphPasses() over `graph`.
absl::Status Optimize(Graph& graph, PassStats& stats);

}  // namespace edgeloop::compiler
