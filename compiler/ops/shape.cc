// Shape and data movement: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Pad, and
// the pass-throughs Identity, Dropout (inference) and Constant.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "compiler/ops/c_emit.h"
#include "compiler/ops/families.h"
#include "compiler/ops/kernel_support.h"

namespace edgeloop::compiler::ops {
namespace {

// ---- reference ------------------------------------------------------------------------------

absl::StatusOr<Tensor> Reshaped(const KernelContext& c, Shape shape) {
  absl::StatusOr<int64_t> n = CheckedElementCount(shape);
  if (!n.ok()) return Bad(c, n.status().message());
  Tensor out = *c.in[0];
  if (*n != out.size()) return Bad(c, "element count changes");
  out.shape = std::move(shape);
  return out;
}

absl::StatusOr<Tensor> Reshape(const KernelContext& c) {
  if (c.in.size() < 2 || c.in[1] == nullptr) return Bad(c, "missing shape");
  Shape target = IntsOf(*c.in[1]);
  RETURN_IF_ERROR(CheckSizes(c, target, "target dimension"));
  const Shape& in = c.in[0]->shape;
  const bool allow_zero = c.node.Int("allowzero", 0) != 0;
  int64_t known = 1, infer = -1;
  for (size_t k = 0; k < target.size(); ++k) {
    if (target[k] == 0 && !allow_zero) {
      if (k >= in.size()) return Bad(c, "0 refers past the input rank");
      target[k] = in[k];
    }
    if (target[k] == -1) {
      if (infer >= 0) return Bad(c, "more than one -1");
      infer = static_cast<int64_t>(k);
    } else if (target[k] < 0) {
      return Bad(c, "negative dimension");
    } else if (target[k] > 0 && known > kMaxTensorElements / target[k]) {
      return Bad(c, "the target shape has too many elements");
    } else {
      known *= target[k];
    }
  }
  if (infer >= 0) {
    if (known == 0 || c.in[0]->size() % known != 0) return Bad(c, "cannot infer -1");
    target[infer] = c.in[0]->size() / known;
  }
  return Reshaped(c, target);
}

absl::StatusOr<Tensor> Flatten(const KernelContext& c) {
  const Shape& in = c.in[0]->shape;
  const int64_t axis = Axis(c.node.Int("axis", 1), in.size());
  if (axis < 0 || axis > static_cast<int64_t>(in.size())) return Bad(c, "axis out of range");
  int64_t outer = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= in[k];
  return Reshaped(c, {outer, outer == 0 ? 0 : c.in[0]->size() / outer});
}

absl::StatusOr<std::vector<int64_t>> AxesOf(const KernelContext& c, size_t input_index) {
  if (c.opset >= 13 && c.in.size() > input_index) {
    if (c.in[input_index] == nullptr) return std::vector<int64_t>{};
    return IntsOf(*c.in[input_index]);
  }
  return c.node.Ints("axes");
}

absl::StatusOr<Tensor> Squeeze(const KernelContext& c) {
  ASSIGN_OR_RETURN(std::vector<int64_t> axes, AxesOf(c, 1));
  const Shape& in = c.in[0]->shape;
  std::vector<bool> drop(in.size(), false);
  if (axes.empty()) {
    for (size_t k = 0; k < in.size(); ++k) drop[k] = in[k] == 1;
  }
  for (int64_t a : axes) {
    a = Axis(a, in.size());
    if (a < 0 || a >= static_cast<int64_t>(in.size()) || in[a] != 1)
      return Bad(c, "cannot squeeze that axis");
    drop[a] = true;
  }
  Shape out;
  for (size_t k = 0; k < in.size(); ++k) {
    if (!drop[k]) out.push_back(in[k]);
  }
  return Reshaped(c, out);
}

absl::StatusOr<Tensor> Unsqueeze(const KernelContext& c) {
  ASSIGN_OR_RETURN(std::vector<int64_t> axes, AxesOf(c, 1));
  const Shape& in = c.in[0]->shape;
  const size_t rank = in.size() + axes.size();
  std::vector<bool> inserted(rank, false);
  for (int64_t a : axes) {
    a = Axis(a, rank);
    if (a < 0 || a >= static_cast<int64_t>(rank) || inserted[a]) return Bad(c, "bad axes");
    inserted[a] = true;
  }
  Shape out;
  size_t next = 0;
  for (size_t k = 0; k < rank; ++k) out.push_back(inserted[k] ? 1 : in[next++]);
  return Reshaped(c, out);
}

absl::StatusOr<Tensor> Transpose(const KernelContext& c) {
  const Tensor& x = *c.in[0];
  const size_t rank = x.shape.size();
  Shape perm = c.node.Ints("perm");
  if (perm.empty()) {
    for (size_t k = 0; k < rank; ++k) perm.push_back(static_cast<int64_t>(rank - 1 - k));
  }
  if (perm.size() != rank) return Bad(c, "perm does not match the rank");
  Shape out_shape(rank);
  for (size_t k = 0; k < rank; ++k) out_shape[k] = x.shape.at(perm[k]);
  Tensor out = x;
  out.shape = out_shape;
  const Shape in_strides = RowMajorStrides(x.shape);
  Shape coords(rank, 0);
  for (int64_t n = 0; n < x.size(); ++n) {
    int64_t src = 0;
    for (size_t k = 0; k < rank; ++k) src += coords[k] * in_strides[perm[k]];
    if (x.dtype == DType::kFloat32) {
      out.f[n] = x.f[src];
    } else {
      out.i[n] = x.i[src];
    }
    for (int k = static_cast<int>(rank) - 1; k >= 0; --k) {
      if (++coords[k] < out_shape[k]) break;
      coords[k] = 0;
    }
  }
  return out;
}

absl::StatusOr<Tensor> Concat(const KernelContext& c) {
  const size_t rank = c.in[0]->shape.size();
  const int64_t axis = Axis(c.node.Int("axis", 0), rank);
  if (axis < 0 || axis >= static_cast<int64_t>(rank)) return Bad(c, "axis out of range");
  Shape out_shape = c.in[0]->shape;
  out_shape[axis] = 0;
  for (const Tensor* t : c.in) {
    if (t == nullptr || t->shape.size() != rank || t->dtype != c.in[0]->dtype)
      return Bad(c, "inputs differ");
    for (size_t k = 0; k < rank; ++k) {
      if (static_cast<int64_t>(k) != axis && t->shape[k] != c.in[0]->shape[k])
        return Bad(c, "shapes differ");
    }
    out_shape[axis] += t->shape[axis];  // each input holds at most kMaxTensorElements
  }
  absl::StatusOr<int64_t> elements = CheckedElementCount(out_shape);
  if (!elements.ok()) return Bad(c, elements.status().message());
  Tensor out;
  out.dtype = c.in[0]->dtype;
  out.shape = out_shape;
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= out_shape[k];
  for (size_t k = axis + 1; k < rank; ++k) inner *= out_shape[k];
  for (int64_t o = 0; o < outer; ++o) {
    for (const Tensor* t : c.in) {
      const int64_t chunk = t->shape[axis] * inner;
      if (out.dtype == DType::kFloat32) {
        out.f.insert(out.f.end(), t->f.begin() + o * chunk, t->f.begin() + (o + 1) * chunk);
      } else {
        out.i.insert(out.i.end(), t->i.begin() + o * chunk, t->i.begin() + (o + 1) * chunk);
      }
    }
  }
  return out;
}

absl::StatusOr<Tensor> Pad(const KernelContext& c) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  const Tensor& x = *c.in[0];
  const size_t rank = x.shape.size();
  Shape pads;
  float value = 0;
  if (c.opset < 11) {
    pads = c.node.Ints("pads");
    value = c.node.Float("value", 0);
  } else {
    if (c.in.size() < 2 || c.in[1] == nullptr) return Bad(c, "missing pads");
    pads = IntsOf(*c.in[1]);
    if (c.in.size() > 2 && c.in[2] != nullptr && !c.in[2]->f.empty()) value = c.in[2]->f[0];
    if (c.in.size() > 3 && c.in[3] != nullptr) return Unsupported(c, "the axes input");
  }
  if (pads.size() != 2 * rank) return Bad(c, "pads do not match the rank");
  RETURN_IF_ERROR(CheckSizes(c, pads, "pad"));
  const std::string mode = c.node.String("mode", "constant");
  Shape out_shape(rank);
  for (size_t k = 0; k < rank; ++k) {
    out_shape[k] = x.shape[k] + pads[k] + pads[k + rank];
    if (out_shape[k] < 0) return Bad(c, "negative output size");
  }
  ASSIGN_OR_RETURN(Tensor out, FloatTensor(c, out_shape));
  const Shape in_strides = RowMajorStrides(x.shape);
  Shape coords(rank, 0);
  for (int64_t n = 0; n < out.size(); ++n) {
    int64_t src = 0;
    bool outside = false;
    for (size_t k = 0; k < rank; ++k) {
      int64_t p = coords[k] - pads[k];
      const int64_t size = x.shape[k];
      if (p < 0 || p >= size) {
        if (mode == "constant") {
          outside = true;
        } else if (mode == "edge") {
          p = std::clamp<int64_t>(p, 0, size - 1);
        } else if (mode == "reflect") {
          if (size == 1) {
            p = 0;
          } else {
            const int64_t period = 2 * (size - 1);
            p = ((p % period) + period) % period;
            if (p >= size) p = period - p;
          }
        } else {
          return Bad(c, absl::StrCat("unknown mode ", mode));
        }
      }
      src += p * in_strides[k];
    }
    out.f[n] = outside ? value : x.f[src];
    for (int k = static_cast<int>(rank) - 1; k >= 0; --k) {
      if (++coords[k] < out_shape[k]) break;
      coords[k] = 0;
    }
  }
  return out;
}

absl::StatusOr<Tensor> Constant(const KernelContext& c) {
  for (const auto& [key, value] : c.node.attributes) {
    if (const Tensor* t = std::get_if<Tensor>(&value)) return *t;
    Tensor out;
    if (key == "value_float") {
      out.f = {std::get<float>(value)};
    } else if (key == "value_floats") {
      out.f = std::get<std::vector<float>>(value);
      out.shape = {static_cast<int64_t>(out.f.size())};
    } else if (key == "value_int") {
      out.dtype = DType::kInt64;
      out.i = {std::get<int64_t>(value)};
    } else if (key == "value_ints") {
      out.dtype = DType::kInt64;
      out.i = std::get<std::vector<int64_t>>(value);
      out.shape = {static_cast<int64_t>(out.i.size())};
    } else {
      continue;
    }
    return out;
  }
  return Unsupported(c, "no supported value attribute");
}

absl::StatusOr<std::vector<Tensor>> Dropout(const KernelContext& c) {
  if (c.in.size() > 2 && c.in[2] != nullptr && !c.in[2]->i.empty() && c.in[2]->i[0] != 0) {
    return Unsupported(c, "training mode (random dropout)");
  }
  // Inference: the input passes through; the optional mask is all true.
  std::vector<Tensor> out = {*c.in[0]};
  Tensor mask;
  mask.dtype = DType::kBool;
  mask.shape = c.in[0]->shape;
  mask.i.assign(c.in[0]->size(), 1);
  out.push_back(std::move(mask));
  return out;
}

// ---- C --------------------------------------------------------------------------------------

absl::Status EmitTranspose(CEmitContext& e) {
  const Node& n = e.node();
  const std::string y = e.OutRef();
  const Tensor& out = e.Out();
  const Shape& xs = e.InShape(0);
  if (xs.size() > 8) return e.Unsupported("rank above 8");
  Shape perm = n.Ints("perm");
  if (perm.empty()) {
    for (size_t k = 0; k < xs.size(); ++k) perm.push_back(static_cast<int64_t>(xs.size() - 1 - k));
  }
  const Shape in_strides = RowMajorStrides(xs);
  Shape permuted;
  for (int64_t p : perm) permuted.push_back(in_strides[p]);
  e.Emit(absl::StrCat("  el_transpose(", e.In(0), ", ", y, ", ", xs.size(), ", ",
                      e.Array("S", out.shape), ", ", e.Array("S", permuted), ");\n"));
  return absl::OkStatus();
}

absl::Status EmitConcat(CEmitContext& e) {
  const Node& n = e.node();
  const std::string y = e.OutRef();
  const Tensor& out = e.Out();
  const int64_t axis = Axis(n.Int("axis", 0), out.shape.size());
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= out.shape[k];
  for (size_t k = axis + 1; k < out.shape.size(); ++k) inner *= out.shape[k];
  int64_t offset = 0;
  for (size_t k = 0; k < n.inputs.size(); ++k) {
    const int64_t chunk = e.InShape(k)[axis] * inner;
    e.Emit(absl::StrCat("  el_concat_part(", e.In(k), ", ", y, ", ", outer, ", ", chunk, ", ",
                        out.shape[axis] * inner, ", ", offset, ");\n"));
    offset += chunk;
  }
  return absl::OkStatus();
}

absl::Status EmitPad(CEmitContext& e) {
  const Node& n = e.node();
  const std::string y = e.OutRef();
  const Tensor& out = e.Out();
  const Shape& xs = e.InShape(0);
  if (xs.size() > 8) return e.Unsupported("rank above 8");
  Shape pads;
  float value = 0;
  if (e.opset() < 11) {
    pads = n.Ints("pads");
    value = n.Float("value", 0);
  } else {
    if (!e.IsConst(n.inputs.at(1))) return e.Unsupported("pads computed at run time");
    pads = e.Value(n.inputs[1]).i;
    if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
      if (!e.IsConst(n.inputs[2])) return e.Unsupported("a pad value computed at run time");
      value = e.Value(n.inputs[2]).f.at(0);
    }
    if (n.inputs.size() > 3 && !n.inputs[3].empty()) return e.Unsupported("the axes input");
  }
  const std::string mode = n.String("mode", "constant");
  const int mode_id = mode == "edge" ? 1 : mode == "reflect" ? 2 : 0;
  e.Emit(absl::StrCat("  el_pad(", e.In(0), ", ", y, ", ", xs.size(), ", ", e.Array("S", xs), ", ",
                      e.Array("S", out.shape), ", ",
                      e.Array("S", Shape(pads.begin(), pads.begin() + xs.size())), ", ", mode_id,
                      ", ", FloatLiteral(value), ");\n"));
  return absl::OkStatus();
}

