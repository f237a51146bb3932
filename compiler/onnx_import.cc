#include "compiler/onnx_import.h"

#include <climits>
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "compiler/ops/operator.h"
#include "google/protobuf/io/coded_stream.h"
#include "onnx/checker.h"
#include "onnx/onnx_pb.h"
#include "onnx/shape_inference/implementation.h"

namespace edgeloop::compiler {
namespace {

absl::StatusOr<DType> DTypeOf(int32_t elem_type) {
  switch (elem_type) {
    case onnx::TensorProto::FLOAT:
      return DType::kFloat32;
    case onnx::TensorProto::INT64:
    case onnx::TensorProto::INT32:
      return DType::kInt64;
    case onnx::TensorProto::BOOL:
      return DType::kBool;
    default:
      return absl::UnimplementedError(absl::StrCat(
          "element type ", onnx::TensorProto_DataType_Name(elem_type), " is not supported"));
  }
}

absl::StatusOr<Tensor> FromProto(const onnx::TensorProto& proto, const ImportLimits& limits) {
  Tensor t;
  ASSIGN_OR_RETURN(t.dtype, DTypeOf(proto.data_type()));
  if (proto.data_location() == onnx::TensorProto::EXTERNAL) {
    return absl::UnimplementedError(
        absl::StrCat("tensor \"", proto.name(), "\" keeps its data in an external file"));
  }
  if (proto.dims_size() > limits.max_rank) return absl::InvalidArgumentError("tensor rank above 8");
  int64_t n = 1;
  for (int64_t d : proto.dims()) {
    if (d < 0 || (d > 0 && n > limits.max_tensor_elements / d)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", proto.name(), "\" has absurd dimensions"));
    }
    n *= d;
    t.shape.push_back(d);
  }
  const std::string& raw = proto.raw_data();
  auto need = [&](size_t have, size_t width) -> absl::Status {
    if (have == static_cast<size_t>(n) * width) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", proto.name(), "\" holds ", have,
                                                   " bytes of data for ", n, " elements"));
  };
  switch (proto.data_type()) {
    case onnx::TensorProto::FLOAT:
      if (!raw.empty()) {
        RETURN_IF_ERROR(need(raw.size(), 4));
        t.f.resize(n);
        std::memcpy(t.f.data(), raw.data(), raw.size());
      } else {
        RETURN_IF_ERROR(need(proto.float_data_size() * 4, 4));
        t.f.assign(proto.float_data().begin(), proto.float_data().end());
      }
      break;
    case onnx::TensorProto::INT64:
      if (!raw.empty()) {
        RETURN_IF_ERROR(need(raw.size(), 8));
        t.i.resize(n);
        std::memcpy(t.i.data(), raw.data(), raw.size());
      } else {
        RETURN_IF_ERROR(need(proto.int64_data_size() * 8, 8));
        t.i.assign(proto.int64_data().begin(), proto.int64_data().end());
      }
      break;
    case onnx::TensorProto::INT32:
    case onnx::TensorProto::BOOL:
      if (!raw.empty()) {
        const size_t width = proto.data_type() == onnx::TensorProto::BOOL ? 1 : 4;
        RETURN_IF_ERROR(need(raw.size(), width));
        t.i.resize(n);
        for (int64_t k = 0; k < n; ++k) {
          int32_t v = 0;
          std::memcpy(&v, raw.data() + k * width, width);
          t.i[k] = width == 1 ? (v & 0xff) : v;
        }
      } else {
        RETURN_IF_ERROR(need(proto.int32_data_size() * 4, 4));
        t.i.assign(proto.int32_data().begin(), proto.int32_data().end());
      }
      break;
    default:
      break;
  }
  return t;
}

