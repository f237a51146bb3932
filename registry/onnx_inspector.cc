#include "registry/onnx_inspector.h"

#include <climits>
#include <cstring>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "compiler/onnx_limits.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "onnx/checker.h"
#include "onnx/onnx_pb.h"

namespace edgeloop::registry {
namespace {

/// Feeds a blob to protobuf's parser in 1 MiB reads instead of one big buffer.
class BlobInputStream final : public google::protobuf::io::CopyingInputStream {
 public:
  explicit BlobInputStream(store::BlobReader& reader) : reader_(reader) {}
  int Read(void* buffer, int size) override {
    status_ = reader_.ReadAt(offset_, static_cast<size_t>(size), &chunk_);
    if (!status_.ok()) return -1;
    std::memcpy(buffer, chunk_.data(), chunk_.size());
    offset_ += static_cast<int64_t>(chunk_.size());
    return static_cast<int>(chunk_.size());
  }
  const absl::Status& status() const { return status_; }

 private:
  store::BlobReader& reader_;
  int64_t offset_ = 0;
  std::string chunk_;
  absl::Status status_;
};

std::string DtypeName(int32_t elem_type) {
  switch (elem_type) {
    case onnx::TensorProto::FLOAT:
      return "float32";
    case onnx::TensorProto::DOUBLE:
      return "float64";
    case onnx::TensorProto::FLOAT16:
      return "float16";
    case onnx::TensorProto::BFLOAT16:
      return "bfloat16";
    case onnx::TensorProto::INT8:
      return "int8";
    case onnx::TensorProto::UINT8:
      return "uint8";
    case onnx::TensorProto::INT16:
      return "int16";
    case onnx::TensorProto::UINT16:
      return "uint16";
    case onnx::TensorProto::INT32:
      return "int32";
    case onnx::TensorProto::UINT32:
      return "uint32";
    case onnx::TensorProto::INT64:
      return "int64";
    case onnx::TensorProto::UINT64:
      return "uint64";
    case onnx::TensorProto::BOOL:
      return "bool";
    case onnx::TensorProto::STRING:
      return "string";
    case onnx::TensorProto::COMPLEX64:
      return "complex64";
    case onnx::TensorProto::COMPLEX128:
      return "complex128";
    default:
      return "undefined";
  }
}

v1::TensorSpec SpecFor(const onnx::ValueInfoProto& value) {
  v1::TensorSpec spec;
  spec.set_name(value.name());
  if (value.type().has_tensor_type()) {
    const auto& tensor = value.type().tensor_type();
    spec.set_dtype(DtypeName(tensor.elem_type()));
    for (const auto& dim : tensor.shape().dim()) {
      if (dim.has_dim_value()) {
        spec.add_shape(dim.dim_value());
        spec.add_dim_names("");
      } else {
        spec.add_shape(-1);
        spec.add_dim_names(dim.dim_param());
      }
    }
  } else {
    spec.set_dtype("non-tensor");
  }
  return spec;
}

}  // namespace

absl::StatusOr<OnnxSummary> InspectOnnx(store::BlobReader& reader,
                                        const compiler::ImportLimits& limits) {
  if (reader.size() == 0) return absl::InvalidArgumentError("not an ONNX model: the file is empty");
  onnx::ModelProto model;
  {
    BlobInputStream source(reader);
    google::protobuf::io::CopyingInputStreamAdaptor adaptor(&source, 1 << 20);
    google::protobuf::io::CodedInputStream coded(&adaptor);
    coded.SetTotalBytesLimit(INT32_MAX);
    absl::Status parsed = compiler::ParseOnnxModel(coded, limits, &model);
    if (!source.status().ok()) return source.status();
    RETURN_IF_ERROR(parsed);
  }
  // The compiler's limits, before ONNX's checker reads anything: what the registry accepts,
  // the CI stage can import.
  RETURN_IF_ERROR(compiler::CheckModelLimits(model, limits));
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("ONNX checker rejected the model: ", e.what()));
  }

  OnnxSummary summary;
  std::set<std::string> initializers;
  for (const auto& init : model.graph().initializer()) initializers.insert(init.name());
  for (const auto& input : model.graph().input()) {
    if (initializers.count(input.name()) == 0) summary.inputs.push_back(SpecFor(input));
  }
  for (const auto& output : model.graph().output()) summary.outputs.push_back(SpecFor(output));
  if (summary.inputs.empty()) return absl::InvalidArgumentError("ONNX graph has no inputs");
  if (summary.outputs.empty()) return absl::InvalidArgumentError("ONNX graph has no outputs");
  for (const auto& opset : model.opset_import()) {
    if (opset.domain().empty() || opset.domain() == "ai.onnx") summary.opset = opset.version();
  }
  summary.producer = std::string(absl::StripAsciiWhitespace(
      absl::StrCat(model.producer_name(), " ", model.producer_version())));
  return summary;
}

}  // namespace edgeloop::registry
