#include "compiler/validation_set.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "compiler/onnx_import.h"
#include "onnx/onnx-data_pb.h"

namespace edgeloop::compiler {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::StatusOr<ValidationSet> ParseValidationSet(const std::string& bytes, const Graph& graph,
                                                 int max_samples) {
  onnx::SequenceProto sequence;
  if (!sequence.ParseFromString(bytes) ||
      sequence.elem_type() != onnx::SequenceProto::TENSOR) {
    return absl::InvalidArgumentError(
        "validation set: not an onnx.SequenceProto of tensors (see docs/api.md, \"Validation "
        "sets\")");
  }
  std::map<std::string, Tensor> stacked;
  for (const onnx::TensorProto& proto : sequence.tensor_values()) {
    if (stacked.count(proto.name())) {
      return absl::InvalidArgumentError(
          absl::StrCat("validation set: tensor \"", proto.name(), "\" appears twice"));
    }
    absl::StatusOr<Tensor> t = TensorFromProtoBytes(proto.SerializeAsString());
    if (!t.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("validation set: tensor \"", proto.name(), "\": ", t.status().message()));
    }
    stacked[proto.name()] = *std::move(t);
  }
  int64_t n = -1;
  auto same_count = [&](const std::string& name, int64_t count) -> absl::Status {
    if (n >= 0 && count != n) {
      return absl::InvalidArgumentError(absl::StrCat("validation set: \"", name, "\" has ", count,
                                                     " samples, the others ", n));
    }
    n = count;
    return absl::OkStatus();
  };
  for (const ValueInfo& input : graph.inputs) {
    auto it = stacked.find(input.name);
    if (it == stacked.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("validation set: no tensor for the model input \"", input.name, "\""));
    }
    const Tensor& t = it->second;
    // [n, *shape], or [n, *shape without its leading 1].
    std::vector<int64_t> sample(t.shape.begin() + std::min<size_t>(1, t.shape.size()),
                                t.shape.end());
    std::vector<int64_t> unbatched = input.shape;
    if (!unbatched.empty() && unbatched[0] == 1) unbatched.erase(unbatched.begin());
    if (t.dtype != DType::kFloat32 || t.shape.empty() ||
        (sample != input.shape && sample != unbatched)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "validation set: \"", input.name, "\" must be float32 [n, ",
          absl::StrJoin(input.shape, ", "), "]; it is ", ShapeText(t.shape)));
    }
    RETURN_IF_ERROR(same_count(input.name, t.shape[0]));
    Tensor moved = std::move(it->second);
    stacked.erase(it);
    stacked["#input:" + input.name] = std::move(moved);
  }
  ValidationSet set;
  std::vector<int64_t> labels;
  if (auto it = stacked.find("labels"); it != stacked.end()) {
    const Tensor& t = it->second;
    if (t.dtype == DType::kFloat32 || t.shape.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("validation set: \"labels\" must be int64 or int32 [n]; it is ",
                       t.dtype == DType::kFloat32 ? "float " : "", ShapeText(t.shape)));
    }
    RETURN_IF_ERROR(same_count("labels", t.shape[0]));
    const int64_t classes = graph.outputs.empty() ? 0 : ElementCount(graph.outputs[0].shape);
    for (int64_t label : t.i) {
      if (label < 0 || label >= classes) {
        return absl::InvalidArgumentError(
            absl::StrCat("validation set: label ", label, " is outside the model's ", classes,
                         " classes (the elements of output \"", graph.outputs[0].name, "\")"));
      }
    }
    labels = t.i;
    stacked.erase(it);
  }
  for (const auto& [name, t] : stacked) {
    if (name.rfind("#input:", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "validation set: tensor \"", name, "\" is neither a model input nor \"labels\""));
    }
  }
  set.total_samples = std::max<int64_t>(n, 0);
  const int64_t kept = std::min<int64_t>(set.total_samples, std::max(0, max_samples));
  for (int64_t s = 0; s < kept; ++s) {
    std::map<std::string, Tensor> sample;
    for (const ValueInfo& input : graph.inputs) {
      const Tensor& all = stacked.at("#input:" + input.name);
      Tensor t;
      t.shape = input.shape;
      const int64_t size = t.size();
      t.f.assign(all.f.begin() + s * size, all.f.begin() + (s + 1) * size);
      sample[input.name] = std::move(t);
    }
    set.samples.push_back(std::move(sample));
    if (!labels.empty()) set.labels.push_back(labels[s]);
  }
  return set;
}

}  // namespace edgeloop::compiler