absl::StatusOr<ValueInfo> InfoOf(const onnx::ValueInfoProto& value, const ImportLimits& limits,
                                 bool fix_batch) {
  if (!value.type().has_tensor_type()) {
    return absl::UnimplementedError(absl::StrCat("\"", value.name(), "\" is not a tensor"));
  }
  const auto& tensor = value.type().tensor_type();
  ValueInfo info;
  info.name = value.name();
  ASSIGN_OR_RETURN(info.dtype, DTypeOf(tensor.elem_type()));
  if (!tensor.has_shape())
    return absl::InvalidArgumentError(absl::StrCat("\"", value.name(), "\" has no shape"));
  if (tensor.shape().dim_size() > limits.max_rank)
    return absl::InvalidArgumentError("rank above 8");
  int64_t n = 1;
  for (int d = 0; d < tensor.shape().dim_size(); ++d) {
    const auto& dim = tensor.shape().dim(d);
    int64_t v = -1;
    if (dim.has_dim_value()) {
      v = dim.dim_value();
    } else if (fix_batch && d == 0) {
      v = 1;  // a symbolic batch dimension: compile for batch 1
    }
    if (v < 0) {
      return absl::InvalidArgumentError(absl::StrCat("\"", value.name(),
                                                     "\" has a dynamic dimension ", d,
                                                     "; the compiler needs static shapes"));
    }
    if (v > 0 && n > limits.max_tensor_elements / v) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", value.name(), "\" has absurd dimensions"));
    }
    n *= v;
    info.shape.push_back(v);
  }
  return info;
}

absl::StatusOr<Attribute> AttributeOf(const onnx::AttributeProto& a, const ImportLimits& limits) {
  switch (a.type()) {
    case onnx::AttributeProto::INT:
      return Attribute(int64_t{a.i()});
    case onnx::AttributeProto::FLOAT:
      return Attribute(a.f());
    case onnx::AttributeProto::STRING:
      return Attribute(a.s());
    case onnx::AttributeProto::INTS:
      return Attribute(std::vector<int64_t>(a.ints().begin(), a.ints().end()));
    case onnx::AttributeProto::FLOATS:
      return Attribute(std::vector<float>(a.floats().begin(), a.floats().end()));
    case onnx::AttributeProto::TENSOR: {
      ASSIGN_OR_RETURN(Tensor t, FromProto(a.t(), limits));
      return Attribute(std::move(t));
    }
    default:
      return absl::UnimplementedError(
          absl::StrCat("attribute \"", a.name(), "\" has an unsupported type"));
  }
}

}  // namespace

bool IsSupportedOperator(const std::string& op_type) { return FindOperator(op_type) != nullptr; }

absl::StatusOr<Tensor> TensorFromProtoBytes(const std::string& bytes) {
  onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes)) return absl::InvalidArgumentError("not a TensorProto");
  return FromProto(proto, ImportLimits());
}

