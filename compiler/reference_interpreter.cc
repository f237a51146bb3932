#include "compiler/reference_interpreter.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "compiler/window.h"

namespace edgeloop::compiler {
namespace {

using Shape = std::vector<int64_t>;
using Inputs = std::vector<const Tensor*>;  // nullptr for an omitted optional input

struct Context {
  const Node& node;
  int64_t opset;
  Inputs in;
};

absl::Status Bad(const Context& c, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(c.node.op, " '", c.node.name, "': ", why));
}
absl::Status Unsupported(const Context& c, absl::string_view why) {
  return absl::UnimplementedError(absl::StrCat(c.node.op, " '", c.node.name, "': ", why));
}

int64_t Elements(const Shape& s) { return ElementCount(s); }

Shape Strides(const Shape& s) { return RowMajorStrides(s); }

int64_t Axis(int64_t axis, size_t rank) {
  return axis < 0 ? axis + static_cast<int64_t>(rank) : axis;
}

// A zeroed float tensor; the one place the interpreter allocates an output, so a shape a
// hostile model computes (huge pads, windows, broadcasts, products) is refused here.
absl::StatusOr<Tensor> Float(const Context& c, Shape shape) {
  absl::StatusOr<int64_t> n = CheckedElementCount(shape);
  if (!n.ok()) return Bad(c, n.status().message());
  Tensor t;
  t.shape = std::move(shape);
  t.f.assign(*n, 0.0f);
  return t;
}

// Attribute and operand values that feed size arithmetic (pads, axes' sizes, reshape
// targets) are held to the tensor bound first, so sums and products of a few stay in int64.
absl::Status CheckSizes(const Context& c, const Shape& values, absl::string_view what) {
  for (const int64_t v : values) {
    if (v > kMaxTensorElements || v < -kMaxTensorElements) {
      return Bad(c, absl::StrCat(what, " ", v, " is out of range"));
    }
  }
  return absl::OkStatus();
}

absl::Status NeedFloat(const Context& c, const Tensor* t) {
  if (t == nullptr) return Bad(c, "missing input");
  if (t->dtype != DType::kFloat32) return Unsupported(c, "only float32 data is supported");
  return absl::OkStatus();
}

std::vector<int64_t> IntsOf(const Tensor& t) {
  if (t.dtype == DType::kFloat32) return std::vector<int64_t>(t.f.begin(), t.f.end());
  return t.i;
}

// ---- element-wise ---------------------------------------------------------------------------

absl::StatusOr<Shape> BroadcastShape(const Context& c, const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t k = 0; k < out.size(); ++k) {
    int64_t da = k < out.size() - a.size() ? 1 : a[k - (out.size() - a.size())];
    int64_t db = k < out.size() - b.size() ? 1 : b[k - (out.size() - b.size())];
    if (da != db && da != 1 && db != 1) return Bad(c, "shapes do not broadcast");
    out[k] = da == 1 ? db : da;
  }
  return out;
}

// Index into `t` (broadcast to `out`) for the flat output position given as coordinates.
int64_t BroadcastIndex(const Shape& coords, const Shape& out, const Shape& shape,
                       const Shape& strides) {
  int64_t index = 0;
  const size_t offset = out.size() - shape.size();
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] != 1) index += coords[k + offset] * strides[k];
  }
  return index;
}

absl::StatusOr<Tensor> Binary(const Context& c, const std::function<float(float, float)>& op) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  RETURN_IF_ERROR(NeedFloat(c, c.in[1]));
  const Tensor& a = *c.in[0];
  const Tensor& b = *c.in[1];
  ASSIGN_OR_RETURN(Shape shape, BroadcastShape(c, a.shape, b.shape));
  ASSIGN_OR_RETURN(Tensor out, Float(c, shape));
  const Shape sa = Strides(a.shape), sb = Strides(b.shape);
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

absl::StatusOr<Tensor> Unary(const Context& c, const std::function<float(float)>& op) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  Tensor out = *c.in[0];
  for (float& v : out.f) v = op(v);
  return out;
}

absl::StatusOr<Tensor> Clip(const Context& c) {
  float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
  if (c.opset < 11) {
    lo = c.node.Float("min", lo);
    hi = c.node.Float("max", hi);
  } else {
    if (c.in.size() > 1 && c.in[1] != nullptr) lo = c.in[1]->f.at(0);
    if (c.in.size() > 2 && c.in[2] != nullptr) hi = c.in[2]->f.at(0);
  }
  return Unary(c, [lo, hi](float v) { return std::min(std::max(v, lo), hi); });
}

