#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "compiler/ir.h"

namespace edgeloop::compiler {

/// Who reads which value, for the passes that merge a node into the one before it.
class Uses {
 public:
  explicit Uses(const Graph& graph);

  /// The index of the node that is the only reader of `value` (reading it once, as its first
  /// input), when the graph does not return `value` either; -1 otherwise.
  int SoleReader(const std::string& value) const;

 private:
  const Graph& graph_;
  std::map<std::string, int> reads_;
  std::set<std::string> returned_;
};

/// Removes the nodes marked in `erased` (indexed as graph.nodes), keeping the others' order.
void EraseNodes(Graph& graph, const std::vector<bool>& erased);

}  // namespace edgeloop::compiler
