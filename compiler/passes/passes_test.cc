// Each pass alone on a small graph built in the IR: what it rewrites, what it must leave
// alone, and that the rewritten graph computes what the original does (reference interpreter).
#include "compiler/passes/passes.h"

#include <cmath>

#include "compiler/c_backend.h"
#include "compiler/onnx_import.h"
#include "compiler/ops/operator.h"
#include "compiler/passes/workspace_plan.h"
#include "compiler/reference_interpreter.h"
#include "gtest/gtest.h"
#include "compiler/testing/onnx_models.h"

namespace edgeloop::compiler {
namespace {

Tensor Floats(std::vector<int64_t> shape, uint32_t seed) {
  Tensor t;
  t.shape = std::move(shape);
  t.f.resize(ElementCount(t.shape));
  for (float& v : t.f) {
    seed = seed * 1664525u + 1013904223u;
    v = static_cast<float>(seed >> 8) / static_cast<float>(1 << 24) * 2.0f - 1.0f;
  }
  return t;
}

Node MakeNode(std::string op, std::vector<std::string> inputs, std::string output) {
  Node n;
  n.name = output;
  n.op = std::move(op);
  n.inputs = std::move(inputs);
  n.outputs = {std::move(output)};
  return n;
}

// x [1, 2, 5, 5] -> Conv (3 maps, 3x3, pad 1) -> conv -> ... as the test adds.
Graph ConvGraph() {
  Graph g;
  g.opset = 13;
  g.inputs = {{"x", DType::kFloat32, {1, 2, 5, 5}}};
  g.constants["w"] = Floats({3, 2, 3, 3}, 1);
  g.constants["b"] = Floats({3}, 2);
  Node conv = MakeNode("Conv", {"x", "w", "b"}, "conv");
  conv.attributes["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  g.nodes.push_back(conv);
  return g;
}

void AddBatchNorm(Graph& g, const std::string& in, const std::string& out) {
  g.constants["scale"] = Floats({3}, 3);
  g.constants["shift"] = Floats({3}, 4);
  g.constants["mean"] = Floats({3}, 5);
  Tensor var = Floats({3}, 6);
  for (float& v : var.f) v = std::abs(v) + 0.5f;
  g.constants["var"] = var;
  g.nodes.push_back(MakeNode("BatchNormalization", {in, "scale", "shift", "mean", "var"}, out));
}

// The graphs compute the same outputs on the same inputs, within float rounding.
void ExpectSameOutputs(const Graph& before, const Graph& after) {
  std::map<std::string, Tensor> inputs;
  uint32_t seed = 100;
  for (const ValueInfo& in : before.inputs) inputs[in.name] = Floats(in.shape, seed++);
  auto expected = RunReference(before, inputs);
  auto actual = RunReference(after, inputs);
  ASSERT_TRUE(expected.ok()) << expected.status();
  ASSERT_TRUE(actual.ok()) << actual.status();
  for (const auto& [name, t] : *expected) {
    const Tensor& got = actual->at(name);
    ASSERT_EQ(got.shape, t.shape) << name;
    for (size_t k = 0; k < t.f.size(); ++k) EXPECT_NEAR(got.f[k], t.f[k], 1e-5) << name << k;
  }
}

std::vector<std::string> Ops(const Graph& g) {
  std::vector<std::string> ops;
  for (const Node& n : g.nodes) ops.push_back(n.op);
  return ops;
}

TEST(ConstantFoldingTest, EvaluatesNodesWhoseInputsAreAllConstant) {
  Graph g;
  g.opset = 13;
  g.inputs = {{"x", DType::kFloat32, {2}}};
  g.outputs = {{"y", DType::kFloat32, {2}}};
  g.constants["c1"] = Floats({2}, 1);
  Node constant = MakeNode("Constant", {}, "c2");
  constant.attributes["value_floats"] = std::vector<float>{3, 4};
  g.nodes.push_back(constant);
  g.nodes.push_back(MakeNode("Add", {"c1", "c2"}, "sum"));
  g.nodes.push_back(MakeNode("Mul", {"x", "sum"}, "y"));
  Graph folded = g;
  PassStats stats;
  ASSERT_TRUE(FoldConstants(folded, stats).ok());
  EXPECT_EQ(stats.folded_nodes, 2);
  EXPECT_EQ(Ops(folded), std::vector<std::string>{"Mul"});
  ASSERT_TRUE(folded.constants.count("sum"));
  EXPECT_FLOAT_EQ(folded.constants["sum"].f[1], g.constants["c1"].f[1] + 4);
  ExpectSameOutputs(g, folded);
}

TEST(ConstantFoldingTest, AHostileConstantSubgraphIsAnErrorNotAnAllocation) {
  Graph g;
  g.opset = 13;
  g.outputs = {{"y", DType::kFloat32, {1}}};
  Tensor pads;
  pads.dtype = DType::kInt64;
  pads.shape = {2};
  pads.i = {0, int64_t{1} << 40};
  g.constants["x"] = Floats({1}, 1);
  g.constants["pads"] = pads;
  g.nodes.push_back(MakeNode("Pad", {"x", "pads"}, "y"));
  PassStats stats;
  EXPECT_EQ(FoldConstants(g, stats).code(), absl::StatusCode::kInvalidArgument);
}

TEST(DeadNodeRemovalTest, DropsWhatNoOutputNeeds) {
  Graph g;
  g.opset = 13;
  g.inputs = {{"x", DType::kFloat32, {4}}};
  g.outputs = {{"y", DType::kFloat32, {4}}};
  g.nodes.push_back(MakeNode("Sigmoid", {"x"}, "unused"));
  g.nodes.push_back(MakeNode("Relu", {"x"}, "y"));
  g.nodes.push_back(MakeNode("Tanh", {"unused"}, "unused2"));
  Graph live = g;
  PassStats stats;
  ASSERT_TRUE(RemoveDeadNodes(live, stats).ok());
  EXPECT_EQ(stats.removed_nodes, 2);
  EXPECT_EQ(Ops(live), std::vector<std::string>{"Relu"});
  ExpectSameOutputs(g, live);
}

TEST(BatchNormFoldingTest, FoldsIntoTheConvBeforeIt) {
  Graph g = ConvGraph();
  AddBatchNorm(g, "conv", "y");
  g.outputs = {{"y", DType::kFloat32, {1, 3, 5, 5}}};
  Graph folded = g;
  PassStats stats;
  ASSERT_TRUE(FoldBatchNorms(folded, stats).ok());
  EXPECT_EQ(stats.fused_nodes, 1);
  ASSERT_EQ(Ops(folded), std::vector<std::string>{"Conv"});
  EXPECT_EQ(folded.nodes[0].outputs[0], "y");
  EXPECT_NE(folded.nodes[0].inputs[1], "w");  // new weights; the originals are untouched
  ExpectSameOutputs(g, folded);
}

TEST(BatchNormFoldingTest, LeavesWhatItCannotFold) {
  {  // the Conv's output is also returned
    Graph g = ConvGraph();
    AddBatchNorm(g, "conv", "y");
    g.outputs = {{"y", DType::kFloat32, {1, 3, 5, 5}}, {"conv", DType::kFloat32, {1, 3, 5, 5}}};
    PassStats stats;
    ASSERT_TRUE(FoldBatchNorms(g, stats).ok());
    EXPECT_EQ(Ops(g), (std::vector<std::string>{"Conv", "BatchNormalization"}));
  }
  {  // weights known only at run time
    Graph g = ConvGraph();
    g.inputs.push_back({"w_in", DType::kFloat32, {3, 2, 3, 3}});
    g.nodes[0].inputs[1] = "w_in";
    AddBatchNorm(g, "conv", "y");
    PassStats stats;
    ASSERT_TRUE(FoldBatchNorms(g, stats).ok());
    EXPECT_EQ(stats.fused_nodes, 0);
  }
  {  // statistics known only at run time
    Graph g = ConvGraph();
    AddBatchNorm(g, "conv", "y");
    g.constants.erase("mean");
    g.inputs.push_back({"mean", DType::kFloat32, {3}});
    PassStats stats;
    ASSERT_TRUE(FoldBatchNorms(g, stats).ok());
    EXPECT_EQ(stats.fused_nodes, 0);
  }
}

TEST(ActivationFusionTest, MergesReluAndConstantClipIntoTheirProducer) {
  Graph g = ConvGraph();
  g.nodes.push_back(MakeNode("Relu", {"conv"}, "relu"));
  g.nodes.push_back(MakeNode("Flatten", {"relu"}, "flat"));
  g.constants["fc"] = Floats({75, 4}, 7);
  g.constants["lo"] = Floats({}, 8);
  g.constants["lo"].f = {-0.25f};
  g.constants["hi"] = Floats({}, 9);
  g.constants["hi"].f = {0.5f};
  g.nodes.push_back(MakeNode("Gemm", {"flat", "fc"}, "gemm"));
  g.nodes.push_back(MakeNode("Clip", {"gemm", "lo", "hi"}, "y"));
  g.outputs = {{"y", DType::kFloat32, {1, 4}}};
  Graph fused = g;
  PassStats stats;
  ASSERT_TRUE(FuseActivations(fused, stats).ok());
  EXPECT_EQ(stats.fused_nodes, 2);
  ASSERT_EQ(Ops(fused), (std::vector<std::string>{"Conv", "Flatten", "Gemm"}));
  EXPECT_EQ(fused.nodes[0].activation.kind, FusedActivation::Kind::kRelu);
  EXPECT_EQ(fused.nodes[0].outputs[0], "relu");
  EXPECT_EQ(fused.nodes[2].activation.kind, FusedActivation::Kind::kClip);
  EXPECT_FLOAT_EQ(fused.nodes[2].activation.lo, -0.25f);
  EXPECT_FLOAT_EQ(fused.nodes[2].activation.hi, 0.5f);
  ExpectSameOutputs(g, fused);
}

TEST(ActivationFusionTest, LeavesRunTimeBoundsAndSharedValues) {
  Graph g = ConvGraph();
  g.inputs.push_back({"lo", DType::kFloat32, {}});
  g.nodes.push_back(MakeNode("Clip", {"conv", "lo"}, "clipped"));  // bound known at run time
  g.nodes.push_back(MakeNode("Relu", {"clipped"}, "y"));           // not after Conv/Gemm
  g.outputs = {{"y", DType::kFloat32, {1, 3, 5, 5}}};
  PassStats stats;
  ASSERT_TRUE(FuseActivations(g, stats).ok());
  EXPECT_EQ(stats.fused_nodes, 0);

  Graph shared = ConvGraph();
  shared.nodes.push_back(MakeNode("Relu", {"conv"}, "y"));
  shared.nodes.push_back(MakeNode("Sigmoid", {"conv"}, "z"));  // a second reader of conv
  shared.outputs = {{"y", DType::kFloat32, {1, 3, 5, 5}}, {"z", DType::kFloat32, {1, 3, 5, 5}}};
  ASSERT_TRUE(FuseActivations(shared, stats).ok());
  EXPECT_EQ(stats.fused_nodes, 0);
}

TEST(PipelineTest, RunsThePassesInOrder) {
  std::vector<std::string_view> names;
  for (const Pass& pass : GraphPasses()) names.push_back(pass.name);
  EXPECT_EQ(names, (std::vector<std::string_view>{"constant-folding", "dead-node-removal",
                                                  "batch-norm-folding", "activation-fusion"}));
  // Conv, BatchNormalization, Relu becomes one Conv only in that order.
  Graph g = ConvGraph();
  AddBatchNorm(g, "conv", "bn");
  g.nodes.push_back(MakeNode("Relu", {"bn"}, "y"));
  g.outputs = {{"y", DType::kFloat32, {1, 3, 5, 5}}};
  Graph optimized = g;
  PassStats stats;
  ASSERT_TRUE(Optimize(optimized, stats).ok());
  EXPECT_EQ(Ops(optimized), std::vector<std::string>{"Conv"});
  EXPECT_EQ(stats.fused_nodes, 2);
  ExpectSameOutputs(g, optimized);
}

TEST(PipelineTest, TheCnnCompilesToOneStepPerBlock) {
  auto graph = ImportOnnx(compiler::testing::CnnOnnx());
  ASSERT_TRUE(graph.ok()) << graph.status();
  auto module = GenerateC(*graph, {"sha256:test", "x86_64-v2", 4});
  ASSERT_TRUE(module.ok()) << module.status();
  // 13 nodes: 3 Conv (+BN on the first) + Relu, 2 MaxPool, GAP, Flatten, Gemm, Softmax.
  EXPECT_EQ(module->fused_nodes, 4);
  EXPECT_EQ(module->folded_nodes, 0);
  EXPECT_EQ(module->runtime_nodes, 9);
}

TEST(WorkspacePlanTest, OverlappingLifetimesNeverShareMemory) {
  const std::vector<Buffer> buffers = {
      {"a", 100, 0, 1}, {"b", 50, 1, 2}, {"c", 100, 2, 3}, {"d", 1, 3, 3}, {"e", 200, 0, 3}};
  const WorkspacePlan plan = PlanWorkspace(buffers);
  auto size = [](const Buffer& b) { return (b.floats + 15) / 16 * 16; };
  for (const Buffer& x : buffers) {
    EXPECT_EQ(plan.offsets.at(x.name) % 16, 0) << x.name;
    EXPECT_LE(plan.offsets.at(x.name) + size(x), plan.floats);
    for (const Buffer& y : buffers) {
      if (x.name == y.name || x.last < y.first || y.last < x.first) continue;
      const int64_t ox = plan.offsets.at(x.name), oy = plan.offsets.at(y.name);
      EXPECT_TRUE(ox + size(x) <= oy || oy + size(y) <= ox) << x.name << " and " << y.name;
    }
  }
  // a and c never live at once: c reuses a's memory, so the plan is smaller than the sum.
  EXPECT_EQ(plan.offsets.at("a"), plan.offsets.at("c"));
  EXPECT_LT(plan.floats, 112 + 64 + 112 + 16 + 208);
}

TEST(OperatorRegistryTest, EveryOperatorHasAReferenceKernelAndTheImporterKnowsIt) {
  const std::vector<std::string_view> names = OperatorNames();
  EXPECT_GE(names.size(), 29u);
  for (std::string_view name : names) {
    const OperatorDef* op = FindOperator(name);
    ASSERT_NE(op, nullptr);
    EXPECT_EQ(op->name, name);
    EXPECT_NE(op->reference, nullptr) << name;
    EXPECT_TRUE(IsSupportedOperator(std::string(name)));
    // Constant is always folded; every other operator reaches the C backend.
    if (name != "Constant") {
      EXPECT_NE(op->emit_c, nullptr) << name;
    }
  }
  EXPECT_EQ(FindOperator("LSTM"), nullptr);
  EXPECT_FALSE(IsSupportedOperator("LSTM"));
}

}  // namespace
}  // namespace edgeloop::compiler
