#include "compiler/c_backend.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "compiler/c_literal.h"
#include "compiler/ops/c_emit.h"
#include "compiler/ops/operator.h"
#include "compiler/passes/passes.h"
#include "compiler/passes/workspace_plan.h"
#include "compiler/reference_interpreter.h"

namespace edgeloop::compiler {

extern const char kCKernels[];         // c_kernels.c, embedded at build time
extern const char kModuleAbiHeader[];  // include/edgeloop/module_abi.h, embedded at build time

absl::Status CEmitContext::Unsupported(absl::string_view why) const {
  return absl::UnimplementedError(
      absl::StrCat("C backend: ", node().op, " '", node().name, "': ", why));
}

namespace {

using Shape = std::vector<int64_t>;

int64_t Elements(const Shape& s) { return ElementCount(s); }

// Writes one module: the graph after the passes, one step per runtime node, each emitted by
// its operator's C emitter (compiler/ops) through the CEmitContext this class implements.
class Generator : public CEmitContext {
 public:
  Generator(const Graph& graph, const CBackendOptions& options)
      : graph_(graph), options_(options) {}

  absl::StatusOr<GeneratedModule> Run();

  // CEmitContext, for the node being emitted.
  const Node& node() const override { return *node_; }
  int64_t opset() const override { return optimized_.opset; }
  const Tensor& Value(const std::string& name) const override { return values_.at(name); }
  bool IsConst(const std::string& name) const override {
    return optimized_.constants.count(name) > 0;
  }
  std::string Ref(const std::string& value) override;
  std::string Const(const Tensor& t) override;
  std::string Array(const std::string& prefix, const Shape& values) override;
  std::string PackPanels(int64_t K, int64_t N,
                         const std::function<float(int64_t, int64_t)>& b) override;
  std::string PackRows(const Tensor& a, int64_t groups, int64_t rows, int64_t K) override;
  std::string Scratch() override { return Ref(scratch_.at(step_)); }
  void Emit(absl::string_view code) override { absl::StrAppend(&body_, code); }

 private:
  absl::Status Evaluate();
  absl::Status PlanMemory();
  absl::Status EmitStep(size_t step);