// Softmax / LogSoftmax: before opset 13 the input is coerced to 2-D at `axis` (default 1);
// from 13 on the operation runs along `axis` (default -1).
absl::StatusOr<Tensor> Softmax(const Context& c, bool log) {
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
  ASSIGN_OR_RETURN(Tensor out, Float(c, x.shape));
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

// ---- linear algebra -------------------------------------------------------------------------

absl::StatusOr<Tensor> Gemm(const Context& c) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  RETURN_IF_ERROR(NeedFloat(c, c.in[1]));
  const Tensor& a = *c.in[0];
  const Tensor& b = *c.in[1];
  if (a.shape.size() != 2 || b.shape.size() != 2) return Bad(c, "A and B must be 2-D");
  const bool ta = c.node.Int("transA", 0) != 0, tb = c.node.Int("transB", 0) != 0;
  const float alpha = c.node.Float("alpha", 1.0f), beta = c.node.Float("beta", 1.0f);
  const int64_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const int64_t kb = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  if (k != kb) return Bad(c, "inner dimensions differ");
  ASSIGN_OR_RETURN(Tensor out, Float(c, Shape({m, n})));
  const Tensor* bias = c.in.size() > 2 ? c.in[2] : nullptr;
  Shape bias_strides;
  if (bias != nullptr) {
    RETURN_IF_ERROR(NeedFloat(c, bias));
    ASSIGN_OR_RETURN(Shape check, BroadcastShape(c, out.shape, bias->shape));
    if (check != out.shape) return Bad(c, "C does not broadcast to the output");
    bias_strides = Strides(bias->shape);
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        acc += static_cast<double>(ta ? a.f[p * m + i] : a.f[i * k + p]) *
               (tb ? b.f[j * k + p] : b.f[p * n + j]);
      }
      float v = alpha * static_cast<float>(acc);
      if (bias != nullptr)
        v += beta * bias->f[BroadcastIndex({i, j}, out.shape, bias->shape, bias_strides)];
      out.f[i * n + j] = v;
    }
  }
  return out;
}

absl::StatusOr<Tensor> MatMul(const Context& c) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  RETURN_IF_ERROR(NeedFloat(c, c.in[1]));
  Shape a_shape = c.in[0]->shape, b_shape = c.in[1]->shape;
  const bool a_vec = a_shape.size() == 1, b_vec = b_shape.size() == 1;
  if (a_vec) a_shape.insert(a_shape.begin(), 1);
  if (b_vec) b_shape.push_back(1);
  const int64_t m = a_shape[a_shape.size() - 2], k = a_shape.back();
  const int64_t kb = b_shape[b_shape.size() - 2], n = b_shape.back();
  if (k != kb) return Bad(c, "inner dimensions differ");
  Shape a_batch(a_shape.begin(), a_shape.end() - 2), b_batch(b_shape.begin(), b_shape.end() - 2);
  ASSIGN_OR_RETURN(Shape batch, BroadcastShape(c, a_batch, b_batch));
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  ASSIGN_OR_RETURN(Tensor out, Float(c, out_shape));
  const Shape sa = Strides(a_batch), sb = Strides(b_batch);
  Shape coords(batch.size(), 0);
  for (int64_t bi = 0; bi < Elements(batch); ++bi) {
    const float* a = c.in[0]->f.data() + BroadcastIndex(coords, batch, a_batch, sa) * m * k;
    const float* b = c.in[1]->f.data() + BroadcastIndex(coords, batch, b_batch, sb) * k * n;
    float* o = out.f.data() + bi * m * n;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p) acc += static_cast<double>(a[i * k + p]) * b[p * n + j];
        o[i * n + j] = static_cast<float>(acc);
      }
    }
    for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
      if (++coords[d] < batch[d]) break;
      coords[d] = 0;
    }
  }
  if (a_vec) out_shape.erase(out_shape.end() - 2);
  if (b_vec) out_shape.pop_back();
  out.shape = out_shape;
  return out;
}

// ---- convolution and pooling (any number of spatial dimensions) -----------------------------

// Calls visit(out_coords) for every output position of the window plan.
void ForEachPosition(const Shape& out, const std::function<void(const Shape&)>& visit) {
  Shape pos(out.size(), 0);
  for (int64_t n = 0; n < Elements(out); ++n) {
    visit(pos);
    for (int k = static_cast<int>(out.size()) - 1; k >= 0; --k) {
      if (++pos[k] < out[k]) break;
      pos[k] = 0;
    }
  }
}

// Calls visit(input_flat_offset_or_-1 for padding, kernel_flat_index) over one window.
void ForEachTap(const Window& w, const Shape& in_spatial, const Shape& pos,
                const std::function<void(int64_t, int64_t)>& visit) {
  const size_t d = in_spatial.size();
  Shape tap(d, 0);
  const int64_t taps = Elements(w.kernel);
  for (int64_t t = 0; t < taps; ++t) {
    int64_t offset = 0;
    bool inside = true;
    for (size_t k = 0; k < d; ++k) {
      const int64_t x = pos[k] * w.strides[k] - w.pad_begin[k] + tap[k] * w.dilations[k];
      if (x < 0 || x >= in_spatial[k]) inside = false;
      offset = offset * in_spatial[k] + x;
    }
    visit(inside ? offset : -1, t);
    for (int k = static_cast<int>(d) - 1; k >= 0; --k) {
      if (++tap[k] < w.kernel[k]) break;
      tap[k] = 0;
    }
  }
}

