#include "compiler/onnx_import.h"

#include <functional>

#include "absl/strings/match.h"
#include "compiler/reference_interpreter.h"
#include "gtest/gtest.h"
#include "onnx/onnx_pb.h"

namespace edgeloop::compiler {
namespace {

onnx::ModelProto Model() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  auto* opset = m.add_opset_import();
  opset->set_version(13);
  m.mutable_graph()->set_name("g");
  return m;
}

void Value(onnx::ValueInfoProto* v, const std::string& name, std::vector<int64_t> dims,
           bool symbolic_batch = false) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  for (size_t k = 0; k < dims.size(); ++k) {
    if (k == 0 && symbolic_batch) {
      t->mutable_shape()->add_dim()->set_dim_param("N");
    } else {
      t->mutable_shape()->add_dim()->set_dim_value(dims[k]);
    }
  }
}

onnx::NodeProto* Add(onnx::GraphProto* g, const std::string& op, std::vector<std::string> in,
                     std::string out) {
  auto* n = g->add_node();
  n->set_op_type(op);
  for (auto& i : in) n->add_input(i);
  n->add_output(out);
  return n;
}

TEST(OnnxImportTest, ImportsAndRunsWithASymbolicBatchFixedToOne) {
  onnx::ModelProto m = Model();
  auto* g = m.mutable_graph();
  Value(g->add_input(), "x", {0, 3}, /*symbolic_batch=*/true);
  Add(g, "Relu", {"x"}, "r");
  Add(g, "Softmax", {"r"}, "y");
  Value(g->add_output(), "y", {0, 3}, true);
  auto graph = ImportOnnx(m.SerializeAsString());
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_EQ(graph->inputs[0].shape, (std::vector<int64_t>{1, 3}));
  Tensor x;
  x.shape = {1, 3};
  x.f = {-1.0f, 0.0f, 1.0f};
  auto out = RunReference(*graph, {{"x", x}});
  ASSERT_TRUE(out.ok()) << out.status();
  const auto& y = out->at("y").f;
  EXPECT_NEAR(y[0] + y[1] + y[2], 1.0, 1e-6);
  EXPECT_NEAR(y[0], y[1], 1e-6);  // relu(-1) == relu(0)
  x.shape = {2, 3};
  EXPECT_EQ(RunReference(*graph, {{"x", x}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunReference(*graph, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(OnnxImportTest, ListsEveryUnsupportedOperatorAndWhere) {
  onnx::ModelProto m = Model();
  auto* g = m.mutable_graph();
  Value(g->add_input(), "x", {1, 4});
  Add(g, "Erf", {"x"}, "a")->set_name("first");
  Add(g, "Relu", {"a"}, "b");
  Add(g, "Erf", {"b"}, "c")->set_name("second");
  Add(g, "NonZero", {"c"}, "y");
  Value(g->add_output(), "y", {1, 4});
  auto graph = ImportOnnx(m.SerializeAsString());
  ASSERT_EQ(graph.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(graph.status().message(),
            "unsupported operators: Erf (node 'first', 'second'); NonZero (node #3)");
}

TEST(OnnxImportTest, HostileModelsAreRefusedNotFollowed) {
  EXPECT_EQ(ImportOnnx("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImportOnnx(std::string(1000, '\xff')).status().code(),
            absl::StatusCode::kInvalidArgument);

  onnx::ModelProto good = Model();
  Value(good.mutable_graph()->add_input(), "x", {1, 4});
  Add(good.mutable_graph(), "Relu", {"x"}, "y");
  Value(good.mutable_graph()->add_output(), "y", {1, 4});
  std::string bytes = good.SerializeAsString();
  EXPECT_FALSE(ImportOnnx(bytes.substr(0, bytes.size() / 2)).ok());  // truncated

  // Huge dimensions: refused before any allocation.
  onnx::ModelProto huge = Model();
  Value(huge.mutable_graph()->add_input(), "x", {1, 4});
  auto* w = huge.mutable_graph()->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(int64_t{1} << 40);
  w->add_dims(int64_t{1} << 40);
  Add(huge.mutable_graph(), "Add", {"x", "w"}, "y");
  Value(huge.mutable_graph()->add_output(), "y", {1, 4});
  EXPECT_EQ(ImportOnnx(huge.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);

  // A missing initialiser / an input nothing produces.
  onnx::ModelProto missing = Model();
  Value(missing.mutable_graph()->add_input(), "x", {1, 4});
  Add(missing.mutable_graph(), "Add", {"x", "nowhere"}, "y");
  Value(missing.mutable_graph()->add_output(), "y", {1, 4});
  EXPECT_EQ(ImportOnnx(missing.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);

  // A cycle: a -> b -> a.
  onnx::ModelProto cycle = Model();
  Value(cycle.mutable_graph()->add_input(), "x", {1, 4});
  Add(cycle.mutable_graph(), "Add", {"x", "b"}, "a");
  Add(cycle.mutable_graph(), "Relu", {"a"}, "b");
  Value(cycle.mutable_graph()->add_output(), "b", {1, 4});
  EXPECT_EQ(ImportOnnx(cycle.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Mismatched shapes are caught when the graph runs.
  onnx::ModelProto mismatch = Model();
  Value(mismatch.mutable_graph()->add_input(), "x", {1, 4});
  Value(mismatch.mutable_graph()->add_input(), "z", {1, 3});
  Add(mismatch.mutable_graph(), "Add", {"x", "z"}, "y");
  Value(mismatch.mutable_graph()->add_output(), "y", {1, 4});
  auto imported = ImportOnnx(mismatch.SerializeAsString());
  if (!imported.ok()) {
    EXPECT_EQ(imported.status().code(), absl::StatusCode::kInvalidArgument);
  } else {
    Tensor x, z;
    x.shape = {1, 4};
    x.f.assign(4, 1);
    z.shape = {1, 3};
    z.f.assign(3, 1);
    EXPECT_EQ(RunReference(*imported, {{"x", x}, {"z", z}}).status().code(),
              absl::StatusCode::kInvalidArgument);
  }

  // A 10,000-deep chain imports within the node limit and runs; a deeper one is refused.
  onnx::ModelProto deep = Model();
  Value(deep.mutable_graph()->add_input(), "v0", {1, 2});
  for (int i = 0; i < 10000; ++i) {
    Add(deep.mutable_graph(), "Relu", {"v" + std::to_string(i)}, "v" + std::to_string(i + 1));
  }
  Value(deep.mutable_graph()->add_output(), "v10000", {1, 2});
  auto chain = ImportOnnx(deep.SerializeAsString());
  ASSERT_TRUE(chain.ok()) << chain.status();
  ImportLimits tight;
  tight.max_nodes = 1000;
  EXPECT_EQ(ImportOnnx(deep.SerializeAsString(), tight).status().code(),
            absl::StatusCode::kInvalidArgument);
}

onnx::TensorProto* Ints(onnx::GraphProto* g, const std::string& name, std::vector<int64_t> v) {
  auto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::INT64);
  t->add_dims(static_cast<int64_t>(v.size()));
  for (int64_t x : v) t->add_int64_data(x);
  return t;
}

// Sizes a model computes (pads, reshape targets, windows, concatenations) are checked before
// anything is allocated or indexed: a clear error, never a wrapped-around size or a crash.
TEST(OnnxImportTest, ShapeArithmeticOfAHostileModelIsCheckedNotOverflowed) {
  static constexpr int64_t kHuge = int64_t{1} << 62;
  struct Case {
    const char* what;
    std::function<void(onnx::GraphProto*)> build;  // x [1, 4] in, y out
  };
  const std::vector<Case> cases = {
      {"Pad to 2^62",
       [](onnx::GraphProto* g) {
         Ints(g, "pads", {0, kHuge, 0, kHuge});
         Add(g, "Pad", {"x", "pads"}, "y");
       }},
      {"Pad whose sum wraps",
       [](onnx::GraphProto* g) {
         Ints(g, "pads", {0, INT64_MAX, 0, INT64_MAX});
         Add(g, "Pad", {"x", "pads"}, "y");
       }},
      {"Reshape to a product that wraps to 4",
       [](onnx::GraphProto* g) {
         Ints(g, "shape", {int64_t{1} << 32, int64_t{1} << 32, 4});
         Add(g, "Reshape", {"x", "shape"}, "y");
       }},
      {"Reshape with -1 and a huge known part",
       [](onnx::GraphProto* g) {
         Ints(g, "shape", {-1, kHuge});
         Add(g, "Reshape", {"x", "shape"}, "y");
       }},
      {"Concat of 8192 copies of 2^16 elements",
       [](onnx::GraphProto* g) {
         Ints(g, "pads", {0, 0, 0, (1 << 16) - 4});
         Add(g, "Pad", {"x", "pads"}, "p");  // [1, 65536]
         auto* n = Add(g, "Concat", std::vector<std::string>(8192, "p"), "y");
         auto* axis = n->add_attribute();
         axis->set_name("axis");
         axis->set_type(onnx::AttributeProto::INT);
         axis->set_i(1);
       }},
      {"MaxPool with a dilation of 2^62",
       [](onnx::GraphProto* g) {
         Ints(g, "shape", {1, 1, 4});
         Add(g, "Reshape", {"x", "shape"}, "x3");
         auto* n = Add(g, "MaxPool", {"x3"}, "y");
         for (const auto& [name, value] : std::vector<std::pair<std::string, int64_t>>{
                  {"kernel_shape", 2}, {"dilations", kHuge}, {"pads", kHuge}}) {
           auto* a = n->add_attribute();
           a->set_name(name);
           a->set_type(onnx::AttributeProto::INTS);
           a->add_ints(value);
           if (name == "pads") a->add_ints(value);
         }
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    onnx::ModelProto m = Model();
    auto* g = m.mutable_graph();
    Value(g->add_input(), "x", {1, 4});
    c.build(g);
    auto* y = g->add_output();
    y->set_name("y");
    y->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    y->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(1);
    absl::StatusOr<Graph> graph = ImportOnnx(m.SerializeAsString());
    if (!graph.ok()) {
      EXPECT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument) << graph.status();
      continue;
    }
    Tensor x;
    x.shape = {1, 4};
    x.f.assign(4, 1.0f);
    absl::StatusOr<std::map<std::string, Tensor>> out = RunReference(*graph, {{"x", x}});
    ASSERT_FALSE(out.ok()) << "ran a model whose sizes overflow";
    EXPECT_TRUE(out.status().code() == absl::StatusCode::kInvalidArgument ||
                out.status().code() == absl::StatusCode::kResourceExhausted)
        << out.status();
  }
}

}  // namespace
}  // namespace edgeloop::compiler
