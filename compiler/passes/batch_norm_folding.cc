#include "compiler/ops/batch_norm.h"
#include "compiler/passes/passes.h"
#include "compiler/passes/uses.h"

namespace edgeloop::compiler {
namespace {

bool FoldableBatchNorm(const Graph& graph, const Node& bn) {
  if (bn.op != "BatchNormalization" || bn.inputs.size() < 5 || bn.Int("training_mode", 0) != 0 ||
      (bn.outputs.size() > 1 && !bn.outputs[1].empty())) {
    return false;
  }
  for (int p = 1; p < 5; ++p) {
    if (!graph.constants.count(bn.inputs[p])) return false;
  }
  return true;
}

}  // namespace

absl::Status FoldBatchNorms(Graph& graph, PassStats& stats) {
  const Uses uses(graph);
  std::vector<bool> absorbed(graph.nodes.size(), false);
  for (Node& conv : graph.nodes) {
    if (conv.op != "Conv" || conv.activation.kind != FusedActivation::Kind::kNone) continue;
    const bool has_bias = conv.inputs.size() > 2 && !conv.inputs[2].empty();
    if (conv.inputs.size() < 2 || !graph.constants.count(conv.inputs[1]) ||
        (has_bias && !graph.constants.count(conv.inputs[2]))) {
      continue;  // weights known only at run time: the BatchNormalization runs on its own
    }
    const int next = uses.SoleReader(conv.outputs[0]);
    if (next < 0 || !FoldableBatchNorm(graph, graph.nodes[next])) continue;
    const Node& bn = graph.nodes[next];
    const auto [s, t] =
        ops::BatchNormAffine(graph.constants.at(bn.inputs[1]), graph.constants.at(bn.inputs[2]),
                             graph.constants.at(bn.inputs[3]), graph.constants.at(bn.inputs[4]),
                             bn.Float("epsilon", 1e-5f));
    Tensor weights = graph.constants.at(conv.inputs[1]);
    const int64_t maps = weights.shape.empty() ? 0 : weights.shape[0];
    if (maps <= 0 || static_cast<int64_t>(s.f.size()) != maps) continue;
    const int64_t per_map = weights.size() / maps;
    Tensor bias;
    bias.shape = {maps};
    for (int64_t m = 0; m < maps; ++m) {
      for (int64_t i = 0; i < per_map; ++i) weights.f[m * per_map + i] *= s.f[m];
      const float b0 = has_bias ? graph.constants.at(conv.inputs[2]).f[m] : 0.0f;
      bias.f.push_back(b0 * s.f[m] + t.f[m]);
    }
    const std::string out = bn.outputs[0];
    const std::string w_name = graph.UnusedName(out + "#folded_weights");
    graph.constants[w_name] = std::move(weights);
    const std::string b_name = graph.UnusedName(out + "#folded_bias");
    graph.constants[b_name] = std::move(bias);
    conv.inputs.resize(3);
    conv.inputs[1] = w_name;
    conv.inputs[2] = b_name;
    conv.outputs[0] = out;
    absorbed[next] = true;
    ++stats.fused_nodes;
  }
  EraseNodes(graph, absorbed);
  return absl::OkStatus();
}

}  // namespace edgeloop::compiler
