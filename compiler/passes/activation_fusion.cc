#include <cmath>

#include "compiler/passes/passes.h"
#include "compiler/passes/uses.h"

namespace edgeloop::compiler {
namespace {

// The activation `node` computes, when it is one a producer can apply as it writes; kNone
// otherwise (e.g. a Clip whose bounds are known only at run time).
FusedActivation AsActivation(const Graph& graph, const Node& node) {
  FusedActivation act;
  if (node.op == "Relu") {
    act.kind = FusedActivation::Kind::kRelu;
  } else if (node.op == "Clip") {
    act.lo = -INFINITY;
    act.hi = INFINITY;
    if (graph.opset < 11) {
      act.lo = node.Float("min", act.lo);
      act.hi = node.Float("max", act.hi);
    } else {
      for (size_t k = 1; k < 3 && k < node.inputs.size(); ++k) {
        if (node.inputs[k].empty()) continue;
        const auto it = graph.constants.find(node.inputs[k]);
        if (it == graph.constants.end() || it->second.f.empty()) return {};
        (k == 1 ? act.lo : act.hi) = it->second.f[0];
      }
    }
    act.kind = FusedActivation::Kind::kClip;
  }
  return act;
}

}  // namespace

absl::Status FuseActivations(Graph& graph, PassStats& stats) {
  const Uses uses(graph);
  std::vector<bool> absorbed(graph.nodes.size(), false);
  for (Node& node : graph.nodes) {
    if ((node.op != "Conv" && node.op != "Gemm") ||
        node.activation.kind != FusedActivation::Kind::kNone) {
      continue;
    }
    const int next = uses.SoleReader(node.outputs[0]);
    if (next < 0) continue;
    const FusedActivation act = AsActivation(graph, graph.nodes[next]);
    if (act.kind == FusedActivation::Kind::kNone) continue;
    node.activation = act;
    node.outputs[0] = graph.nodes[next].outputs[0];
    absorbed[next] = true;
    ++stats.fused_nodes;
  }
  EraseNodes(graph, absorbed);
  return absl::OkStatus();
}

}  // namespace edgeloop::compiler
