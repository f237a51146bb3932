// Normalisations and reductions: BatchNormalization (inference), Softmax, LogSoftmax,
// ReduceMean.
#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "compiler/ops/batch_norm.h"
#include "compiler/ops/c_emit.h"
#include "compiler/ops/families.h"
#include "compiler/ops/kernel_support.h"

namespace edgeloop::compiler::ops {

std::pair<Tensor, Tensor> BatchNormAffine(const Tensor& scale, const Tensor& bias,
                                          const Tensor& mean, const Tensor& var, float epsilon) {
  Tensor s, t;
  s.shape = t.shape = scale.shape;
  for (size_t c = 0; c < scale.f.size(); ++c) {
    const double sc = scale.f[c] / std::sqrt(static_cast<double>(var.f[c]) + epsilon);
    s.f.push_back(static_cast<float>(sc));
    t.f.push_back(static_cast<float>(bias.f[c] - mean.f[c] * sc));
  }
  return {std::move(s), std::move(t)};
}

namespace {

// ---- reference ------------------------------------------------------------------------------

// Softmax / LogSoftmax: before opset 13 the input is coerced to 2-D at `axis` (default 1);
// from 13 on the operation runs along `axis` (default -1).
absl::StatusOr<Tensor> Softmax(const KernelContext& c, bool log) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  const Tensor& x = *c.in[0];
  const size_t rank = x.shape.size();
  const bool legacy = c.opset < 13;
  const int64_t axis = Axis(c.node.Int("axis", legacy ? 1 : -1), rank);
  if (axis < 0 || axis >= static_cast<int64_t>(std::max<size_t>(rank, 1)))
    return Bad(c, "axis out of range");
  int64_t outer = 1, length = 1, inner = 1;
  for (size_t k = 0; k < rank; ++k) {
    if (static_cast<int64_t>(k) < axis) outer *= x.shape[k];
    if (legacy ? static_cast<int64_t>(k) >= axis : static_cast<int64_t>(k) == axis)
      length *= x.shape[k];
    if (!legacy && static_cast<int64_t>(k) > axis) inner *= x.shape[k];
  }
  ASSIGN_OR_RETURN(Tensor out, FloatTensor(c, x.shape));
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t l) { return (o * length + l) * inner + i; };
      float max = -std::numeric_limits<float>::infinity();
      for (int64_t l = 0; l < length; ++l) max = std::max(max, x.f[at(l)]);
      double sum = 0;
      for (int64_t l = 0; l < length; ++l) sum += std::exp(static_cast<double>(x.f[at(l)] - max));
      for (int64_t l = 0; l < length; ++l) {
        const double shifted = x.f[at(l)] - max;
        out.f[at(l)] = static_cast<float>(log ? shifted - std::log(sum) : std::exp(shifted) / sum);
      }
    }
  }
  return out;
}

absl::StatusOr<Tensor> BatchNormalization(const KernelContext& c) {
  if (c.node.Int("training_mode", 0) != 0 ||
      (c.node.outputs.size() > 1 && !c.node.outputs[1].empty())) {
    return Unsupported(c, "training mode");
  }
  for (int k = 0; k < 5; ++k)
    RETURN_IF_ERROR(NeedFloat(c, c.in.size() > static_cast<size_t>(k) ? c.in[k] : nullptr));
  const Tensor& x = *c.in[0];
  const float epsilon = c.node.Float("epsilon", 1e-5f);
  const int64_t channels = x.shape.size() > 1 ? x.shape[1] : 1;
  const int64_t plane =
      x.shape.size() > 2 ? ElementCount(Shape(x.shape.begin() + 2, x.shape.end())) : 1;
  ASSIGN_OR_RETURN(Tensor out, FloatTensor(c, x.shape));
  for (int64_t n = 0; n < x.shape[0]; ++n) {
    for (int64_t ch = 0; ch < channels; ++ch) {
      const double scale =
          c.in[1]->f[ch] / std::sqrt(static_cast<double>(c.in[4]->f[ch]) + epsilon);
      const double shift = c.in[2]->f[ch] - c.in[3]->f[ch] * scale;
      for (int64_t i = 0; i < plane; ++i) {
        const int64_t at = (n * channels + ch) * plane + i;
        out.f[at] = static_cast<float>(x.f[at] * scale + shift);
      }
    }
  }
  return out;
}

absl::StatusOr<Tensor> ReduceMean(const KernelContext& c) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  const Tensor& x = *c.in[0];
  const size_t rank = x.shape.size();
  std::vector<int64_t> axes = c.node.Ints("axes");
  if (c.opset >= 18 && c.in.size() > 1 && c.in[1] != nullptr) axes = IntsOf(*c.in[1]);
  const bool keep = c.node.Int("keepdims", 1) != 0;
  std::vector<bool> reduce(rank, axes.empty());
  for (int64_t a : axes) {
    a = Axis(a, rank);
    if (a < 0 || a >= static_cast<int64_t>(rank)) return Bad(c, "axis out of range");
    reduce[a] = true;
  }
  Shape kept_shape(rank);
  for (size_t k = 0; k < rank; ++k) kept_shape[k] = reduce[k] ? 1 : x.shape[k];
  ASSIGN_OR_RETURN(Tensor out, FloatTensor(c, kept_shape));
  std::vector<int64_t> counts(out.size(), 0);
  const Shape out_strides = RowMajorStrides(kept_shape);
  std::vector<double> sums(out.size(), 0);
  Shape coords(rank, 0);
  for (int64_t n = 0; n < x.size(); ++n) {
    int64_t dst = 0;
    for (size_t k = 0; k < rank; ++k) dst += (reduce[k] ? 0 : coords[k]) * out_strides[k];
    sums[dst] += x.f[n];
    ++counts[dst];
    for (int k = static_cast<int>(rank) - 1; k >= 0; --k) {
      if (++coords[k] < x.shape[k]) break;
      coords[k] = 0;
    }
  }
  for (int64_t n = 0; n < out.size(); ++n)
    out.f[n] = static_cast<float>(sums[n] / std::max<int64_t>(counts[n], 1));
  if (!keep) {
    Shape squeezed;
    for (size_t k = 0; k < rank; ++k) {
      if (!reduce[k]) squeezed.push_back(x.shape[k]);
    }
    out.shape = squeezed;
  }
  return out;
}