// The data is unchanged; only the shape (which the module does not carry) differs.
absl::Status EmitCopy(CEmitContext& e) {
  const Node& n = e.node();
  if (n.op == "Dropout" && n.outputs.size() > 1 && !n.outputs[1].empty())
    return e.Unsupported("the mask output");
  e.Emit(absl::StrCat("  el_copy(", e.In(0), ", ", e.OutRef(), ", ", e.Out().size(), ");\n"));
  return absl::OkStatus();
}

}  // namespace

void AddShape(OperatorTable& table) {
  table["Reshape"] = {.name = "Reshape",
                      .reference = [](const KernelContext& c) { return One(Reshape(c)); },
                      .emit_c = EmitCopy};
  table["Flatten"] = {.name = "Flatten",
                      .reference = [](const KernelContext& c) { return One(Flatten(c)); },
                      .emit_c = EmitCopy};
  table["Squeeze"] = {.name = "Squeeze",
                      .reference = [](const KernelContext& c) { return One(Squeeze(c)); },
                      .emit_c = EmitCopy};
  table["Unsqueeze"] = {.name = "Unsqueeze",
                        .reference = [](const KernelContext& c) { return One(Unsqueeze(c)); },
                        .emit_c = EmitCopy};
  table["Identity"] = {.name = "Identity",
                       .reference = [](const KernelContext& c) { return One(*c.in[0]); },
                       .emit_c = EmitCopy};
  table["Dropout"] = {.name = "Dropout", .reference = Dropout, .emit_c = EmitCopy};
  table["Transpose"] = {.name = "Transpose",
                        .reference = [](const KernelContext& c) { return One(Transpose(c)); },
                        .emit_c = EmitTranspose};
  table["Concat"] = {.name = "Concat",
                     .reference = [](const KernelContext& c) { return One(Concat(c)); },
                     .emit_c = EmitConcat};
  table["Pad"] = {.name = "Pad",
                  .reference = [](const KernelContext& c) { return One(Pad(c)); },
                  .emit_c = EmitPad};
  // Always folded at compile time, so it never reaches the C backend.
  table["Constant"] = {.name = "Constant",
                       .reference = [](const KernelContext& c) { return One(Constant(c)); },
                       .min_inputs = 0};
}

}  // namespace edgeloop::compiler::ops
