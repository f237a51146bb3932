#include "compiler/testing/onnx_models.h"

#include <cmath>
#include <vector>

#include "onnx/onnx-data_pb.h"
#include "onnx/onnx_pb.h"

namespace edgeloop::compiler::testing {
namespace {

// Adds an initialiser of `dims` filled with deterministic values in [offset-0.1, offset+0.1].
void AddWeights(onnx::GraphProto* graph, const std::string& name, std::vector<int64_t> dims,
                uint32_t* state, float offset = 0.0f) {
  onnx::TensorProto* t = graph->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  int64_t n = 1;
  for (int64_t d : dims) {
    t->add_dims(d);
    n *= d;
  }
  for (int64_t i = 0; i < n; ++i) {
    *state = *state * 1664525u + 1013904223u;  // LCG: deterministic, dependency-free
    t->add_float_data(offset + static_cast<float>(static_cast<int32_t>(*state >> 8) % 2001 - 1000) /
                                   10000.0f);
  }
}

// A float tensor type [batch, dims...] with a symbolic batch dimension.
void SetTensorType(onnx::ValueInfoProto* v, const std::string& name, std::vector<int64_t> dims) {
  v->set_name(name);
  auto* tensor = v->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  tensor->mutable_shape()->add_dim()->set_dim_param("batch");
  for (int64_t d : dims) tensor->mutable_shape()->add_dim()->set_dim_value(d);
}

void SetInts(onnx::NodeProto* node, const std::string& name, std::vector<int64_t> values) {
  auto* attribute = node->add_attribute();
  attribute->set_name(name);
  attribute->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) attribute->add_ints(v);
}

void SetInt(onnx::NodeProto* node, const std::string& name, int64_t value) {
  auto* attribute = node->add_attribute();
  attribute->set_name(name);
  attribute->set_type(onnx::AttributeProto::INT);
  attribute->set_i(value);
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
  return MlpOnnx(std::vector<int>{in, hidden, out}, seed);
}

std::string MlpOnnx(const std::vector<int>& widths, uint32_t seed) {
  onnx::ModelProto model = BaseModel();
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("mlp");
  uint32_t state = seed;
  const size_t layers = widths.size() - 1;
  for (size_t k = 1; k <= layers; ++k) {
    AddWeights(graph, "w" + std::to_string(k), {widths[k], widths[k - 1]}, &state);
    AddWeights(graph, "b" + std::to_string(k), {widths[k]}, &state);
  }
  SetTensorType(graph->add_input(), "input", {widths.front()});
  std::string x = "input";
  for (size_t k = 1; k <= layers; ++k) {
    const std::string n = std::to_string(k);
    const std::string out = k == layers ? "logits" : "h" + n;
    SetInt(AddNode(graph, "Gemm", {x, "w" + n, "b" + n}, out), "transB", 1);
    if (k < layers) {
      AddNode(graph, "Relu", {"h" + n}, "a" + n);
      x = "a" + n;
    }
  }
  SetInt(AddNode(graph, "Softmax", {"logits"}, "probabilities"), "axis", 1);
  SetTensorType(graph->add_output(), "probabilities", {widths.back()});
  return model.SerializeAsString();
}

std::string CnnOnnx(uint32_t seed) {
  onnx::ModelProto model = BaseModel();
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("cnn");
  uint32_t state = seed;
  SetTensorType(graph->add_input(), "image", {3, 32, 32});
  // Three 3x3 convolution blocks (16, 32, 64 maps); the first with BatchNormalization.
  const int64_t maps[] = {16, 32, 64};
  int64_t channels = 3;
  std::string x = "image";
  for (int k = 0; k < 3; ++k) {
    const std::string n = std::to_string(k + 1);
    AddWeights(graph, "conv" + n + ".w", {maps[k], channels, 3, 3}, &state);
    AddWeights(graph, "conv" + n + ".b", {maps[k]}, &state);
    onnx::NodeProto* conv = AddNode(graph, "Conv", {x, "conv" + n + ".w", "conv" + n + ".b"},
                                    "conv" + n);
    SetInts(conv, "kernel_shape", {3, 3});
    SetInts(conv, "pads", {1, 1, 1, 1});
    x = "conv" + n;
    if (k == 0) {
      AddWeights(graph, "bn1.scale", {maps[k]}, &state, 1.0f);
      AddWeights(graph, "bn1.bias", {maps[k]}, &state);
      AddWeights(graph, "bn1.mean", {maps[k]}, &state);
      AddWeights(graph, "bn1.var", {maps[k]}, &state, 1.0f);
      AddNode(graph, "BatchNormalization", {x, "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"},
              "bn1");
      x = "bn1";
    }
    AddNode(graph, "Relu", {x}, "relu" + n);
    x = "relu" + n;
    if (k < 2) {
      onnx::NodeProto* pool = AddNode(graph, "MaxPool", {x}, "pool" + n);
      SetInts(pool, "kernel_shape", {2, 2});
      SetInts(pool, "strides", {2, 2});
      x = "pool" + n;
    }
    channels = maps[k];
  }
  AddNode(graph, "GlobalAveragePool", {x}, "gap");
  AddNode(graph, "Flatten", {"gap"}, "features");
  AddWeights(graph, "fc.w", {10, channels}, &state);
  AddWeights(graph, "fc.b", {10}, &state);
  SetInt(AddNode(graph, "Gemm", {"features", "fc.w", "fc.b"}, "logits"), "transB", 1);
  SetInt(AddNode(graph, "Softmax", {"logits"}, "probabilities"), "axis", 1);
  SetTensorType(graph->add_output(), "probabilities", {10});
  return model.SerializeAsString();
}

std::string OnnxOfAtLeast(int64_t bytes, uint32_t seed) {
  // Each float weight costs about 5 bytes in float_data's packed encoding (4 + varint overhead
  // amortised to ~4); 16 inputs and 16 outputs around a hidden layer sized to fit.
  int hidden = static_cast<int>(std::ceil(static_cast<double>(bytes) / (4.0 * 32))) + 1;
  return MlpOnnx(16, hidden, 16, seed);
}

std::string ValidationSetOnnx(const std::string& input, const std::vector<int64_t>& dims,
                              const std::vector<float>& values,
                              const std::vector<int64_t>& labels) {
  onnx::SequenceProto sequence;
  sequence.set_elem_type(onnx::SequenceProto::TENSOR);
  onnx::TensorProto* x = sequence.add_tensor_values();
  x->set_name(input);
  x->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) x->add_dims(d);
  for (float v : values) x->add_float_data(v);
  if (!labels.empty()) {
    onnx::TensorProto* y = sequence.add_tensor_values();
    y->set_name("labels");
    y->set_data_type(onnx::TensorProto::INT64);
    y->add_dims(static_cast<int64_t>(labels.size()));
    for (int64_t v : labels) y->add_int64_data(v);
  }
  return sequence.SerializeAsString();
}