  const Graph& graph_;
  CBackendOptions options_;
  Graph optimized_;                       // graph_ after the passes: its nodes are the steps
  std::map<std::string, Tensor> values_;  // every value, from one reference run on sample
                                          // inputs, and the constants the passes made
  std::map<std::string, Tensor> sample_inputs_;
  std::map<size_t, std::string> scratch_;  // step -> its scratch region's name, if any
  std::map<std::string, int64_t> scratch_floats_;
  std::map<std::string, int64_t> offset_;  // workspace offsets (floats) of intermediates
  std::map<std::string, int> input_index_, output_index_;
  int64_t workspace_floats_ = 0;
  std::string weights_, body_;
  std::map<std::string, std::string> const_names_;  // value name -> C array
  int arrays_ = 0;
  const Node* node_ = nullptr;  // being emitted
  size_t step_ = 0;
  GeneratedModule result_;
};

absl::Status Generator::Evaluate() {
  // Deterministic sample inputs in [-1, 1): shapes for every value, and self-test vectors.
  uint32_t state = 12345;
  for (const ValueInfo& input : graph_.inputs) {
    if (input.dtype != DType::kFloat32) {
      return absl::UnimplementedError(
          absl::StrCat("C backend: input \"", input.name, "\" is not float32"));
    }
    Tensor t;
    t.shape = input.shape;
    t.f.resize(Elements(t.shape));
    for (float& v : t.f) {
      state = state * 1664525u + 1013904223u;
      v = static_cast<float>(state >> 8) / static_cast<float>(1 << 24) * 2.0f - 1.0f;
    }
    sample_inputs_[input.name] = std::move(t);
  }
  // On the imported graph: the self-test then checks the passes too.
  ASSIGN_OR_RETURN(values_, RunReferenceAllValues(graph_, sample_inputs_));
  for (size_t k = 0; k < graph_.inputs.size(); ++k)
    input_index_[graph_.inputs[k].name] = static_cast<int>(k);
  for (size_t k = 0; k < graph_.outputs.size(); ++k) {
    output_index_.emplace(graph_.outputs[k].name, static_cast<int>(k));
    if (graph_.outputs[k].dtype != DType::kFloat32) {
      return absl::UnimplementedError(
          absl::StrCat("C backend: output \"", graph_.outputs[k].name, "\" is not float32"));
    }
  }
  optimized_ = graph_;
  PassStats stats;
  RETURN_IF_ERROR(Optimize(optimized_, stats));
  result_.folded_nodes = stats.folded_nodes;
  result_.fused_nodes = stats.fused_nodes;
  for (const auto& [name, t] : optimized_.constants) values_.insert_or_assign(name, t);
  return absl::OkStatus();
}

absl::Status Generator::PlanMemory() {
  // Each intermediate lives from the step that writes it to the last step that reads it; a
  // step's scratch only while it runs.
  std::map<std::string, Buffer> buffers;
  for (size_t s = 0; s < optimized_.nodes.size(); ++s) {
    const Node& n = optimized_.nodes[s];
    const int step = static_cast<int>(s);
    for (const std::string& in : n.inputs) {
      if (auto it = buffers.find(in); it != buffers.end()) it->second.last = step;
    }
    const std::string& out = n.outputs.at(0);
    if (!output_index_.count(out)) buffers[out] = {out, Value(out).size(), step, step};
    const OperatorDef* op = FindOperator(n.op);
    if (op != nullptr && op->c_scratch != nullptr) {
      node_ = &n;
      ASSIGN_OR_RETURN(const int64_t floats, op->c_scratch(*this));
      if (floats > 0) {
        // A name no value of the model can have.
        const std::string name = optimized_.UnusedName(absl::StrCat("#scratch", s));
        scratch_[s] = name;
        buffers[name] = {name, floats, step, step};
      }
    }
  }
  std::vector<Buffer> list;
  for (const auto& [name, buffer] : buffers) list.push_back(buffer);
  WorkspacePlan plan = PlanWorkspace(list);
  offset_ = std::move(plan.offsets);
  workspace_floats_ = plan.floats;
  return absl::OkStatus();
}

std::string Generator::Array(const std::string& prefix, const Shape& values) {
  const std::string name = absl::StrCat(prefix, arrays_++);
  absl::StrAppend(&weights_, "static const i64 ", name,
                  "[] = ", IntArray(values.empty() ? Shape{0} : values), ";\n");
  return name;
}

std::string Generator::Const(const Tensor& t) {
  const std::string name = absl::StrCat("W", arrays_++);
  absl::StrAppend(&weights_, "static const float ", name, "[", std::max<int64_t>(1, t.f.size()),
                  "] = {");
  for (size_t i = 0; i < t.f.size(); ++i) {
    absl::StrAppend(&weights_, i % 8 == 0 ? "\n  " : " ", FloatLiteral(t.f[i]), ",");
  }
  if (t.f.empty()) absl::StrAppend(&weights_, "0");
  absl::StrAppend(&weights_, "};\n");
  result_.weight_bytes += t.f.size() * sizeof(float);
  return name;
}

// Constant B (K x N; element (p, j) from `b`) in el_gemm_pb's panels of 4 vectors' width.
std::string Generator::PackPanels(int64_t K, int64_t N,
                                  const std::function<float(int64_t, int64_t)>& b) {
  const int64_t nb = 4 * options_.vector_floats;
  Tensor t;
  t.shape = {K, N};
  t.f.resize(K * N);
  for (int64_t j0 = 0; j0 < N; j0 += nb) {
    const int64_t w = std::min(nb, N - j0);
    for (int64_t p = 0; p < K; ++p) {
      for (int64_t c = 0; c < w; ++c) t.f[j0 * K + p * w + c] = b(p, j0 + c);
    }
  }
  return Const(t);
}

// Constant A (groups of `rows` x K, row-major) in el_gemm_pa's panels of 4 rows, per group.
std::string Generator::PackRows(const Tensor& a, int64_t groups, int64_t rows, int64_t K) {
  constexpr int64_t kMr = 4;  // EL_MR in c_kernels.c
  Tensor t;
  t.shape = a.shape;
  t.f.resize(a.f.size());
  for (int64_t g = 0; g < groups; ++g) {
    const float* src = a.f.data() + g * rows * K;
    float* dst = t.f.data() + g * rows * K;
    for (int64_t i0 = 0; i0 < rows; i0 += kMr) {
      const int64_t mr = std::min(kMr, rows - i0);
      for (int64_t p = 0; p < K; ++p) {
        for (int64_t r = 0; r < mr; ++r) dst[i0 * K + p * mr + r] = src[(i0 + r) * K + p];
      }
    }
  }
  return Const(t);
}

std::string Generator::Ref(const std::string& value) {
  if (auto it = output_index_.find(value); it != output_index_.end())
    return absl::StrCat("out", it->second);
  if (auto it = input_index_.find(value); it != input_index_.end())
    return absl::StrCat("in", it->second);
  if (auto it = offset_.find(value); it != offset_.end())
    return absl::StrCat("(ws + ", it->second, ")");
  auto it = const_names_.find(value);
  if (it != const_names_.end()) return it->second;
  const std::string name = Const(Value(value));
  const_names_[value] = name;
  return name;
}

absl::Status Generator::EmitStep(size_t step) {
  const Node& n = optimized_.nodes[step];
  node_ = &n;
  step_ = step;
  for (const std::string& in : n.inputs) {
    if (!in.empty() && Value(in).dtype != DType::kFloat32 && !IsConst(in)) {
      return Unsupported("integer tensors at run time");
    }
  }
  if (Out().dtype != DType::kFloat32) return Unsupported("integer output");
  const OperatorDef* op = FindOperator(n.op);
  if (op == nullptr || op->emit_c == nullptr) return Unsupported("not implemented");
  // Names never go into comments or code (a name holding "*/" would end the comment); the
  // step's position says which one this is, and the op is one the registry knows.
  absl::StrAppend(&body_, "  /* step ", step, ": ", std::string(op->name), " */\n");
  return op->emit_c(*this);
}

absl::StatusOr<GeneratedModule> Generator::Run() {
  RETURN_IF_ERROR(Evaluate());
  RETURN_IF_ERROR(PlanMemory());
  if (workspace_floats_ > 4 * kMaxTensorElements) {
    return absl::InvalidArgumentError(absl::StrCat("C backend: the model needs ",
                                                   workspace_floats_ * 4 >> 20,
                                                   " MiB of workspace per call; at most 4 GiB"));
  }
  for (size_t s = 0; s < optimized_.nodes.size(); ++s) RETURN_IF_ERROR(EmitStep(s));
  // Outputs the graph computes at compile time (constants) are copied out.
  for (const ValueInfo& o : graph_.outputs) {
    if (IsConst(o.name)) {
      const auto it = const_names_.find(o.name);
      const std::string src = it != const_names_.end() ? it->second : Const(Value(o.name));
      absl::StrAppend(&body_, "  el_copy(", src, ", out", output_index_.at(o.name), ", ",
                      Value(o.name).size(), ");\n");
    }
  }
  result_.runtime_nodes = static_cast<int>(optimized_.nodes.size());

  // The selftest writes its outputs after the planned workspace.
  int64_t outputs_floats = 0;
  for (const ValueInfo& o : graph_.outputs) outputs_floats += (Elements(o.shape) + 15) / 16 * 16;
  const int64_t total_floats = workspace_floats_ + outputs_floats;
  result_.workspace_bytes =
      static_cast<uint64_t>(std::max<int64_t>(total_floats, 16)) * sizeof(float);

  std::string tensors;
  auto describe = [&](const std::vector<ValueInfo>& list, const std::string& prefix) {
    std::string entries;
    for (size_t k = 0; k < list.size(); ++k) {
      absl::StrAppend(&tensors, "static const int64_t ", prefix, "_dims", k,
                      "[] = ", IntArray(list[k].shape.empty() ? Shape{1} : list[k].shape), ";\n");
      absl::StrAppend(&entries, "  {", CStringLiteral(list[k].name), ", ELM_F32, ",
                      list[k].shape.size(), ", ", prefix, "_dims", k, "},\n");
    }
    absl::StrAppend(&tensors, "static const elm_tensor ", prefix, "_tensors[] = {\n",
                    entries.empty() ? "  {0, ELM_F32, 0, 0},\n" : entries, "};\n");
  };
  describe(graph_.inputs, "input");
  describe(graph_.outputs, "output");

  // Self-test vectors: the sample inputs and the reference interpreter's outputs for them.
  // They are constant data too, but not the model's weights.
  const uint64_t weight_bytes = result_.weight_bytes;
  std::string selftest =
      "static int selftest(void* workspace) {\n  float* ws = (float*)workspace;\n";
  std::vector<std::string> in_names, out_names;
  for (const ValueInfo& i : graph_.inputs) in_names.push_back(Const(sample_inputs_.at(i.name)));
  int64_t at = workspace_floats_;
  std::string checks;
  for (size_t k = 0; k < graph_.outputs.size(); ++k) {
    const std::string expected = Const(Value(graph_.outputs[k].name));
    absl::StrAppend(&selftest, "  float* got", k, " = ws + ", at, ";\n");
    absl::StrAppend(&checks, "  if (!el_close(got", k, ", ", expected, ", ",
                    Elements(graph_.outputs[k].shape), ")) return 1;\n");
    out_names.push_back(absl::StrCat("got", k));
    at += (Elements(graph_.outputs[k].shape) + 15) / 16 * 16;
  }
  absl::StrAppend(
      &selftest, "  const void* in[] = {", in_names.empty() ? "0" : absl::StrJoin(in_names, ", "),
      "};\n", "  void* out[] = {", out_names.empty() ? "0" : absl::StrJoin(out_names, ", "), "};\n",
      "  if (run(workspace, in, out) != 0) return 1;\n", checks, "  return 0;\n}\n");
  result_.weight_bytes = weight_bytes;

  std::string run =
      "static int run(void* workspace, const void* const* inputs, void* const* outputs) {\n";
  absl::StrAppend(&run, "  float* ws = (float*)workspace;\n  (void)ws;\n");
  for (size_t k = 0; k < graph_.inputs.size(); ++k) {
    absl::StrAppend(&run, "  const float* in", k, " = (const float*)inputs[", k, "];\n");
  }
  for (size_t k = 0; k < graph_.outputs.size(); ++k) {
    absl::StrAppend(&run, "  float* out", k, " = (float*)outputs[", k, "];\n");
  }
  absl::StrAppend(&run, body_, "  return 0;\n}\n");

  result_.c_source = absl::StrCat(
      "/* Generated by edgeloop-compile (backend c). Do not edit. */\n", kModuleAbiHeader,
      "#define EL_VEC ", options_.vector_floats, "\n", kCKernels,
      "\n/* ---- module ---------------------------------------------------------------- */\n",
      weights_, tensors, run, selftest, "static const elm_module kModule = {1, ",
      CStringLiteral(options_.model_digest), ", ", CStringLiteral(options_.target), ", \"c\", ",
      result_.workspace_bytes, "u, ", graph_.inputs.size(), ", ", graph_.outputs.size(),
      ", input_tensors, output_tensors, run, selftest};\n",
      "__attribute__((visibility(\"default\"))) const elm_module* edgeloop_module_v1(void) { "
      "return &kModule; }\n");
  return result_;
}

}  // namespace

absl::StatusOr<GeneratedModule> GenerateC(const Graph& graph, const CBackendOptions& options) {
  Generator generator(graph, options);
  return generator.Run();
}

}  // namespace edgeloop::compiler
