#include "compiler/validation_set.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "compiler/compile.h"
#include "compiler/onnx_import.h"
#include "compiler/reference_interpreter.h"
#include "gtest/gtest.h"
#include "onnx/onnx-data_pb.h"
#include "compiler/testing/onnx_models.h"

namespace edgeloop::compiler {
namespace {

// What `onnx.helper.make_sequence` writes from numpy arrays.
class SetBuilder {
 public:
  SetBuilder() { sequence_.set_elem_type(onnx::SequenceProto::TENSOR); }
  SetBuilder& Floats(const std::string& name, std::vector<int64_t> dims,
                     std::vector<float> values) {
    onnx::TensorProto* t = Tensor(name, dims, onnx::TensorProto::FLOAT);
    for (float v : values) t->add_float_data(v);
    return *this;
  }
  SetBuilder& Labels(std::vector<int64_t> labels, const std::string& name = "labels") {
    onnx::TensorProto* t =
        Tensor(name, {static_cast<int64_t>(labels.size())}, onnx::TensorProto::INT64);
    for (int64_t v : labels) t->add_int64_data(v);
    return *this;
  }
  std::string Bytes() const { return sequence_.SerializeAsString(); }

 private:
  onnx::TensorProto* Tensor(const std::string& name, const std::vector<int64_t>& dims, int type) {
    onnx::TensorProto* t = sequence_.add_tensor_values();
    t->set_name(name);
    t->set_data_type(type);
    for (int64_t d : dims) t->add_dims(d);
    return t;
  }
  onnx::SequenceProto sequence_;
};

std::vector<float> Ramp(int n) {
  std::vector<float> v;
  for (int i = 0; i < n; ++i) v.push_back(static_cast<float>(i % 7) * 0.25f - 0.75f);
  return v;
}

class ValidationSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    onnx_ = compiler::testing::MlpOnnx(4, 8, 3);  // input "input" [1, 4] → 3 classes
    auto graph = ImportOnnx(onnx_);
    ASSERT_TRUE(graph.ok()) << graph.status();
    graph_ = *graph;
  }
  absl::StatusOr<ValidationSet> Parse(const std::string& bytes, int max = 100) {
    return ParseValidationSet(bytes, graph_, max);
  }
  // The reference interpreter's class for each of the n samples of `values`.
  std::vector<int64_t> ReferenceLabels(const std::vector<float>& values, int n) {
    std::vector<int64_t> labels;
    for (int s = 0; s < n; ++s) {
      compiler::Tensor x;
      x.shape = {1, 4};
      x.f.assign(values.begin() + s * 4, values.begin() + s * 4 + 4);
      auto out = RunReference(graph_, {{"input", x}});
      const auto& p = out->at("probabilities").f;
      labels.push_back(std::max_element(p.begin(), p.end()) - p.begin());
    }
    return labels;
  }
  std::string onnx_;
  Graph graph_;
};

TEST_F(ValidationSetTest, StackedSamplesWithLabels) {
  auto set = Parse(SetBuilder().Floats("input", {5, 4}, Ramp(20)).Labels({0, 1, 2, 0, 1}).Bytes(),
                   /*max=*/3);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->total_samples, 5);
  ASSERT_EQ(set->samples.size(), 3u);  // capped
  EXPECT_EQ(set->labels, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(set->samples[1].at("input").shape, (std::vector<int64_t>{1, 4}));
  const std::vector<float> all = Ramp(20);
  EXPECT_EQ(set->samples[1].at("input").f, std::vector<float>(all.begin() + 4, all.begin() + 8));
  // The input's own batch dimension may be kept: [n, 1, 4].
  auto batched = Parse(SetBuilder().Floats("input", {5, 1, 4}, Ramp(20)).Bytes());
  ASSERT_TRUE(batched.ok()) << batched.status();
  EXPECT_EQ(batched->samples.size(), 5u);
  EXPECT_TRUE(batched->labels.empty());
}

TEST_F(ValidationSetTest, BadSetsAreRefusedWithTheReason) {
  auto refused = [&](const std::string& bytes, const std::string& why) {
    auto set = Parse(bytes);
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument) << why;
    EXPECT_TRUE(absl::StrContains(set.status().message(), why)) << set.status();
  };
  refused("certainly not protobuf \xff\xff", "not an onnx.SequenceProto");
  refused(SetBuilder().Floats("other", {2, 4}, Ramp(8)).Bytes(), "no tensor for the model input");
  refused(SetBuilder().Floats("input", {2, 5}, Ramp(10)).Bytes(), "must be float32 [n, 1, 4]");
  refused(SetBuilder().Floats("input", {2, 4}, Ramp(8)).Labels({0, 1, 2}).Bytes(),
          "\"labels\" has 3 samples, the others 2");
  refused(SetBuilder().Floats("input", {2, 4}, Ramp(8)).Labels({0, 3}).Bytes(),
          "label 3 is outside the model's 3 classes");
  refused(SetBuilder().Floats("input", {2, 4}, Ramp(8)).Floats("labels", {2}, {0, 1}).Bytes(),
          "\"labels\" must be int64 or int32 [n]");
  refused(SetBuilder().Floats("input", {2, 4}, Ramp(8)).Labels({0, 1}, "lables").Bytes(),
          "\"lables\" is neither a model input nor \"labels\"");
  refused(SetBuilder().Floats("input", {2, 4}, Ramp(8)).Floats("input", {2, 4}, Ramp(8)).Bytes(),
          "appears twice");
  // Dimensions that promise more data than there is (or absurdly much) are not allocated.
  refused(SetBuilder().Floats("input", {2, 4}, Ramp(5)).Bytes(), "tensor \"input\"");
  refused(SetBuilder().Floats("input", {1LL << 40, 4}, Ramp(8)).Bytes(), "tensor \"input\"");
}

TEST_F(ValidationSetTest, ModulesAreValidatedOnTheSetWithAccuracy) {
  const std::vector<float> values = Ramp(24);
  std::vector<int64_t> labels = ReferenceLabels(values, 6);
  labels[5] = (labels[5] + 1) % 3;  // one wrong label: accuracy 5/6 for module and reference
  auto set = Parse(SetBuilder().Floats("input", {6, 4}, values).Labels(labels).Bytes());
  ASSERT_TRUE(set.ok()) << set.status();
  const std::string dir = ::testing::TempDir() + "/validation_set_test";
  for (const std::string target : {"x86_64-v2", "aarch64-v8", "armv7-neon"}) {
    CompileOptions options;
    options.target = target;
    options.out_dir = dir + "/" + target;
    auto compiled = CompileModel(onnx_, options);
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    auto json = ValidateModule(onnx_, *compiled, options, &*set);
    ASSERT_TRUE(json.ok()) << json.status();
    EXPECT_TRUE(absl::StrContains(*json, "\"accuracy\":0.833333")) << *json;
    EXPECT_TRUE(absl::StrContains(*json, "\"referenceAccuracy\":0.833333")) << *json;
    EXPECT_TRUE(absl::StrContains(*json, "\"inputs\":\"validation set\"")) << *json;
    EXPECT_TRUE(absl::StrContains(*json, "\"samples\":6")) << *json;
    EXPECT_TRUE(absl::StrContains(*json, target == "x86_64-v2" ? "\"emulated\":false"
                                                                : "\"emulated\":true"))
        << *json;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace edgeloop::compiler