absl::StatusOr<Tensor> Conv(const Context& c) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  RETURN_IF_ERROR(NeedFloat(c, c.in[1]));
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
  ASSIGN_OR_RETURN(Tensor out, Float(c, out_shape));
  const int64_t in_plane = Elements(in_spatial), out_plane = Elements(w.out),
                taps = Elements(w.kernel);
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

absl::StatusOr<Tensor> Pool(const Context& c, bool max) {
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
  ASSIGN_OR_RETURN(Tensor out, Float(c, out_shape));
  const int64_t in_plane = Elements(in_spatial), out_plane = Elements(w.out);
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

absl::StatusOr<Tensor> GlobalAveragePool(const Context& c) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  const Tensor& x = *c.in[0];
  if (x.shape.size() < 3) return Bad(c, "input rank < 3");
  Shape out_shape = {x.shape[0], x.shape[1]};
  out_shape.resize(x.shape.size(), 1);
  ASSIGN_OR_RETURN(Tensor out, Float(c, out_shape));
  const int64_t plane = Elements(Shape(x.shape.begin() + 2, x.shape.end()));
  for (int64_t p = 0; p < x.shape[0] * x.shape[1]; ++p) {
    double sum = 0;
    for (int64_t i = 0; i < plane; ++i) sum += x.f[p * plane + i];
    out.f[p] = static_cast<float>(sum / static_cast<double>(plane));
  }
  return out;
}