// ---- C --------------------------------------------------------------------------------------

absl::Status EmitBatchNormalization(CEmitContext& e) {
  const Node& n = e.node();
  const std::string y = e.OutRef();
  if (n.Int("training_mode", 0) != 0 || (n.outputs.size() > 1 && !n.outputs[1].empty())) {
    return e.Unsupported("training mode");
  }
  const Shape& xs = e.InShape(0);
  const int64_t channels = xs.size() > 1 ? xs[1] : 1;
  bool constant_params = true;
  for (int p = 1; p < 5; ++p) constant_params = constant_params && e.IsConst(n.inputs.at(p));
  if (!constant_params) {
    e.Emit(absl::StrCat("  el_batch_norm(", e.In(0), ", ", y, ", ", xs[0], ", ", channels, ", ",
                        ElementCount(xs) / (xs[0] * channels), ", ", e.In(1), ", ", e.In(2), ", ",
                        e.In(3), ", ", e.In(4), ", ", FloatLiteral(n.Float("epsilon", 1e-5f)),
                        ");\n"));
    return absl::OkStatus();
  }
  const auto [s, t] =
      BatchNormAffine(e.Value(n.inputs[1]), e.Value(n.inputs[2]), e.Value(n.inputs[3]),
                      e.Value(n.inputs[4]), n.Float("epsilon", 1e-5f));
  e.Emit(absl::StrCat("  el_channel_affine(", e.In(0), ", ", y, ", ", xs[0], ", ", channels, ", ",
                      ElementCount(xs) / (xs[0] * channels), ", ", e.Const(s), ", ", e.Const(t),
                      ");\n"));
  return absl::OkStatus();
}

absl::Status EmitSoftmax(CEmitContext& e) {
  const Node& n = e.node();
  const std::string y = e.OutRef();
  const Shape& xs = e.InShape(0);
  const bool legacy = e.opset() < 13;
  const int64_t axis = Axis(n.Int("axis", legacy ? 1 : -1), xs.size());
  int64_t outer = 1, len = 1, inner = 1;
  for (size_t k = 0; k < xs.size(); ++k) {
    if (static_cast<int64_t>(k) < axis) outer *= xs[k];
    if (legacy ? static_cast<int64_t>(k) >= axis : static_cast<int64_t>(k) == axis) len *= xs[k];
    if (!legacy && static_cast<int64_t>(k) > axis) inner *= xs[k];
  }
  e.Emit(absl::StrCat("  el_softmax(", e.In(0), ", ", y, ", ", outer, ", ", len, ", ", inner, ", ",
                      n.op == "LogSoftmax" ? 1 : 0, ");\n"));
  return absl::OkStatus();
}

absl::Status EmitReduceMean(CEmitContext& e) {
  const Node& n = e.node();
  const std::string y = e.OutRef();
  const Shape& xs = e.InShape(0);
  if (xs.size() > 8) return e.Unsupported("rank above 8");
  Shape axes = n.Ints("axes");
  if (e.opset() >= 18 && e.HasInput(1)) {
    if (!e.IsConst(n.inputs[1])) return e.Unsupported("axes computed at run time");
    axes = e.Value(n.inputs[1]).i;
  }
  std::vector<bool> reduce(xs.size(), axes.empty());
  for (int64_t a : axes) reduce[Axis(a, xs.size())] = true;
  Shape kept(xs.size());
  for (size_t k = 0; k < xs.size(); ++k) kept[k] = reduce[k] ? 1 : xs[k];
  Shape out_strides = RowMajorStrides(kept);
  for (size_t k = 0; k < xs.size(); ++k) {
    if (reduce[k]) out_strides[k] = 0;
  }
  e.Emit(absl::StrCat("  el_reduce_mean(", e.In(0), ", ", y, ", ", xs.size(), ", ",
                      e.Array("S", xs), ", ", e.Array("S", out_strides), ", ", e.Out().size(), ", ",
                      ElementCount(xs) / std::max<int64_t>(e.Out().size(), 1), ");\n"));
  return absl::OkStatus();
}

}  // namespace

void AddNormalization(OperatorTable& table) {
  table["BatchNormalization"] = {
      .name = "BatchNormalization",
      .reference = [](const KernelContext& c) { return One(BatchNormalization(c)); },
      .emit_c = EmitBatchNormalization};
  table["Softmax"] = {.name = "Softmax",
                      .reference = [](const KernelContext& c) { return One(Softmax(c, false)); },
                      .emit_c = EmitSoftmax};
  table["LogSoftmax"] = {.name = "LogSoftmax",
                         .reference = [](const KernelContext& c) { return One(Softmax(c, true)); },
                         .emit_c = EmitSoftmax};
  table["ReduceMean"] = {.name = "ReduceMean",
                         .reference = [](const KernelContext& c) { return One(ReduceMean(c)); },
                         .emit_c = EmitReduceMean};
}

}  // namespace edgeloop::compiler::ops