std::string DanglingInputOnnx() {
  onnx::ModelProto model = BaseModel();
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("broken");
  SetTensorType(graph->add_input(), "input", {4});
  AddNode(graph, "Add", {"input", "nowhere"}, "sum");
  SetTensorType(graph->add_output(), "sum", {4});
  return model.SerializeAsString();
}

std::string ReluOnnxWithInputName(const std::string& name) {
  onnx::ModelProto model = BaseModel();
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("hostile");
  SetTensorType(graph->add_input(), name, {4});
  AddNode(graph, "Relu", {name}, "output");
  SetTensorType(graph->add_output(), "output", {4});
  return model.SerializeAsString();
}

std::string ExternalDataOnnx(const std::string& location) {
  onnx::ModelProto model = BaseModel();
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("external");
  SetTensorType(graph->add_input(), "input", {4});
  uint32_t state = 1;
  AddWeights(graph, "bias", {4}, &state);
  onnx::TensorProto* bias = graph->mutable_initializer(0);
  bias->clear_float_data();
  bias->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* entry = bias->add_external_data();
  entry->set_key("location");
  entry->set_value(location);
  AddNode(graph, "Add", {"input", "bias"}, "output");
  SetTensorType(graph->add_output(), "output", {4});
  return model.SerializeAsString();
}

std::string NestedSubgraphsOnnx(int depth) {
  onnx::ModelProto model = BaseModel();
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("nested");
  SetTensorType(graph->add_input(), "input", {4});
  onnx::GraphProto* level = graph;
  for (int d = 0; d < depth; ++d) {
    onnx::NodeProto* node = AddNode(level, "If", {"input"}, "output");
    auto* branch = node->add_attribute();
    branch->set_name("then_branch");
    branch->set_type(onnx::AttributeProto::GRAPH);
    level = branch->mutable_g();
    level->set_name("branch");
  }
  AddNode(level, "Relu", {"input"}, "output");
  SetTensorType(graph->add_output(), "output", {4});
  return model.SerializeAsString();
}

}  // namespace edgeloop::compiler::testing
