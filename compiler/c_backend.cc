#include "compiler/c_backend.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "compiler/c_literal.h"
#include "compiler/onnx_import.h"
#include "compiler/reference_interpreter.h"
#include "compiler/window.h"

namespace edgeloop::compiler {

extern const char kCKernels[];         // c_kernels.c, embedded at build time
extern const char kModuleAbiHeader[];  // include/edgeloop/module_abi.h, embedded at build time

namespace {

using Shape = std::vector<int64_t>;

int64_t Elements(const Shape& s) { return ElementCount(s); }

Shape Strides(const Shape& s) { return RowMajorStrides(s); }

int64_t Axis(int64_t axis, size_t rank) {
  return axis < 0 ? axis + static_cast<int64_t>(rank) : axis;
}

std::string FloatLiteral(float v) {
  if (std::isnan(v)) return "NAN";
  if (std::isinf(v)) return v > 0 ? "INFINITY" : "-INFINITY";
  return absl::StrFormat("%af", v);  // hexadecimal: exact, and the same text every time
}

std::string IntArray(const Shape& values) {
  return absl::StrCat("{", absl::StrJoin(values, ", "), "}");
}

absl::Status Unsupported(const Node& node, absl::string_view why) {
  return absl::UnimplementedError(
      absl::StrCat("C backend: ", node.op, " '", node.name, "': ", why));
}

// A runtime operator after folding and fusion.
struct Step {
  const Node* node = nullptr;
  int act = 0;  // fused activation: 0 none, 1 relu, 2 clip
  float lo = 0, hi = 0;
  std::string output;  // the value this step writes (after fusion: the activation's output)
  const Tensor* bn_scale = nullptr;  // BatchNormalization folded into a Conv
  const Tensor* bn_shift = nullptr;
  std::string scratch;  // workspace region only this step uses (im2col columns), if any
};

// A 2-D (or 1-D, as H = 1) convolution resolved against its input: everything the kernels
// take, and how it runs.
struct ConvShape {
  int64_t batch, C, H, W, M, OH, OW, KH, KW, group, sh, sw, dh, dw, ph, pw;
  bool gemm;    // filters x image columns (el_gemm_pa); else direct (depthwise, run-time filters)
  bool im2col;  // columns gathered into scratch first; a 1x1 stride-1 unpadded one reads x as is
  int64_t cg() const { return C / group; }
  int64_t mg() const { return M / group; }
  int64_t K() const { return cg() * KH * KW; }
  int64_t scratch_floats() const { return im2col ? K() * OH * OW : 0; }
};

class Generator {
 public:
  Generator(const Graph& graph, const CBackendOptions& options)
      : graph_(graph), options_(options) {}

  absl::StatusOr<GeneratedModule> Run();

 private:
  absl::Status Evaluate();
  absl::Status Plan();
  absl::Status EmitStep(const Step& step);
  std::string Ref(const std::string& value);
  std::string Const(const Tensor& t);
  std::string Array(const std::string& prefix, const Shape& values);
  std::string PackPanels(int64_t K, int64_t N, const std::function<float(int64_t, int64_t)>& b);
  std::string PackRows(const Tensor& a, int64_t groups, int64_t rows, int64_t K);
  absl::StatusOr<ConvShape> ConvShapeOf(const Node& n) const;
  const Tensor& Value(const std::string& name) const { return values_.at(name); }
  bool IsConst(const std::string& name) const { return constant_.count(name) > 0; }

