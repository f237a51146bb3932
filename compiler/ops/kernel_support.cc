#include "compiler/ops/kernel_support.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace edgeloop::compiler::ops {

absl::Status Bad(const KernelContext& c, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(c.node.op, " '", c.node.name, "': ", why));
}

absl::Status Unsupported(const KernelContext& c, absl::string_view why) {
  return absl::UnimplementedError(absl::StrCat(c.node.op, " '", c.node.name, "': ", why));
}

absl::StatusOr<Tensor> FloatTensor(const KernelContext& c, Shape shape) {
  absl::StatusOr<int64_t> n = CheckedElementCount(shape);
  if (!n.ok()) return Bad(c, n.status().message());
  Tensor t;
  t.shape = std::move(shape);
  t.f.assign(*n, 0.0f);
  return t;
}

absl::Status CheckSizes(const KernelContext& c, const Shape& values, absl::string_view what) {
  for (const int64_t v : values) {
    if (v > kMaxTensorElements || v < -kMaxTensorElements) {
      return Bad(c, absl::StrCat(what, " ", v, " is out of range"));
    }
  }
  return absl::OkStatus();
}

absl::Status NeedFloat(const KernelContext& c, const Tensor* t) {
  if (t == nullptr) return Bad(c, "missing input");
  if (t->dtype != DType::kFloat32) return Unsupported(c, "only float32 data is supported");
  return absl::OkStatus();
}

std::vector<int64_t> IntsOf(const Tensor& t) {
  if (t.dtype == DType::kFloat32) return std::vector<int64_t>(t.f.begin(), t.f.end());
  return t.i;
}

absl::StatusOr<Shape> BroadcastShape(const KernelContext& c, const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t k = 0; k < out.size(); ++k) {
    int64_t da = k < out.size() - a.size() ? 1 : a[k - (out.size() - a.size())];
    int64_t db = k < out.size() - b.size() ? 1 : b[k - (out.size() - b.size())];
    if (da != db && da != 1 && db != 1) return Bad(c, "shapes do not broadcast");
    out[k] = da == 1 ? db : da;
  }
  return out;
}

int64_t BroadcastIndex(const Shape& coords, const Shape& out, const Shape& shape,
                       const Shape& strides) {
  int64_t index = 0;
  const size_t offset = out.size() - shape.size();
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] != 1) index += coords[k + offset] * strides[k];
  }
  return index;
}

absl::StatusOr<std::vector<Tensor>> One(absl::StatusOr<Tensor> t) {
  if (!t.ok()) return t.status();
  std::vector<Tensor> out;
  out.push_back(std::move(*t));
  return out;
}

void ForEachPosition(const Shape& shape, const std::function<void(const Shape&)>& visit) {
  Shape pos(shape.size(), 0);
  for (int64_t n = 0; n < ElementCount(shape); ++n) {
    visit(pos);
    for (int k = static_cast<int>(shape.size()) - 1; k >= 0; --k) {
      if (++pos[k] < shape[k]) break;
      pos[k] = 0;
    }
  }
}

void ForEachTap(const Window& w, const Shape& in_spatial, const Shape& pos,
                const std::function<void(int64_t, int64_t)>& visit) {
  const size_t d = in_spatial.size();
  Shape tap(d, 0);
  const int64_t taps = ElementCount(w.kernel);
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

}  // namespace edgeloop::compiler::ops
