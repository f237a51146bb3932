#include "common/status.h"
#include "compiler/passes/passes.h"
#include "compiler/reference_interpreter.h"

namespace edgeloop::compiler {

absl::Status FoldConstants(Graph& graph, PassStats& stats) {
  std::vector<Node> runtime;
  for (Node& node : graph.nodes) {
    std::vector<const Tensor*> inputs;
    bool all_constant = true;
    for (const std::string& in : node.inputs) {
      if (in.empty()) {
        inputs.push_back(nullptr);
        continue;
      }
      const auto it = graph.constants.find(in);
      if (it == graph.constants.end()) {
        all_constant = false;
        break;
      }
      inputs.push_back(&it->second);  // std::map: stays valid while constants are added
    }
    if (!all_constant) {
      runtime.push_back(std::move(node));
      continue;
    }
    ASSIGN_OR_RETURN(std::vector<Tensor> outputs, RunNode(node, graph.opset, std::move(inputs)));
    for (size_t k = 0; k < node.outputs.size() && k < outputs.size(); ++k) {
      if (!node.outputs[k].empty()) graph.constants[node.outputs[k]] = std::move(outputs[k]);
    }
    ++stats.folded_nodes;
  }
  graph.nodes = std::move(runtime);
  return absl::OkStatus();
}

}  // namespace edgeloop::compiler
