#include "common/status.h"
#include "compiler/passes/passes.h"

namespace edgeloop::compiler {

const std::vector<Pass>& GraphPasses() {
  static const auto* passes = new std::vector<Pass>{
      {"constant-folding", FoldConstants},
      {"dead-node-removal", RemoveDeadNodes},
      {"batch-norm-folding", FoldBatchNorms},  // before fusion: Conv, BN, Relu becomes one Conv
      {"activation-fusion", FuseActivations},
  };
  return *passes;
}

absl::Status Optimize(Graph& graph, PassStats& stats) {
  for (const Pass& pass : GraphPasses()) RETURN_IF_ERROR(pass.run(graph, stats));
  return absl::OkStatus();
}

}  // namespace edgeloop::compiler
