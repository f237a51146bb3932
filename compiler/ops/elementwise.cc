// Element-wise operators: the four broadcasting arithmetic operators and the activations.
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "compiler/ops/c_emit.h"
#include "compiler/ops/families.h"
#include "compiler/ops/kernel_support.h"

namespace edgeloop::compiler::ops {
namespace {

// ---- reference ------------------------------------------------------------------------------

absl::StatusOr<Tensor> Binary(const KernelContext& c, float (*op)(float, float)) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  RETURN_IF_ERROR(NeedFloat(c, c.in.size() > 1 ? c.in[1] : nullptr));
  const Tensor& a = *c.in[0];
  const Tensor& b = *c.in[1];
  ASSIGN_OR_RETURN(Shape shape, BroadcastShape(c, a.shape, b.shape));
  ASSIGN_OR_RETURN(Tensor out, FloatTensor(c, shape));
  const Shape sa = RowMajorStrides(a.shape), sb = RowMajorStrides(b.shape);
  Shape coords(shape.size(), 0);
  for (int64_t n = 0; n < out.size(); ++n) {
    out.f[n] = op(a.f[BroadcastIndex(coords, shape, a.shape, sa)],
                  b.f[BroadcastIndex(coords, shape, b.shape, sb)]);
    for (int k = static_cast<int>(shape.size()) - 1; k >= 0; --k) {
      if (++coords[k] < shape[k]) break;
      coords[k] = 0;
    }
  }
  return out;
}

template <typename F>
absl::StatusOr<std::vector<Tensor>> Unary(const KernelContext& c, F op) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  Tensor out = *c.in[0];
  for (float& v : out.f) v = op(v);
  return One(std::move(out));
}

// Clip's bounds: attributes before opset 11, optional inputs from 11 on.
void ClipBounds(const KernelContext& c, float* lo, float* hi) {
  *lo = -std::numeric_limits<float>::infinity();
  *hi = std::numeric_limits<float>::infinity();
  if (c.opset < 11) {
    *lo = c.node.Float("min", *lo);
    *hi = c.node.Float("max", *hi);
  } else {
    if (c.in.size() > 1 && c.in[1] != nullptr) *lo = c.in[1]->f.at(0);
    if (c.in.size() > 2 && c.in[2] != nullptr) *hi = c.in[2]->f.at(0);
  }
}

absl::StatusOr<std::vector<Tensor>> Clip(const KernelContext& c) {
  float lo, hi;
  ClipBounds(c, &lo, &hi);
  return Unary(c, [lo, hi](float v) { return std::min(std::max(v, lo), hi); });
}

// ---- C --------------------------------------------------------------------------------------

// el_<fn>_same / _scalar / _bcast by how the operands' shapes relate to the output's.
absl::Status EmitBinary(CEmitContext& e, absl::string_view fn) {
  const Tensor& out = e.Out();
  const Shape &sa = e.InShape(0), &sb = e.InShape(1);
  const std::string a = e.In(0), b = e.In(1), y = e.OutRef();
  if (sa == out.shape && sb == out.shape) {
    e.Emit(absl::StrCat("  el_", fn, "_same(", a, ", ", b, ", ", y, ", ", out.size(), ");\n"));
    return absl::OkStatus();
  }
  if (sa == out.shape && ElementCount(sb) == 1) {
    e.Emit(absl::StrCat("  el_", fn, "_scalar(", a, ", ", b, "[0], ", y, ", ", out.size(), ");\n"));
    return absl::OkStatus();
  }
  if (out.shape.size() > 8) return e.Unsupported("rank above 8");
  auto strides_for = [&](const Shape& s) {
    Shape st = RowMajorStrides(s), full(out.shape.size(), 0);
    for (size_t k = 0; k < s.size(); ++k) {
      full[out.shape.size() - s.size() + k] = s[k] == 1 ? 0 : st[k];
    }
    return full;
  };
  e.Emit(absl::StrCat("  el_", fn, "_bcast(", a, ", ", b, ", ", y, ", ", out.shape.size(), ", ",
                      e.Array("S", out.shape), ", ", e.Array("S", strides_for(sa)), ", ",
                      e.Array("S", strides_for(sb)), ");\n"));
  return absl::OkStatus();
}

