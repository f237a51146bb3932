// Convolution and pooling over one or two spatial dimensions (the reference handles any
// number; the C backend 1-D and 2-D).
#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "compiler/ops/c_emit.h"
#include "compiler/ops/families.h"
#include "compiler/ops/kernel_support.h"
#include "compiler/window.h"

namespace edgeloop::compiler::ops {
namespace {

// ---- reference ------------------------------------------------------------------------------

absl::StatusOr<Tensor> Conv(const KernelContext& c) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  RETURN_IF_ERROR(NeedFloat(c, c.in.size() > 1 ? c.in[1] : nullptr));
  const Tensor& x = *c.in[0];
  const Tensor& weights = *c.in[1];
  if (x.shape.size() < 3 || weights.shape.size() != x.shape.size())
    return Bad(c, "X and W ranks differ or < 3");
  const int64_t batch = x.shape[0], channels = x.shape[1], maps = weights.shape[0];
  const int64_t group = c.node.Int("group", 1);
  if (group <= 0 || channels % group != 0 || maps % group != 0 ||
      weights.shape[1] != channels / group) {
    return Bad(c, "channels do not match groups");
  }
  const Shape in_spatial(x.shape.begin() + 2, x.shape.end());
  Shape kernel = c.node.Ints("kernel_shape");
  if (kernel.empty()) kernel.assign(weights.shape.begin() + 2, weights.shape.end());
  ASSIGN_OR_RETURN(Window w, PlanWindow(c.node, in_spatial, kernel, false));
  const Tensor* bias = c.in.size() > 2 ? c.in[2] : nullptr;
  Shape out_shape = {batch, maps};
  out_shape.insert(out_shape.end(), w.out.begin(), w.out.end());
  ASSIGN_OR_RETURN(Tensor out, FloatTensor(c, out_shape));
  const int64_t in_plane = ElementCount(in_spatial), out_plane = ElementCount(w.out),
                taps = ElementCount(w.kernel);
  const int64_t per_group_in = channels / group, per_group_out = maps / group;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t m = 0; m < maps; ++m) {
      const int64_t g = m / per_group_out;
      int64_t o = 0;
      ForEachPosition(w.out, [&](const Shape& pos) {
        double acc = bias != nullptr ? bias->f[m] : 0.0;
        for (int64_t ci = 0; ci < per_group_in; ++ci) {
          const float* plane = x.f.data() + (b * channels + g * per_group_in + ci) * in_plane;
          const float* kern = weights.f.data() + (m * per_group_in + ci) * taps;
          ForEachTap(w, in_spatial, pos, [&](int64_t at, int64_t t) {
            if (at >= 0) acc += static_cast<double>(plane[at]) * kern[t];
          });
        }
        out.f[(b * maps + m) * out_plane + o++] = static_cast<float>(acc);
      });
    }
  }
  return out;
}

absl::StatusOr<Tensor> Pool(const KernelContext& c, bool max) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  if (c.node.outputs.size() > 1 && !c.node.outputs[1].empty())
    return Unsupported(c, "the Indices output");
  if (c.node.Int("storage_order", 0) != 0) return Unsupported(c, "storage_order");
  const Tensor& x = *c.in[0];
  if (x.shape.size() < 3) return Bad(c, "input rank < 3");
  const Shape in_spatial(x.shape.begin() + 2, x.shape.end());
  ASSIGN_OR_RETURN(Window w, PlanWindow(c.node, in_spatial, c.node.Ints("kernel_shape"),
                                        c.node.Int("ceil_mode", 0) != 0));
  const bool count_pad = c.node.Int("count_include_pad", 0) != 0;
  Shape out_shape = {x.shape[0], x.shape[1]};
  out_shape.insert(out_shape.end(), w.out.begin(), w.out.end());
  ASSIGN_OR_RETURN(Tensor out, FloatTensor(c, out_shape));
  const int64_t in_plane = ElementCount(in_spatial), out_plane = ElementCount(w.out);
  for (int64_t plane = 0; plane < x.shape[0] * x.shape[1]; ++plane) {
    const float* src = x.f.data() + plane * in_plane;
    int64_t o = 0;
    ForEachPosition(w.out, [&](const Shape& pos) {
      double acc = max ? -std::numeric_limits<double>::infinity() : 0.0;
      int64_t count = 0;
      // With count_include_pad, explicit padding counts but the extra ceil_mode overhang does not.
      int64_t padded_taps = 0;
      ForEachTap(w, in_spatial, pos, [&](int64_t at, int64_t) {
        if (at >= 0) {
          acc = max ? std::max(acc, static_cast<double>(src[at])) : acc + src[at];
          ++count;
        }
      });
      if (!max && count_pad) {
        padded_taps = 1;
        for (size_t k = 0; k < in_spatial.size(); ++k) {
          const int64_t start = pos[k] * w.strides[k] - w.pad_begin[k];
          const int64_t end = std::min(start + (w.kernel[k] - 1) * w.dilations[k] + 1,
                                       in_spatial[k] + w.pad_end[k]);
          padded_taps *= (end - start + w.dilations[k] - 1) / w.dilations[k];
        }
      }
      out.f[plane * out_plane + o++] = static_cast<float>(
          max ? acc
              : acc / static_cast<double>(count_pad ? padded_taps : std::max<int64_t>(count, 1)));
    });
  }
  return out;
}