absl::StatusOr<Graph> ImportOnnx(const std::string& model_bytes, const ImportLimits& limits) {
  if (model_bytes.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("not an ONNX model: protobuf messages are under 2 GiB");
  }
  onnx::ModelProto model;
  {
    google::protobuf::io::CodedInputStream coded(
        reinterpret_cast<const uint8_t*>(model_bytes.data()), static_cast<int>(model_bytes.size()));
    RETURN_IF_ERROR(ParseOnnxModel(coded, limits, &model));
  }
  RETURN_IF_ERROR(CheckModelLimits(model, limits));
  Graph graph;
  for (const auto& opset : model.opset_import()) {
    if (opset.domain().empty() || opset.domain() == "ai.onnx") graph.opset = opset.version();
  }
  // Every operator not implemented, with where it is used, in one message.
  std::map<std::string, std::vector<std::string>> unsupported;
  for (int i = 0; i < model.graph().node_size(); ++i) {
    const auto& node = model.graph().node(i);
    if ((!node.domain().empty() && node.domain() != "ai.onnx") ||
        !IsSupportedOperator(node.op_type())) {
      std::string op =
          node.domain().empty() ? node.op_type() : absl::StrCat(node.domain(), ".", node.op_type());
      unsupported[op].push_back(node.name().empty() ? absl::StrCat("#", i)
                                                    : absl::StrCat("'", node.name(), "'"));
    }
  }
  if (!unsupported.empty()) {
    std::vector<std::string> parts;
    for (const auto& [op, where] : unsupported) {
      parts.push_back(absl::StrCat(op, " (node ", absl::StrJoin(where, ", "), ")"));
    }
    return absl::UnimplementedError(
        absl::StrCat("unsupported operators: ", absl::StrJoin(parts, "; ")));
  }
  for (const auto* values : {&model.graph().input(), &model.graph().output()}) {
    for (const auto& value : *values) {
      if (!value.type().has_tensor_type()) {
        return absl::UnimplementedError(
            absl::StrCat("\"", value.name(),
                         "\" is not a tensor (sequences, maps and optionals are not supported)"));
      }
    }
  }
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("ONNX checker rejected the model: ", e.what()));
  }
  // Fix a symbolic batch dimension before shape inference so every shape downstream is static.
  std::set<std::string> initialized;
  for (const auto& init : model.graph().initializer()) initialized.insert(init.name());
  for (auto& input : *model.mutable_graph()->mutable_input()) {
    if (initialized.count(input.name())) continue;
    auto* shape = input.mutable_type()->mutable_tensor_type()->mutable_shape();
    if (shape->dim_size() > 0 && !shape->dim(0).has_dim_value())
      shape->mutable_dim(0)->set_dim_value(1);
  }
  try {
    // Node-level inference errors are not fatal (some older exporters trip the current schemas);
    // the graph's outputs must still end up with static shapes, which is checked below.
    onnx::shape_inference::InferShapes(
        model, onnx::OpSchemaRegistry::Instance(),
        onnx::ShapeInferenceOptions(/*check_type=*/true, /*error_mode=*/0));
  } catch (const std::exception&) {
    // ONNX's inference rejects some models older exporters wrote (e.g. int64 Constants at
    // opset 9) that are well-defined to run. The compiler derives shapes itself; what is
    // required is that the graph's inputs and outputs declare static shapes, checked below.
  }
  for (const auto& init : model.graph().initializer()) {
    ASSIGN_OR_RETURN(graph.constants[init.name()], FromProto(init, limits));
  }
  for (const auto& input : model.graph().input()) {
    if (initialized.count(input.name())) continue;
    ASSIGN_OR_RETURN(ValueInfo info, InfoOf(input, limits, /*fix_batch=*/true));
    graph.inputs.push_back(std::move(info));
  }
  for (const auto& output : model.graph().output()) {
    ASSIGN_OR_RETURN(ValueInfo info, InfoOf(output, limits, /*fix_batch=*/true));
    graph.outputs.push_back(std::move(info));
  }
  // The checker guarantees topological order; a node may only read what exists before it.
  std::set<std::string> defined(initialized.begin(), initialized.end());
  for (const auto& input : graph.inputs) defined.insert(input.name);
  for (int i = 0; i < model.graph().node_size(); ++i) {
    const auto& n = model.graph().node(i);
    Node node;
    node.name = n.name();
    node.op = n.op_type();
    for (const auto& in : n.input()) {
      if (!in.empty() && defined.count(in) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("node ", i, " reads \"", in, "\" before it is produced"));
      }
      node.inputs.push_back(in);
    }
    for (const auto& out : n.output()) {
      node.outputs.push_back(out);
      if (!out.empty()) defined.insert(out);
    }
    for (const auto& a : n.attribute()) {
      ASSIGN_OR_RETURN(node.attributes[a.name()], AttributeOf(a, limits));
    }
    graph.nodes.push_back(std::move(node));
  }
  for (const auto& output : graph.outputs) {
    if (defined.count(output.name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("graph output \"", output.name, "\" is never produced"));
    }
  }
  return graph;
}

}  // namespace edgeloop::compiler