// el_<fn>(x, y, count[, extra]).
absl::Status EmitUnary(CEmitContext& e, absl::string_view fn, absl::string_view extra = "") {
  e.Emit(absl::StrCat("  el_", fn, "(", e.In(0), ", ", e.OutRef(), ", ", e.Out().size(), extra,
                      ");\n"));
  return absl::OkStatus();
}

absl::Status EmitClip(CEmitContext& e) {
  const Node& n = e.node();
  float lo = -INFINITY, hi = INFINITY;
  if (e.opset() < 11) {
    lo = n.Float("min", lo);
    hi = n.Float("max", hi);
  }
  // Bounds given as inputs: folded when constant, read at run time otherwise.
  std::string bound[2] = {FloatLiteral(lo), FloatLiteral(hi)};
  for (size_t k = 1; e.opset() >= 11 && k < 3; ++k) {
    if (!e.HasInput(k)) continue;
    bound[k - 1] = e.IsConst(n.inputs[k]) ? FloatLiteral(e.Value(n.inputs[k]).f.at(0))
                                          : absl::StrCat(e.In(k), "[0]");
  }
  return EmitUnary(e, "clip", absl::StrCat(", ", bound[0], ", ", bound[1]));
}

}  // namespace

void AddElementwise(OperatorTable& table) {
  table["Add"] = {
      "Add",
      [](const KernelContext& c) { return One(Binary(c, [](float a, float b) { return a + b; })); },
      [](CEmitContext& e) { return EmitBinary(e, "add"); }};
  table["Sub"] = {
      "Sub",
      [](const KernelContext& c) { return One(Binary(c, [](float a, float b) { return a - b; })); },
      [](CEmitContext& e) { return EmitBinary(e, "sub"); }};
  table["Mul"] = {
      "Mul",
      [](const KernelContext& c) { return One(Binary(c, [](float a, float b) { return a * b; })); },
      [](CEmitContext& e) { return EmitBinary(e, "mul"); }};
  table["Div"] = {
      "Div",
      [](const KernelContext& c) { return One(Binary(c, [](float a, float b) { return a / b; })); },
      [](CEmitContext& e) { return EmitBinary(e, "div"); }};
  table["Relu"] = {
      "Relu",
      [](const KernelContext& c) { return Unary(c, [](float v) { return v > 0 ? v : 0.0f; }); },
      [](CEmitContext& e) { return EmitUnary(e, "relu"); }};
  table["LeakyRelu"] = {"LeakyRelu",
                        [](const KernelContext& c) {
                          const float alpha = c.node.Float("alpha", 0.01f);
                          return Unary(c, [alpha](float v) { return v >= 0 ? v : alpha * v; });
                        },
                        [](CEmitContext& e) {
                          return EmitUnary(
                              e, "leaky_relu",
                              absl::StrCat(", ", FloatLiteral(e.node().Float("alpha", 0.01f))));
                        }};
  table["Sigmoid"] = {"Sigmoid",
                      [](const KernelContext& c) {
                        return Unary(c, [](float v) { return 1.0f / (1.0f + std::exp(-v)); });
                      },
                      [](CEmitContext& e) { return EmitUnary(e, "sigmoid"); }};
  table["Tanh"] = {
      "Tanh", [](const KernelContext& c) { return Unary(c, [](float v) { return std::tanh(v); }); },
      [](CEmitContext& e) { return EmitUnary(e, "tanh"); }};
  table["Clip"] = {"Clip", Clip, EmitClip};
}

}  // namespace edgeloop::compiler::ops
