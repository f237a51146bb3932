#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir.h"

namespace edgeloop::compiler {

/// Runs one node with its operator's reference kernel (compiler/ops), then its fused
/// activation: `inputs` in the node's order, nullptr for an omitted one.
absl::StatusOr<std::vector<Tensor>> RunNode(const Node& node, int64_t opset,
                                            std::vector<const Tensor*> inputs);

/// Runs a graph with plain loops, one operator at a time: the ground truth that compiled
/// modules and validation are compared against. Slow on purpose — clarity over speed.
/// INVALID_ARGUMENT when an input is missing or has the wrong shape; UNIMPLEMENTED for an
/// operator variant it does not handle (e.g. integer arithmetic).
absl::StatusOr<std::map<std::string, Tensor>> RunReference(
    const Graph& graph, const std::map<std::string, Tensor>& inputs);

/// The same, returning every value the graph computes (constants, inputs, intermediates,
/// outputs): the compiler reads shapes and folds constants from it.
absl::StatusOr<std::map<std::string, Tensor>> RunReferenceAllValues(
    const Graph& graph, const std::map<std::string, Tensor>& inputs);

}  // namespace edgeloop::compiler
