#include "compiler/reference_interpreter.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "compiler/ops/operator.h"

namespace edgeloop::compiler {

absl::StatusOr<std::vector<Tensor>> RunNode(const Node& node, int64_t opset,
                                            std::vector<const Tensor*> inputs) {
  // Trailing omitted inputs are the same as absent ones.
  while (!inputs.empty() && inputs.back() == nullptr) inputs.pop_back();
  const KernelContext c{node, opset, std::move(inputs)};
  const OperatorDef* op = FindOperator(node.op);
  if (op == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat(node.op, " '", node.name, "': operator not implemented"));
  }
  if (static_cast<int>(c.in.size()) < op->min_inputs) {
    return absl::InvalidArgumentError(absl::StrCat(node.op, " '", node.name, "': no inputs"));
  }
  ASSIGN_OR_RETURN(std::vector<Tensor> outputs, op->reference(c));
  if (node.activation.kind != FusedActivation::Kind::kNone && !outputs.empty()) {
    for (float& v : outputs[0].f) v = node.activation.Apply(v);
  }
  return outputs;
}

absl::StatusOr<std::map<std::string, Tensor>> RunReference(
    const Graph& graph, const std::map<std::string, Tensor>& inputs) {
  ASSIGN_OR_RETURN(auto values, RunReferenceAllValues(graph, inputs));
  std::map<std::string, Tensor> result;
  for (const ValueInfo& info : graph.outputs) result[info.name] = values.at(info.name);
  return result;
}

absl::StatusOr<std::map<std::string, Tensor>> RunReferenceAllValues(
    const Graph& graph, const std::map<std::string, Tensor>& inputs) {
  constexpr int64_t kMaxHeldElements = 4 * kMaxTensorElements;
  int64_t held = 0;
  std::map<std::string, Tensor> values = graph.constants;
  for (const ValueInfo& info : graph.inputs) {
    auto it = inputs.find(info.name);
    if (it == inputs.end())
      return absl::InvalidArgumentError(absl::StrCat("missing input \"", info.name, "\""));
    if (it->second.shape != info.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input \"", info.name, "\" has shape [", absl::StrJoin(it->second.shape, ","),
          "], expected [", absl::StrJoin(info.shape, ","), "]"));
    }
    values[info.name] = it->second;
  }
  for (const Node& node : graph.nodes) {
    std::vector<const Tensor*> in;
    for (const std::string& name : node.inputs) {
      if (name.empty()) {
        in.push_back(nullptr);
        continue;
      }
      auto it = values.find(name);
      if (it == values.end())
        return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" is not computed"));
      in.push_back(&it->second);
    }
    ASSIGN_OR_RETURN(std::vector<Tensor> outputs, RunNode(node, graph.opset, std::move(in)));
    for (size_t k = 0; k < node.outputs.size() && k < outputs.size(); ++k) {
      if (node.outputs[k].empty()) continue;
      // Every value is kept (the C backend reads them all), so their sum is what is bounded.
      held += outputs[k].size();
      if (held > kMaxHeldElements) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the model's values need more than ", kMaxHeldElements * 4 >> 30,
                         " GiB at compile time (at node ", &node - graph.nodes.data(), ")"));
      }
      values[node.outputs[k]] = std::move(outputs[k]);
    }
  }
  for (const ValueInfo& info : graph.outputs) {
    if (values.count(info.name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("output \"", info.name, "\" is not computed"));
    }
  }
  return values;
}

}  // namespace edgeloop::compiler
