#include "registry/testing/onnx_models.h"

#include <cmath>

#include "onnx/onnx_pb.h"

namespace edgeloop::registry::testing {
namespace {

void AddWeights(onnx::GraphProto* graph, const std::string& name, int rows, int cols,
                uint32_t* state) {
  onnx::TensorProto* t = graph->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(rows);
  if (cols > 0) t->add_dims(cols);
  int n = rows * (cols > 0 ? cols : 1);
  for (int i = 0; i < n; ++i) {
    *state = *state * 1664525u + 1013904223u;  // LCG: deterministic, dependency-free
    t->add_float_data(static_cast<float>(static_cast<int32_t>(*state >> 8) % 2001 - 1000) /
                      10000.0f);
  }
}

void SetTensorType(onnx::ValueInfoProto* v, const std::string& name, int features) {
  v->set_name(name);
  auto* tensor = v->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  tensor->mutable_shape()->add_dim()->set_dim_param("batch");
  tensor->mutable_shape()->add_dim()->set_dim_value(features);
}

onnx::NodeProto* AddNode(onnx::GraphProto* graph, const std::string& op,
                         std::vector<std::string> inputs, const std::string& output) {
  onnx::NodeProto* node = graph->add_node();
  node->set_op_type(op);
  node->set_name(output + "_" + op);
  for (auto& in : inputs) node->add_input(in);
  node->add_output(output);
  return node;
}

onnx::ModelProto BaseModel() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("edgeloop-tests");
  model.set_producer_version("1");
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  return model;
}

}  // namespace

std::string MlpOnnx(int in, int hidden, int out, uint32_t seed) {
  onnx::ModelProto model = BaseModel();
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("mlp");
  uint32_t state = seed;
  AddWeights(graph, "w1", in, hidden, &state);
  AddWeights(graph, "b1", hidden, 0, &state);
  AddWeights(graph, "w2", hidden, out, &state);
  AddWeights(graph, "b2", out, 0, &state);
  SetTensorType(graph->add_input(), "input", in);
  AddNode(graph, "Gemm", {"input", "w1", "b1"}, "h1");
  AddNode(graph, "Relu", {"h1"}, "a1");
  AddNode(graph, "Gemm", {"a1", "w2", "b2"}, "logits");
  onnx::NodeProto* softmax = AddNode(graph, "Softmax", {"logits"}, "probabilities");
  auto* axis = softmax->add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(1);
  SetTensorType(graph->add_output(), "probabilities", out);
  return model.SerializeAsString();
}

std::string OnnxOfAtLeast(int64_t bytes, uint32_t seed) {
  // Each float weight costs about 5 bytes in float_data's packed encoding (4 + varint overhead
  // amortised to ~4); 16 inputs and 16 outputs around a hidden layer sized to fit.
  int hidden = static_cast<int>(std::ceil(static_cast<double>(bytes) / (4.0 * 32))) + 1;
  return MlpOnnx(16, hidden, 16, seed);
}

std::string DanglingInputOnnx() {
  onnx::ModelProto model = BaseModel();
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("broken");
  SetTensorType(graph->add_input(), "input", 4);
  AddNode(graph, "Add", {"input", "nowhere"}, "sum");
  SetTensorType(graph->add_output(), "sum", 4);
  return model.SerializeAsString();
}

}  // namespace edgeloop::registry::testing