absl::StatusOr<Tensor> GlobalAveragePool(const KernelContext& c) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  const Tensor& x = *c.in[0];
  if (x.shape.size() < 3) return Bad(c, "input rank < 3");
  Shape out_shape = {x.shape[0], x.shape[1]};
  out_shape.resize(x.shape.size(), 1);
  ASSIGN_OR_RETURN(Tensor out, FloatTensor(c, out_shape));
  const int64_t plane = ElementCount(Shape(x.shape.begin() + 2, x.shape.end()));
  for (int64_t p = 0; p < x.shape[0] * x.shape[1]; ++p) {
    double sum = 0;
    for (int64_t i = 0; i < plane; ++i) sum += x.f[p * plane + i];
    out.f[p] = static_cast<float>(sum / static_cast<double>(plane));
  }
  return out;
}

// ---- C --------------------------------------------------------------------------------------

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

absl::StatusOr<ConvShape> ConvShapeOf(const CEmitContext& e) {
  const Node& n = e.node();
  const Shape& xs = e.InShape(0);
  const Shape& ws = e.InShape(1);
  if (xs.size() != 3 && xs.size() != 4) return e.Unsupported("only 1-D and 2-D convolutions");
  const Shape in_spatial(xs.begin() + 2, xs.end());
  Shape kernel = n.Ints("kernel_shape");
  if (kernel.empty()) kernel.assign(ws.begin() + 2, ws.end());
  ASSIGN_OR_RETURN(Window w, PlanWindow(n, in_spatial, kernel, false));
  // A 1-D convolution is a 2-D one with H = 1.
  const bool one_d = xs.size() == 3;
  auto at = [&](const Shape& v, int k, int64_t one) {
    return one_d ? (k == 0 ? one : v[0]) : v[k];
  };
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
  c.gemm = e.IsConst(n.inputs[1]) && !(c.cg() == 1 && c.mg() == 1);
  const bool pointwise = c.KH == 1 && c.KW == 1 && c.sh == 1 && c.sw == 1 && c.ph == 0 &&
                         c.pw == 0 && c.OH == c.H && c.OW == c.W;
  c.im2col = c.gemm && !pointwise;
  return c;
}

absl::StatusOr<int64_t> ConvScratch(const CEmitContext& e) {
  ASSIGN_OR_RETURN(const ConvShape c, ConvShapeOf(e));
  return c.scratch_floats();
}

absl::Status EmitConv(CEmitContext& e) {
  const Node& n = e.node();
  const std::string y = e.OutRef();
  ASSIGN_OR_RETURN(const ConvShape c, ConvShapeOf(e));
  const Tensor* const weights = e.IsConst(n.inputs[1]) ? &e.Value(n.inputs[1]) : nullptr;
  const bool has_bias = n.inputs.size() > 2 && !n.inputs[2].empty();
  std::string bias_ref = has_bias ? e.In(2) : "0";
  const std::string act =
      absl::StrCat(static_cast<int>(n.activation.kind), ", ", FloatLiteral(n.activation.lo), ", ",
                   FloatLiteral(n.activation.hi));
  if (!c.gemm) {
    e.Emit(absl::StrCat("  el_conv2d(", e.In(0), ", ", weights ? e.Const(*weights) : e.In(1), ", ",
                        bias_ref, ", ", y, ", ", c.batch, ", ", c.C, ", ", c.H, ", ", c.W, ", ",
                        c.M, ", ", c.OH, ", ", c.OW, ", ", c.KH, ", ", c.KW, ", ", c.group, ", ",
                        c.sh, ", ", c.sw, ", ", c.dh, ", ", c.dw, ", ", c.ph, ", ", c.pw, ", ", act,
                        ");\n"));
    return absl::OkStatus();
  }
  // Per image and group: Y_g (mg x OH*OW) = filters_g (mg x K) * columns (K x OH*OW).
  const std::string filters = e.PackRows(*weights, c.group, c.mg(), c.K());
  const std::string image =
      absl::StrCat(e.In(0), " + (b * ", c.C, " + g * ", c.cg(), ") * ", c.H * c.W);
  std::string columns = image;
  e.Emit(absl::StrCat("  for (i64 b = 0; b < ", c.batch, "; ++b) {\n    for (i64 g = 0; g < ",
                      c.group, "; ++g) {\n"));
  if (c.im2col) {
    columns = e.Scratch();
    e.Emit(absl::StrCat("      el_im2col(", image, ", ", columns, ", ", c.cg(), ", ", c.H, ", ",
                        c.W, ", ", c.OH, ", ", c.OW, ", ", c.KH, ", ", c.KW, ", ", c.sh, ", ", c.sw,
                        ", ", c.dh, ", ", c.dw, ", ", c.ph, ", ", c.pw, ");\n"));
  }
  e.Emit(absl::StrCat("      el_gemm_pa(", filters, " + g * ", c.mg() * c.K(), ", ", columns, ", ",
                      bias_ref == "0" ? "0" : absl::StrCat(bias_ref, " + g * ", c.mg()), ", ", y,
                      " + (b * ", c.M, " + g * ", c.mg(), ") * ", c.OH * c.OW, ", ", c.mg(), ", ",
                      c.OH * c.OW, ", ", c.K(), ", ", act, ");\n    }\n  }\n"));
  return absl::OkStatus();
}