absl::StatusOr<Tensor> BatchNormalization(const Context& c) {
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
      x.shape.size() > 2 ? Elements(Shape(x.shape.begin() + 2, x.shape.end())) : 1;
  ASSIGN_OR_RETURN(Tensor out, Float(c, x.shape));
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

// ---- shapes and data movement ---------------------------------------------------------------

absl::StatusOr<Tensor> Reshaped(const Context& c, Shape shape) {
  absl::StatusOr<int64_t> n = CheckedElementCount(shape);
  if (!n.ok()) return Bad(c, n.status().message());
  Tensor out = *c.in[0];
  if (*n != out.size()) return Bad(c, "element count changes");
  out.shape = std::move(shape);
  return out;
}

absl::StatusOr<Tensor> Reshape(const Context& c) {
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

absl::StatusOr<Tensor> Flatten(const Context& c) {
  const Shape& in = c.in[0]->shape;
  const int64_t axis = Axis(c.node.Int("axis", 1), in.size());
  if (axis < 0 || axis > static_cast<int64_t>(in.size())) return Bad(c, "axis out of range");
  int64_t outer = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= in[k];
  return Reshaped(c, {outer, outer == 0 ? 0 : c.in[0]->size() / outer});
}

absl::StatusOr<std::vector<int64_t>> AxesOf(const Context& c, size_t input_index) {
  if (c.opset >= 13 && c.in.size() > input_index) {
    if (c.in[input_index] == nullptr) return std::vector<int64_t>{};
    return IntsOf(*c.in[input_index]);
  }
  return c.node.Ints("axes");
}

absl::StatusOr<Tensor> Squeeze(const Context& c) {
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

absl::StatusOr<Tensor> Unsqueeze(const Context& c) {
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

absl::StatusOr<Tensor> Transpose(const Context& c) {
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
  const Shape in_strides = Strides(x.shape);
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

absl::StatusOr<Tensor> Concat(const Context& c) {
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

absl::StatusOr<Tensor> Pad(const Context& c) {
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
  ASSIGN_OR_RETURN(Tensor out, Float(c, out_shape));
  const Shape in_strides = Strides(x.shape);
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

absl::StatusOr<Tensor> ReduceMean(const Context& c) {
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
  ASSIGN_OR_RETURN(Tensor out, Float(c, kept_shape));
  std::vector<int64_t> counts(out.size(), 0);
  const Shape out_strides = Strides(kept_shape);
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

absl::StatusOr<Tensor> Constant(const Context& c) {
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

absl::StatusOr<std::vector<Tensor>> Execute(const Context& c) {
  const std::string& op = c.node.op;
  auto one = [](absl::StatusOr<Tensor> t) -> absl::StatusOr<std::vector<Tensor>> {
    if (!t.ok()) return t.status();
    std::vector<Tensor> out;
    out.push_back(std::move(*t));
    return out;
  };
  if (c.in.empty() && op != "Constant") return Bad(c, "no inputs");
  if (op == "Add") return one(Binary(c, [](float a, float b) { return a + b; }));
  if (op == "Sub") return one(Binary(c, [](float a, float b) { return a - b; }));
  if (op == "Mul") return one(Binary(c, [](float a, float b) { return a * b; }));
  if (op == "Div") return one(Binary(c, [](float a, float b) { return a / b; }));
  if (op == "Relu") return one(Unary(c, [](float v) { return v > 0 ? v : 0.0f; }));
  if (op == "LeakyRelu") {
    const float alpha = c.node.Float("alpha", 0.01f);
    return one(Unary(c, [alpha](float v) { return v >= 0 ? v : alpha * v; }));
  }
  if (op == "Sigmoid") return one(Unary(c, [](float v) { return 1.0f / (1.0f + std::exp(-v)); }));
  if (op == "Tanh") return one(Unary(c, [](float v) { return std::tanh(v); }));
  if (op == "Clip") return one(Clip(c));
  if (op == "Softmax") return one(Softmax(c, false));
  if (op == "LogSoftmax") return one(Softmax(c, true));
  if (op == "Gemm") return one(Gemm(c));
  if (op == "MatMul") return one(MatMul(c));
  if (op == "Conv") return one(Conv(c));
  if (op == "MaxPool") return one(Pool(c, true));
  if (op == "AveragePool") return one(Pool(c, false));
  if (op == "GlobalAveragePool") return one(GlobalAveragePool(c));
  if (op == "BatchNormalization") return one(BatchNormalization(c));
  if (op == "Flatten") return one(Flatten(c));
  if (op == "Reshape") return one(Reshape(c));
  if (op == "Transpose") return one(Transpose(c));
  if (op == "Concat") return one(Concat(c));
  if (op == "Squeeze") return one(Squeeze(c));
  if (op == "Unsqueeze") return one(Unsqueeze(c));
  if (op == "Pad") return one(Pad(c));
  if (op == "ReduceMean") return one(ReduceMean(c));
  if (op == "Identity") return one(*c.in[0]);
  if (op == "Constant") return one(Constant(c));
  if (op == "Dropout") {
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
  return Unsupported(c, "operator not implemented");
}

}  // namespace

absl::StatusOr<std::map<std::string, Tensor>> RunReference(
    const Graph& graph, const std::map<std::string, Tensor>& inputs) {
  ASSIGN_OR_RETURN(auto values, RunReferenceAllValues(graph, inputs));
  std::map<std::string, Tensor> result;
  for (const ValueInfo& info : graph.outputs) result[info.name] = values.at(info.name);
  return result;
}

absl::StatusOr<std::map<std::string, Tensor>> RunReferenceAllValues(
    const Graph& graph, const std::map<std::string, Tensor>& inputs) {
  constexpr int64_t kMaxHeldElements = 4 * kMaxTensorElements;
  int64_t held = 0;
  std::map<std::string, Tensor> values = graph.constants;
  for (const ValueInfo& info : graph.inputs) {
    auto it = inputs.find(info.name);
    if (it == inputs.end())
      return absl::InvalidArgumentError(absl::StrCat("missing input \"", info.name, "\""));
    if (it->second.shape != info.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input \"", info.name, "\" has shape [", absl::StrJoin(it->second.shape, ","),
          "], expected [", absl::StrJoin(info.shape, ","), "]"));
    }
    values[info.name] = it->second;
  }
  for (const Node& node : graph.nodes) {
    Context c{node, graph.opset, {}};
    for (const std::string& name : node.inputs) {
      if (name.empty()) {
        c.in.push_back(nullptr);
        continue;
      }
      auto it = values.find(name);
      if (it == values.end())
        return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" is not computed"));
      c.in.push_back(&it->second);
    }
    // Trailing omitted inputs are the same as absent ones.
    while (!c.in.empty() && c.in.back() == nullptr) c.in.pop_back();
    ASSIGN_OR_RETURN(std::vector<Tensor> outputs, Execute(c));
    for (size_t k = 0; k < node.outputs.size() && k < outputs.size(); ++k) {
      if (node.outputs[k].empty()) continue;
      // Every value is kept (the C backend reads them all), so their sum is what is bounded.
      held += outputs[k].size();
      if (held > kMaxHeldElements) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "the model's values need more than ", kMaxHeldElements * 4 >> 30,
            " GiB at compile time (at node ", &node - graph.nodes.data(), ")"));
      }
      values[node.outputs[k]] = std::move(outputs[k]);
    }
  }
  for (const ValueInfo& info : graph.outputs) {
    if (values.count(info.name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("output \"", info.name, "\" is not computed"));
    }
  }
  return values;
}

}  // namespace edgeloop::compiler