  const Graph& graph_;
  CBackendOptions options_;
  std::map<std::string, Tensor> values_;  // every value, from one reference run on sample inputs
  std::map<std::string, Tensor> sample_inputs_;
  std::set<std::string> constant_;
  std::vector<Step> steps_;
  std::map<std::string, int64_t> offset_;  // workspace offsets (floats) of intermediates
  std::map<std::string, int64_t> scratch_floats_;  // sizes of per-step scratch regions
  std::map<std::string, int> input_index_, output_index_;
  int64_t workspace_floats_ = 0;
  std::string weights_, body_;
  std::map<std::string, std::string> const_names_;  // value name -> C array
  std::deque<Tensor> derived_;  // tensors made at compile time (folded BN); stable addresses
  int arrays_ = 0;
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
  // Constant folding: a node whose inputs are all constant is computed now.
  for (const auto& [name, t] : graph_.constants) constant_.insert(name);
  for (const Node& node : graph_.nodes) {
    bool all_constant = true;
    for (const std::string& in : node.inputs)
      all_constant = all_constant && (in.empty() || IsConst(in));
    if (all_constant) {
      for (const std::string& out : node.outputs) {
        if (!out.empty()) constant_.insert(out);
      }
      ++result_.folded_nodes;
    }
  }
  return absl::OkStatus();
}

absl::Status Generator::Plan() {
  // How often each value is read by runtime nodes, and whether the graph returns it.
  std::map<std::string, int> readers;
  std::vector<const Node*> runtime;
  for (const Node& node : graph_.nodes) {
    bool folded = true;
    for (const std::string& out : node.outputs) folded = folded && (out.empty() || IsConst(out));
    if (folded) continue;
    runtime.push_back(&node);
    for (const std::string& in : node.inputs) {
      if (!in.empty()) ++readers[in];
    }
  }
  // Dead-node removal, last to first: drop nodes nobody reads and the graph does not return.
  std::vector<const Node*> live;
  for (auto it = runtime.rbegin(); it != runtime.rend(); ++it) {
    bool used = false;
    for (const std::string& out : (*it)->outputs) {
      used = used || (!out.empty() && (readers[out] > 0 || output_index_.count(out)));
    }
    if (!used) {
      for (const std::string& in : (*it)->inputs) {
        if (!in.empty()) --readers[in];
      }
      continue;
    }
    live.insert(live.begin(), *it);
  }
  // Fusion: Conv + BatchNormalization (constant parameters), then Conv/Gemm + Relu/Clip, when
  // the intermediate has exactly one reader and is not a graph output.
  std::set<const Node*> absorbed;
  auto sole_reader = [&](const std::string& value, size_t from) -> const Node* {
    if (readers[value] != 1 || output_index_.count(value)) return nullptr;
    for (size_t k = from; k < live.size(); ++k) {
      for (const std::string& in : live[k]->inputs) {
        if (in == value) return live[k];
      }
    }
    return nullptr;
  };
  for (size_t k = 0; k < live.size(); ++k) {
    const Node* node = live[k];
    if (absorbed.count(node)) continue;
    Step step;
    step.node = node;
    step.output = node->outputs[0];
    if (node->op == "Conv") {
      const Node* next = sole_reader(step.output, k + 1);
      if (next != nullptr && next->op == "BatchNormalization" && next->inputs.size() >= 5 &&
          next->Int("training_mode", 0) == 0 &&
          (next->outputs.size() == 1 || next->outputs[1].empty())) {
        bool params_constant = true;
        for (int p = 1; p < 5; ++p) params_constant = params_constant && IsConst(next->inputs[p]);
        if (params_constant) {
          const float epsilon = next->Float("epsilon", 1e-5f);
          const Tensor& scale = Value(next->inputs[1]);
          const Tensor& bias = Value(next->inputs[2]);
          const Tensor& mean = Value(next->inputs[3]);
          const Tensor& var = Value(next->inputs[4]);
          Tensor s, t;
          s.shape = t.shape = scale.shape;
          for (size_t c = 0; c < scale.f.size(); ++c) {
            const double sc = scale.f[c] / std::sqrt(static_cast<double>(var.f[c]) + epsilon);
            s.f.push_back(static_cast<float>(sc));
            t.f.push_back(static_cast<float>(bias.f[c] - mean.f[c] * sc));
          }
          derived_.push_back(std::move(s));
          step.bn_scale = &derived_.back();
          derived_.push_back(std::move(t));
          step.bn_shift = &derived_.back();
          absorbed.insert(next);
          step.output = next->outputs[0];
          ++result_.fused_nodes;
        }
      }
    }
    if (node->op == "Conv" || node->op == "Gemm") {
      const Node* next = sole_reader(step.output, k + 1);
      if (next != nullptr && next->op == "Relu") {
        step.act = 1;
      } else if (next != nullptr && next->op == "Clip") {
        float lo = -INFINITY, hi = INFINITY;
        bool constant_bounds = true;
        if (graph_.opset < 11) {
          lo = next->Float("min", lo);
          hi = next->Float("max", hi);
        } else {
          if (next->inputs.size() > 1 && !next->inputs[1].empty()) {
            constant_bounds = IsConst(next->inputs[1]);
            if (constant_bounds) lo = Value(next->inputs[1]).f.at(0);
          }
          if (next->inputs.size() > 2 && !next->inputs[2].empty()) {
            constant_bounds = constant_bounds && IsConst(next->inputs[2]);
            if (constant_bounds) hi = Value(next->inputs[2]).f.at(0);
          }
        }
        if (constant_bounds) {
          step.act = 2;
          step.lo = lo;
          step.hi = hi;
        }
      }
      if (step.act != 0) {
        absorbed.insert(next);
        step.output = next->outputs[0];
        ++result_.fused_nodes;
      }
    }
    if (node->op == "Conv") {
      ASSIGN_OR_RETURN(ConvShape conv, ConvShapeOf(*node));
      if (conv.scratch_floats() > 0) {
        step.scratch = absl::StrCat("#scratch", steps_.size());
        scratch_floats_[step.scratch] = conv.scratch_floats();
      }
    }
    steps_.push_back(step);
  }
  // Static memory plan: each intermediate lives from the step that writes it to the last step
  // that reads it; greedy first fit, largest first, 64-byte aligned.
  std::map<std::string, std::pair<int, int>> life;
  for (int s = 0; s < static_cast<int>(steps_.size()); ++s) {
    const Step& step = steps_[s];
    for (const std::string& in : step.node->inputs) {
      if (life.count(in)) life[in].second = s;
    }
    if (!output_index_.count(step.output)) life[step.output] = {s, s};
    if (!step.scratch.empty()) life[step.scratch] = {s, s};
  }
  auto floats = [&](const std::string& name) {
    const auto it = scratch_floats_.find(name);
    const int64_t n = it != scratch_floats_.end() ? it->second : Value(name).size();
    return (n + 15) / 16 * 16;
  };
  std::vector<std::string> order;
  for (const auto& [name, span] : life) order.push_back(name);
  std::stable_sort(order.begin(), order.end(), [&](const std::string& a, const std::string& b) {
    return floats(a) > floats(b);
  });
  std::vector<std::pair<std::string, int64_t>> placed;
  for (const std::string& name : order) {
    const int64_t size = floats(name);
    int64_t offset = 0;
    bool moved = true;
    while (moved) {
      moved = false;
      for (const auto& [other, at] : placed) {
        const bool overlap_in_time =
            !(life[name].second < life[other].first || life[other].second < life[name].first);
        const int64_t other_size = floats(other);
        if (overlap_in_time && offset < at + other_size && at < offset + size) {
          offset = at + other_size;
          moved = true;
        }
      }
    }
    placed.emplace_back(name, offset);
    offset_[name] = offset;
    workspace_floats_ = std::max(workspace_floats_, offset + size);
  }
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

absl::StatusOr<ConvShape> Generator::ConvShapeOf(const Node& n) const {
  const Shape& xs = Value(n.inputs.at(0)).shape;
  const Shape& ws = Value(n.inputs.at(1)).shape;
  if (xs.size() != 3 && xs.size() != 4) return Unsupported(n, "only 1-D and 2-D convolutions");
  const Shape in_spatial(xs.begin() + 2, xs.end());
  Shape kernel = n.Ints("kernel_shape");
  if (kernel.empty()) kernel.assign(ws.begin() + 2, ws.end());
  ASSIGN_OR_RETURN(Window w, PlanWindow(n, in_spatial, kernel, false));
  // A 1-D convolution is a 2-D one with H = 1.
  const bool one_d = xs.size() == 3;
  auto at = [&](const Shape& v, int k, int64_t one) { return one_d ? (k == 0 ? one : v[0]) : v[k]; };
  ConvShape c;
  c.batch = xs[0];
  c.C = xs[1];
  c.H = at(in_spatial, 0, 1);
  c.W = at(in_spatial, 1, 1);
  c.M = ws[0];
  c.OH = at(w.out, 0, 1);
  c.OW = at(w.out, 1, 1);
  c.KH = at(w.kernel, 0, 1);
  c.KW = at(w.kernel, 1, 1);
  c.group = n.Int("group", 1);
  c.sh = at(w.strides, 0, 1);
  c.sw = at(w.strides, 1, 1);
  c.dh = at(w.dilations, 0, 1);
  c.dw = at(w.dilations, 1, 1);
  c.ph = at(w.pad_begin, 0, 0);
  c.pw = at(w.pad_begin, 1, 0);
  // By shape: filters x columns when the filters are known now and there is more than one
  // product per output (not depthwise); a 1x1 stride-1 unpadded convolution needs no columns.
  c.gemm = IsConst(n.inputs[1]) && !(c.cg() == 1 && c.mg() == 1);
  const bool pointwise = c.KH == 1 && c.KW == 1 && c.sh == 1 && c.sw == 1 && c.ph == 0 &&
                         c.pw == 0 && c.OH == c.H && c.OW == c.W;
  c.im2col = c.gemm && !pointwise;
  return c;
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

absl::Status Generator::EmitStep(const Step& step) {
  const Node& n = *step.node;
  for (const std::string& in : n.inputs) {
    if (!in.empty() && Value(in).dtype != DType::kFloat32 && !IsConst(in)) {
      return Unsupported(n, "integer tensors at run time");
    }
  }
  const Tensor& out = Value(step.output);
  if (out.dtype != DType::kFloat32) return Unsupported(n, "integer output");
  const std::string y = Ref(step.output);
  const int64_t count = out.size();
  std::string& b = body_;
  // Names never go into comments or code (a name holding "*/" would end the comment); the
  // node's position in the graph says which one this is, and the op is one the importer knows.
  absl::StrAppend(&b, "  /* node ", &n - graph_.nodes.data(), ": ",
                  IsSupportedOperator(n.op) ? n.op : "?", " */\n");
  auto x = [&](size_t k) { return Ref(n.inputs.at(k)); };
  auto shape = [&](size_t k) -> const Shape& { return Value(n.inputs.at(k)).shape; };

  if (n.op == "Add" || n.op == "Sub" || n.op == "Mul" || n.op == "Div") {
    const std::string fn = absl::StrCat("el_", n.op == "Add"   ? "add"
                                               : n.op == "Sub" ? "sub"
                                               : n.op == "Mul" ? "mul"
                                                               : "div");
    const Shape &sa = shape(0), &sb = shape(1);
    if (sa == out.shape && sb == out.shape) {
      absl::StrAppend(&b, "  ", fn, "_same(", x(0), ", ", x(1), ", ", y, ", ", count, ");\n");
    } else if (sa == out.shape && Elements(sb) == 1) {
      absl::StrAppend(&b, "  ", fn, "_scalar(", x(0), ", ", x(1), "[0], ", y, ", ", count, ");\n");
    } else {
      if (out.shape.size() > 8) return Unsupported(n, "rank above 8");
      auto strides_for = [&](const Shape& s) {
        Shape st = Strides(s), full(out.shape.size(), 0);
        for (size_t k = 0; k < s.size(); ++k) {
          full[out.shape.size() - s.size() + k] = s[k] == 1 ? 0 : st[k];
        }
        return full;
      };
      absl::StrAppend(&b, "  ", fn, "_bcast(", x(0), ", ", x(1), ", ", y, ", ", out.shape.size(),
                      ", ", Array("S", out.shape), ", ", Array("S", strides_for(sa)), ", ",
                      Array("S", strides_for(sb)), ");\n");
    }
  } else if (n.op == "Relu") {
    absl::StrAppend(&b, "  el_relu(", x(0), ", ", y, ", ", count, ");\n");
  } else if (n.op == "LeakyRelu") {
    absl::StrAppend(&b, "  el_leaky_relu(", x(0), ", ", y, ", ", count, ", ",
                    FloatLiteral(n.Float("alpha", 0.01f)), ");\n");
  } else if (n.op == "Sigmoid") {
    absl::StrAppend(&b, "  el_sigmoid(", x(0), ", ", y, ", ", count, ");\n");
  } else if (n.op == "Tanh") {
    absl::StrAppend(&b, "  el_tanh(", x(0), ", ", y, ", ", count, ");\n");
  } else if (n.op == "Clip") {
    float lo = -INFINITY, hi = INFINITY;
    if (graph_.opset < 11) {
      lo = n.Float("min", lo);
      hi = n.Float("max", hi);
    } else {
    }
    // Bounds given as inputs: folded when constant, read at run time otherwise.
    std::string bound[2] = {FloatLiteral(lo), FloatLiteral(hi)};
    for (size_t k = 1; graph_.opset >= 11 && k < n.inputs.size() && k < 3; ++k) {
      if (n.inputs[k].empty()) continue;
      bound[k - 1] = IsConst(n.inputs[k]) ? FloatLiteral(Value(n.inputs[k]).f.at(0))
                                          : absl::StrCat(x(k), "[0]");
    }
    absl::StrAppend(&b, "  el_clip(", x(0), ", ", y, ", ", count, ", ", bound[0], ", ", bound[1],
                    ");\n");
  } else if (n.op == "Gemm" || n.op == "MatMul") {
    const bool gemm = n.op == "Gemm";
    const bool ta = gemm && n.Int("transA", 0) != 0, tb = gemm && n.Int("transB", 0) != 0;
    Shape a = shape(0), bs = shape(1);
    if (gemm && (a.size() != 2 || bs.size() != 2)) return Unsupported(n, "A and B must be 2-D");
    if (!gemm) {
      if (a.size() == 1) a.insert(a.begin(), 1);
      if (bs.size() == 1) bs.push_back(1);
    }
    const int64_t M = ta ? a[a.size() - 1] : a[a.size() - 2], K = ta ? a[a.size() - 2] : a.back();
    const int64_t N = tb ? bs[bs.size() - 2] : bs.back();
    // Constant B is packed at compile time into the panels el_gemm_pb streams through.
    const bool b_packed = IsConst(n.inputs[1]) && (gemm || bs.size() == 2);
    std::string b_ref;
    if (b_packed) {
      const Tensor& w = Value(n.inputs[1]);
      b_ref = PackPanels(K, N, [&](int64_t p, int64_t j) { return tb ? w.f[j * K + p] : w.f[p * N + j]; });
    } else {
      b_ref = x(1);
    }
    const bool b_transposed_runtime = !b_packed && tb;
    std::string c_ref = "0";
    int64_t cs_m = 0, cs_n = 0;
    if (gemm && n.inputs.size() > 2 && !n.inputs[2].empty()) {
      const Shape& cs = shape(2);
      c_ref = x(2);
      const Shape full = cs.size() == 2 ? cs : cs.size() == 1 ? Shape{1, cs[0]} : Shape{1, 1};
      cs_m = full[0] == 1 ? 0 : full[1];
      cs_n = full[1] == 1 ? 0 : 1;
    }
    const std::string alpha = FloatLiteral(gemm ? n.Float("alpha", 1.0f) : 1.0f);
    const std::string beta = FloatLiteral(gemm ? n.Float("beta", 1.0f) : 1.0f);
    if (gemm) {
      if (b_transposed_runtime) {
        if (step.act != 0) return Unsupported(n, "fused activation with B transposed at run time");
        absl::StrAppend(&b, "  el_gemm_bt(", x(0), ", ", ta, ", ", b_ref, ", ", c_ref, ", ", y,
                        ", ", M, ", ", N, ", ", K, ", ", alpha, ", ", beta, ", ", cs_m, ", ", cs_n,
                        ");\n");
      } else {
        absl::StrAppend(&b, "  el_gemm", b_packed ? "_pb(" : "(", x(0), ", ", ta, ", ", b_ref, ", ",
                        c_ref, ", ", y, ", ", M, ", ", N, ", ", K, ", ", alpha, ", ", beta, ", ",
                        cs_m, ", ", cs_n, ", ", step.act, ", ", FloatLiteral(step.lo), ", ",
                        FloatLiteral(step.hi), ");\n");
      }
    } else if (b_packed) {
      // MatMul by constant 2-D weights: every leading dimension of A is just more rows.
      absl::StrAppend(&b, "  el_gemm_pb(", x(0), ", 0, ", b_ref, ", 0, ", y, ", ", count / N, ", ",
                      N, ", ", K, ", 1.0f, 0.0f, 0, 0, 0, 0.0f, 0.0f);\n");
    } else {
      // Batched MatMul with broadcast batch dimensions: per-batch offsets fixed at compile time.
      Shape a_batch(a.begin(), a.end() - 2), b_batch(bs.begin(), bs.end() - 2);
      Shape batch(std::max(a_batch.size(), b_batch.size()));
      for (size_t k = 0; k < batch.size(); ++k) {
        const int64_t da =
            k < batch.size() - a_batch.size() ? 1 : a_batch[k - (batch.size() - a_batch.size())];
        const int64_t db =
            k < batch.size() - b_batch.size() ? 1 : b_batch[k - (batch.size() - b_batch.size())];
        batch[k] = std::max(da, db);
      }
      Shape a_off, b_off;
      const Shape sa = Strides(a_batch), sb = Strides(b_batch);
      Shape coords(batch.size(), 0);
      for (int64_t i = 0; i < Elements(batch); ++i) {
        int64_t oa = 0, ob = 0;
        for (size_t k = 0; k < batch.size(); ++k) {
          const int64_t ka =
              static_cast<int64_t>(k) - static_cast<int64_t>(batch.size() - a_batch.size());
          const int64_t kb =
              static_cast<int64_t>(k) - static_cast<int64_t>(batch.size() - b_batch.size());
          if (ka >= 0 && a_batch[ka] != 1) oa += coords[k] * sa[ka];
          if (kb >= 0 && b_batch[kb] != 1) ob += coords[k] * sb[kb];
        }
        a_off.push_back(oa * M * K);
        b_off.push_back(ob * K * N);
        for (int k = static_cast<int>(batch.size()) - 1; k >= 0; --k) {
          if (++coords[k] < batch[k]) break;
          coords[k] = 0;
        }
      }
      const std::string ao = Array("A", a_off), bo = Array("B", b_off);
      absl::StrAppend(&b, "  for (i64 i = 0; i < ", a_off.size(), "; ++i) el_gemm(", x(0), " + ",
                      ao, "[i], 0, ", b_ref, " + ", bo, "[i], 0, ", y, " + i * ", M * N, ", ", M,
                      ", ", N, ", ", K, ", 1.0f, 0.0f, 0, 0, 0, 0.0f, 0.0f);\n");
    }
  } else if (n.op == "Conv") {
    ASSIGN_OR_RETURN(const ConvShape c, ConvShapeOf(n));
    const Tensor* weights = IsConst(n.inputs[1]) ? &Value(n.inputs[1]) : nullptr;
    const bool has_bias = n.inputs.size() > 2 && !n.inputs[2].empty();
    std::string bias_ref = has_bias ? x(2) : "0";
    Tensor folded;
    if (step.bn_scale != nullptr) {
      if (weights == nullptr || (has_bias && !IsConst(n.inputs[2]))) {
        return Unsupported(n, "BatchNormalization after a Conv with run-time weights");
      }
      folded = *weights;
      const int64_t per_map = folded.size() / c.M;
      Tensor bias;
      bias.shape = {c.M};
      for (int64_t m = 0; m < c.M; ++m) {
        for (int64_t i = 0; i < per_map; ++i) folded.f[m * per_map + i] *= step.bn_scale->f[m];
        const float b0 = has_bias ? Value(n.inputs[2]).f[m] : 0.0f;
        bias.f.push_back(b0 * step.bn_scale->f[m] + step.bn_shift->f[m]);
      }
      weights = &folded;
      bias_ref = Const(bias);
    }
    const std::string act =
        absl::StrCat(step.act, ", ", FloatLiteral(step.lo), ", ", FloatLiteral(step.hi));
    if (!c.gemm) {
      absl::StrAppend(&b, "  el_conv2d(", x(0), ", ", weights ? Const(*weights) : x(1), ", ",
                      bias_ref, ", ", y, ", ", c.batch, ", ", c.C, ", ", c.H, ", ", c.W, ", ", c.M,
                      ", ", c.OH, ", ", c.OW, ", ", c.KH, ", ", c.KW, ", ", c.group, ", ", c.sh,
                      ", ", c.sw, ", ", c.dh, ", ", c.dw, ", ", c.ph, ", ", c.pw, ", ", act,
                      ");\n");
      return absl::OkStatus();
    }
    // Per image and group: Y_g (mg x OH*OW) = filters_g (mg x K) * columns (K x OH*OW).
    const std::string filters = PackRows(*weights, c.group, c.mg(), c.K());
    const std::string image = absl::StrCat(x(0), " + (b * ", c.C, " + g * ", c.cg(), ") * ",
                                           c.H * c.W);
    std::string columns = image;
    absl::StrAppend(&b, "  for (i64 b = 0; b < ", c.batch, "; ++b) {\n    for (i64 g = 0; g < ",
                    c.group, "; ++g) {\n");
    if (c.im2col) {
      columns = Ref(step.scratch);
      absl::StrAppend(&b, "      el_im2col(", image, ", ", columns, ", ", c.cg(), ", ", c.H, ", ",
                      c.W, ", ", c.OH, ", ", c.OW, ", ", c.KH, ", ", c.KW, ", ", c.sh, ", ", c.sw,
                      ", ", c.dh, ", ", c.dw, ", ", c.ph, ", ", c.pw, ");\n");
    }
    absl::StrAppend(&b, "      el_gemm_pa(", filters, " + g * ", c.mg() * c.K(), ", ", columns, ", ",
                    bias_ref == "0" ? "0" : absl::StrCat(bias_ref, " + g * ", c.mg()), ", ", y,
                    " + (b * ", c.M, " + g * ", c.mg(), ") * ", c.OH * c.OW, ", ", c.mg(), ", ",
                    c.OH * c.OW, ", ", c.K(), ", ", act, ");\n    }\n  }\n");
  } else if (n.op == "MaxPool" || n.op == "AveragePool") {
    if (n.outputs.size() > 1 && !n.outputs[1].empty()) return Unsupported(n, "the Indices output");
    if (n.Int("storage_order", 0) != 0) return Unsupported(n, "storage_order");
    const Shape& xs = shape(0);
    if (xs.size() != 3 && xs.size() != 4) return Unsupported(n, "only 1-D and 2-D pooling");
    const Shape in_spatial(xs.begin() + 2, xs.end());
    ASSIGN_OR_RETURN(Window w,
                     PlanWindow(n, in_spatial, n.Ints("kernel_shape"), n.Int("ceil_mode", 0) != 0));
    const bool one_d = xs.size() == 3;
    auto v2 = [&](const Shape& v, int k2d, int64_t one) {
      return one_d ? (k2d == 0 ? one : v[0]) : v[k2d];
    };
    absl::StrAppend(&b, "  el_pool2d(", x(0), ", ", y, ", ", xs[0] * xs[1], ", ",
                    v2(in_spatial, 0, 1), ", ", v2(in_spatial, 1, 1), ", ", v2(w.out, 0, 1), ", ",
                    v2(w.out, 1, 1), ", ", v2(w.kernel, 0, 1), ", ", v2(w.kernel, 1, 1), ", ",
                    v2(w.strides, 0, 1), ", ", v2(w.strides, 1, 1), ", ", v2(w.dilations, 0, 1),
                    ", ", v2(w.dilations, 1, 1), ", ", v2(w.pad_begin, 0, 0), ", ",
                    v2(w.pad_begin, 1, 0), ", ", v2(w.pad_end, 0, 0), ", ", v2(w.pad_end, 1, 0),
                    ", ", n.op == "MaxPool" ? 1 : 0, ", ",
                    n.Int("count_include_pad", 0) != 0 ? 1 : 0, ");\n");
  } else if (n.op == "GlobalAveragePool") {
    const Shape& xs = shape(0);
    absl::StrAppend(&b, "  el_global_avg(", x(0), ", ", y, ", ", xs[0] * xs[1], ", ",
                    Elements(xs) / (xs[0] * xs[1]), ");\n");
  } else if (n.op == "BatchNormalization") {
    if (n.Int("training_mode", 0) != 0 || (n.outputs.size() > 1 && !n.outputs[1].empty())) {
      return Unsupported(n, "training mode");
    }
    const Shape& xs = shape(0);
    const int64_t channels = xs.size() > 1 ? xs[1] : 1;
    bool constant_params = true;
    for (int p = 1; p < 5; ++p) constant_params = constant_params && IsConst(n.inputs.at(p));
    if (!constant_params) {
      absl::StrAppend(&b, "  el_batch_norm(", x(0), ", ", y, ", ", xs[0], ", ", channels, ", ",
                      Elements(xs) / (xs[0] * channels), ", ", x(1), ", ", x(2), ", ", x(3), ", ",
                      x(4), ", ", FloatLiteral(n.Float("epsilon", 1e-5f)), ");\n");
      return absl::OkStatus();
    }
    const double epsilon = n.Float("epsilon", 1e-5f);
    Tensor s, t;
    for (size_t c = 0; c < Value(n.inputs[1]).f.size(); ++c) {
      const double sc = Value(n.inputs[1]).f[c] /
                        std::sqrt(static_cast<double>(Value(n.inputs[4]).f[c]) + epsilon);
      s.f.push_back(static_cast<float>(sc));
      t.f.push_back(static_cast<float>(Value(n.inputs[2]).f[c] - Value(n.inputs[3]).f[c] * sc));
    }
    absl::StrAppend(&b, "  el_channel_affine(", x(0), ", ", y, ", ", xs[0], ", ", channels, ", ",
                    Elements(xs) / (xs[0] * channels), ", ", Const(s), ", ", Const(t), ");\n");
  } else if (n.op == "Softmax" || n.op == "LogSoftmax") {
    const Shape& xs = shape(0);
    const bool legacy = graph_.opset < 13;
    const int64_t axis = Axis(n.Int("axis", legacy ? 1 : -1), xs.size());
    int64_t outer = 1, len = 1, inner = 1;
    for (size_t k = 0; k < xs.size(); ++k) {
      if (static_cast<int64_t>(k) < axis) outer *= xs[k];
      if (legacy ? static_cast<int64_t>(k) >= axis : static_cast<int64_t>(k) == axis) len *= xs[k];
      if (!legacy && static_cast<int64_t>(k) > axis) inner *= xs[k];
    }
    absl::StrAppend(&b, "  el_softmax(", x(0), ", ", y, ", ", outer, ", ", len, ", ", inner, ", ",
                    n.op == "LogSoftmax" ? 1 : 0, ");\n");
  } else if (n.op == "Transpose") {
    const Shape& xs = shape(0);
    if (xs.size() > 8) return Unsupported(n, "rank above 8");
    Shape perm = n.Ints("perm");
    if (perm.empty()) {
      for (size_t k = 0; k < xs.size(); ++k)
        perm.push_back(static_cast<int64_t>(xs.size() - 1 - k));
    }
    const Shape in_strides = Strides(xs);
    Shape permuted;
    for (int64_t p : perm) permuted.push_back(in_strides[p]);
    absl::StrAppend(&b, "  el_transpose(", x(0), ", ", y, ", ", xs.size(), ", ",
                    Array("S", out.shape), ", ", Array("S", permuted), ");\n");
  } else if (n.op == "Concat") {
    const int64_t axis = Axis(n.Int("axis", 0), out.shape.size());
    int64_t outer = 1, inner = 1;
    for (int64_t k = 0; k < axis; ++k) outer *= out.shape[k];
    for (size_t k = axis + 1; k < out.shape.size(); ++k) inner *= out.shape[k];
    int64_t offset = 0;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const int64_t chunk = shape(k)[axis] * inner;
      absl::StrAppend(&b, "  el_concat_part(", x(k), ", ", y, ", ", outer, ", ", chunk, ", ",
                      out.shape[axis] * inner, ", ", offset, ");\n");
      offset += chunk;
    }
  } else if (n.op == "Pad") {
    const Shape& xs = shape(0);
    if (xs.size() > 8) return Unsupported(n, "rank above 8");
    Shape pads;
    float value = 0;
    if (graph_.opset < 11) {
      pads = n.Ints("pads");
      value = n.Float("value", 0);
    } else {
      if (!IsConst(n.inputs.at(1))) return Unsupported(n, "pads computed at run time");
      pads = Value(n.inputs[1]).i;
      if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
        if (!IsConst(n.inputs[2])) return Unsupported(n, "a pad value computed at run time");
        value = Value(n.inputs[2]).f.at(0);
      }
      if (n.inputs.size() > 3 && !n.inputs[3].empty()) return Unsupported(n, "the axes input");
    }
    const std::string mode = n.String("mode", "constant");
    const int mode_id = mode == "edge" ? 1 : mode == "reflect" ? 2 : 0;
    absl::StrAppend(&b, "  el_pad(", x(0), ", ", y, ", ", xs.size(), ", ", Array("S", xs), ", ",
                    Array("S", out.shape), ", ",
                    Array("S", Shape(pads.begin(), pads.begin() + xs.size())), ", ", mode_id, ", ",
                    FloatLiteral(value), ");\n");
  } else if (n.op == "ReduceMean") {
    const Shape& xs = shape(0);
    if (xs.size() > 8) return Unsupported(n, "rank above 8");
    Shape axes = n.Ints("axes");
    std::vector<bool> reduce(xs.size(), axes.empty());
    for (int64_t a : axes) reduce[Axis(a, xs.size())] = true;
    Shape kept(xs.size());
    for (size_t k = 0; k < xs.size(); ++k) kept[k] = reduce[k] ? 1 : xs[k];
    Shape out_strides = Strides(kept);
    for (size_t k = 0; k < xs.size(); ++k) {
      if (reduce[k]) out_strides[k] = 0;
    }
    absl::StrAppend(&b, "  el_reduce_mean(", x(0), ", ", y, ", ", xs.size(), ", ", Array("S", xs),
                    ", ", Array("S", out_strides), ", ", count, ", ",
                    Elements(xs) / std::max<int64_t>(count, 1), ");\n");
  } else if (n.op == "Reshape" || n.op == "Flatten" || n.op == "Squeeze" || n.op == "Unsqueeze" ||
             n.op == "Identity" || n.op == "Dropout") {
    if (n.op == "Dropout" && n.outputs.size() > 1 && !n.outputs[1].empty())
      return Unsupported(n, "the mask output");
    absl::StrAppend(&b, "  el_copy(", x(0), ", ", y, ", ", count, ");\n");
  } else {
    return Unsupported(n, "not implemented");
  }
  return absl::OkStatus();
}

absl::StatusOr<GeneratedModule> Generator::Run() {
  RETURN_IF_ERROR(Evaluate());
  RETURN_IF_ERROR(Plan());
  if (workspace_floats_ > 4 * kMaxTensorElements) {
    return absl::InvalidArgumentError(absl::StrCat("C backend: the model needs ",
                                                   workspace_floats_ * 4 >> 20,
                                                   " MiB of workspace per call; at most 4 GiB"));
  }
  for (const Step& step : steps_) RETURN_IF_ERROR(EmitStep(step));
  // Outputs the graph computes at compile time (constants) are copied out.
  for (const ValueInfo& o : graph_.outputs) {
    if (IsConst(o.name)) {
      const auto it = const_names_.find(o.name);
      const std::string src = it != const_names_.end() ? it->second : Const(Value(o.name));
      absl::StrAppend(&body_, "  el_copy(", src, ", out", output_index_.at(o.name), ", ",
                      Value(o.name).size(), ");\n");
    }
  }
  result_.runtime_nodes = static_cast<int>(steps_.size());

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
