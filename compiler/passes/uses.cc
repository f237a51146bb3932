#include "compiler/passes/uses.h"

namespace edgeloop::compiler {

Uses::Uses(const Graph& graph) : graph_(graph) {
  for (const Node& node : graph.nodes) {
    for (const std::string& in : node.inputs) {
      if (!in.empty()) ++reads_[in];
    }
  }
  for (const ValueInfo& out : graph.outputs) returned_.insert(out.name);
}

int Uses::SoleReader(const std::string& value) const {
  const auto it = reads_.find(value);
  if (it == reads_.end() || it->second != 1 || returned_.count(value)) return -1;
  for (size_t k = 0; k < graph_.nodes.size(); ++k) {
    const Node& node = graph_.nodes[k];
    if (!node.inputs.empty() && node.inputs[0] == value) return static_cast<int>(k);
  }
  return -1;  // read once, but not as a first input
}

void EraseNodes(Graph& graph, const std::vector<bool>& erased) {
  std::vector<Node> kept;
  for (size_t k = 0; k < graph.nodes.size(); ++k) {
    if (!erased[k]) kept.push_back(std::move(graph.nodes[k]));
  }
  graph.nodes = std::move(kept);
}

}  // namespace edgeloop::compiler
