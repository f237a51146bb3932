#include "compiler/onnx_limits.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/utf8.h"
#include "google/protobuf/io/coded_stream.h"
#include "onnx/onnx_pb.h"

namespace edgeloop::compiler {
namespace {

// A name as it may be shown: escaped, and cut short.
std::string Shown(absl::string_view name) {
  std::string shown = absl::CHexEscape(name.substr(0, 64));
  if (name.size() > 64) shown += "...";
  return shown;
}

absl::Status CheckTensor(const onnx::TensorProto& tensor, const ImportLimits& limits) {
  RETURN_IF_ERROR(CheckModelText("tensor name", tensor.name(), limits));
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL || tensor.external_data_size() > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", Shown(tensor.name()),
                     "\" keeps its data in an external file; push a model with its weights "
                     "inside (onnx.save_model(..., save_as_external_data=False))"));
  }
  return absl::OkStatus();
}

absl::Status CheckValueInfo(const onnx::ValueInfoProto& value, const ImportLimits& limits) {
  RETURN_IF_ERROR(CheckModelText("value name", value.name(), limits));
  if (value.type().has_tensor_type() && value.type().tensor_type().has_shape()) {
    for (const auto& dim : value.type().tensor_type().shape().dim()) {
      RETURN_IF_ERROR(CheckModelText("dimension name", dim.dim_param(), limits));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckGraph(const onnx::GraphProto& graph, const ImportLimits& limits, int64_t* nodes) {
  *nodes += graph.node_size();
  if (*nodes > limits.max_nodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model has more than ", limits.max_nodes, " nodes"));
  }
  for (const auto* list : {&graph.input(), &graph.output(), &graph.value_info()}) {
    for (const auto& value : *list) RETURN_IF_ERROR(CheckValueInfo(value, limits));
  }
  for (const auto& tensor : graph.initializer()) RETURN_IF_ERROR(CheckTensor(tensor, limits));
  for (const auto& sparse : graph.sparse_initializer()) {
    RETURN_IF_ERROR(CheckTensor(sparse.values(), limits));
    RETURN_IF_ERROR(CheckTensor(sparse.indices(), limits));
  }
  for (const auto& node : graph.node()) {
    RETURN_IF_ERROR(CheckModelText("node name", node.name(), limits));
    RETURN_IF_ERROR(CheckModelText("operator", node.op_type(), limits));
    RETURN_IF_ERROR(CheckModelText("operator domain", node.domain(), limits));
    for (const auto* names : {&node.input(), &node.output()}) {
      for (const std::string& name : *names) {
        RETURN_IF_ERROR(CheckModelText("value name", name, limits));
      }
    }
    for (const auto& attribute : node.attribute()) {
      RETURN_IF_ERROR(CheckModelText("attribute name", attribute.name(), limits));
      if (attribute.has_t()) RETURN_IF_ERROR(CheckTensor(attribute.t(), limits));
      for (const auto& t : attribute.tensors()) RETURN_IF_ERROR(CheckTensor(t, limits));
      if (attribute.has_sparse_tensor()) {
        RETURN_IF_ERROR(CheckTensor(attribute.sparse_tensor().values(), limits));
        RETURN_IF_ERROR(CheckTensor(attribute.sparse_tensor().indices(), limits));
      }
      if (attribute.has_g()) RETURN_IF_ERROR(CheckGraph(attribute.g(), limits, nodes));
      for (const auto& g : attribute.graphs()) RETURN_IF_ERROR(CheckGraph(g, limits, nodes));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseOnnxModel(google::protobuf::io::CodedInputStream& in, const ImportLimits& limits,
                            onnx::ModelProto* model) {
  in.SetRecursionLimit(limits.recursion_limit);
  if (!model->ParseFromCodedStream(&in) || !in.ConsumedEntireMessage()) {
    return absl::InvalidArgumentError(
        "not an ONNX model: the bytes do not parse as an onnx.ModelProto protobuf (or nest "
        "deeper than the parser allows)");
  }
  if (!model->has_graph()) {
    return absl::InvalidArgumentError("not an ONNX model: it has no graph (is this an ONNX file?)");
  }
  return absl::OkStatus();
}

absl::Status CheckModelText(absl::string_view what, absl::string_view name,
                            const ImportLimits& limits) {
  if (static_cast<int64_t>(name.size()) > limits.max_name_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " \"", Shown(name), "\" is ", name.size(),
                                                   " bytes long; at most ", limits.max_name_bytes));
  }
  if (!IsValidUtf8(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", Shown(name), "\" is not valid UTF-8"));
  }
  for (const char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " \"", Shown(name), "\" contains a control character"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckModelLimits(const onnx::ModelProto& model, const ImportLimits& limits) {
  for (const std::string* text : {&model.producer_name(), &model.producer_version()}) {
    RETURN_IF_ERROR(CheckModelText("producer", *text, limits));
  }
  int64_t nodes = 0;
  return CheckGraph(model.graph(), limits, &nodes);
}

}  // namespace edgeloop::compiler