absl::Status EmitPool(CEmitContext& e) {
  const Node& n = e.node();
  const std::string y = e.OutRef();
  if (n.outputs.size() > 1 && !n.outputs[1].empty()) return e.Unsupported("the Indices output");
  if (n.Int("storage_order", 0) != 0) return e.Unsupported("storage_order");
  const Shape& xs = e.InShape(0);
  if (xs.size() != 3 && xs.size() != 4) return e.Unsupported("only 1-D and 2-D pooling");
  const Shape in_spatial(xs.begin() + 2, xs.end());
  ASSIGN_OR_RETURN(Window w,
                   PlanWindow(n, in_spatial, n.Ints("kernel_shape"), n.Int("ceil_mode", 0) != 0));
  const bool one_d = xs.size() == 3;
  auto v2 = [&](const Shape& v, int k2d, int64_t one) {
    return one_d ? (k2d == 0 ? one : v[0]) : v[k2d];
  };
  e.Emit(absl::StrCat(
      "  el_pool2d(", e.In(0), ", ", y, ", ", xs[0] * xs[1], ", ", v2(in_spatial, 0, 1), ", ",
      v2(in_spatial, 1, 1), ", ", v2(w.out, 0, 1), ", ", v2(w.out, 1, 1), ", ", v2(w.kernel, 0, 1),
      ", ", v2(w.kernel, 1, 1), ", ", v2(w.strides, 0, 1), ", ", v2(w.strides, 1, 1), ", ",
      v2(w.dilations, 0, 1), ", ", v2(w.dilations, 1, 1), ", ", v2(w.pad_begin, 0, 0), ", ",
      v2(w.pad_begin, 1, 0), ", ", v2(w.pad_end, 0, 0), ", ", v2(w.pad_end, 1, 0), ", ",
      n.op == "MaxPool" ? 1 : 0, ", ", n.Int("count_include_pad", 0) != 0 ? 1 : 0, ");\n"));
  return absl::OkStatus();
}

absl::Status EmitGlobalAveragePool(CEmitContext& e) {
  const std::string y = e.OutRef();
  const Shape& xs = e.InShape(0);
  e.Emit(absl::StrCat("  el_global_avg(", e.In(0), ", ", y, ", ", xs[0] * xs[1], ", ",
                      ElementCount(xs) / (xs[0] * xs[1]), ");\n"));
  return absl::OkStatus();
}

}  // namespace

void AddConvolution(OperatorTable& table) {
  table["Conv"] = {.name = "Conv",
                   .reference = [](const KernelContext& c) { return One(Conv(c)); },
                   .emit_c = EmitConv,
                   .c_scratch = ConvScratch};
  table["MaxPool"] = {.name = "MaxPool",
                      .reference = [](const KernelContext& c) { return One(Pool(c, true)); },
                      .emit_c = EmitPool};
  table["AveragePool"] = {.name = "AveragePool",
                          .reference = [](const KernelContext& c) { return One(Pool(c, false)); },
                          .emit_c = EmitPool};
  table["GlobalAveragePool"] = {
      .name = "GlobalAveragePool",
      .reference = [](const KernelContext& c) { return One(GlobalAveragePool(c)); },
      .emit_c = EmitGlobalAveragePool};
}

}  // namespace edgeloop::compiler::ops
