#include <set>

#include "compiler/passes/passes.h"
#include "compiler/passes/uses.h"

namespace edgeloop::compiler {

absl::Status RemoveDeadNodes(Graph& graph, PassStats& stats) {
  std::set<std::string> needed;
  for (const ValueInfo& out : graph.outputs) needed.insert(out.name);
  // Last to first: a node is live when a live node (or the graph) reads one of its outputs.
  std::vector<bool> live(graph.nodes.size(), false);
  for (size_t k = graph.nodes.size(); k-- > 0;) {
    const Node& node = graph.nodes[k];
    for (const std::string& out : node.outputs)
      live[k] = live[k] || (!out.empty() && needed.count(out));
    if (!live[k]) continue;
    for (const std::string& in : node.inputs) {
      if (!in.empty()) needed.insert(in);
    }
  }
  std::vector<bool> dead(live.size());
  for (size_t k = 0; k < live.size(); ++k) {
    dead[k] = !live[k];
    stats.removed_nodes += dead[k];
  }
  EraseNodes(graph, dead);
  return absl::OkStatus();
}

}  // namespace edgeloop::compiler
