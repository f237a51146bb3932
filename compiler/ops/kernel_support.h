#pragma once

// Helpers the reference kernels of every operator family share.
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "compiler/ir.h"
#include "compiler/ops/operator.h"
#include "compiler/window.h"

namespace edgeloop::compiler::ops {

using Shape = std::vector<int64_t>;

/// INVALID_ARGUMENT / UNIMPLEMENTED naming the node.
absl::Status Bad(const KernelContext& c, absl::string_view why);
absl::Status Unsupported(const KernelContext& c, absl::string_view why);

/// A negative axis counted from the end.
inline int64_t Axis(int64_t axis, size_t rank) {
  return axis < 0 ? axis + static_cast<int64_t>(rank) : axis;
}

/// A zeroed float tensor; the one place a kernel allocates an output, so a shape a hostile
/// model computes (huge pads, windows, broadcasts, products) is refused here.
absl::StatusOr<Tensor> FloatTensor(const KernelContext& c, Shape shape);

/// Attribute and operand values that feed size arithmetic (pads, reshape targets) held to the
/// tensor bound, so sums and products of a few stay in int64.
absl::Status CheckSizes(const KernelContext& c, const Shape& values, absl::string_view what);

/// INVALID_ARGUMENT for a missing input, UNIMPLEMENTED for one that is not float32.
absl::Status NeedFloat(const KernelContext& c, const Tensor* t);

/// Integer contents of a shape operand (float ones are truncated).
std::vector<int64_t> IntsOf(const Tensor& t);

/// NumPy broadcasting of two shapes.
absl::StatusOr<Shape> BroadcastShape(const KernelContext& c, const Shape& a, const Shape& b);

/// Index into a tensor of `shape` (broadcast to `out`) for the output position `coords`.
int64_t BroadcastIndex(const Shape& coords, const Shape& out, const Shape& shape,
                       const Shape& strides);

/// One output.
absl::StatusOr<std::vector<Tensor>> One(absl::StatusOr<Tensor> t);

/// Calls visit(coordinates) for every position of a shape, row-major.
void ForEachPosition(const Shape& shape, const std::function<void(const Shape&)>& visit);

/// Calls visit(input_flat_offset_or_-1_for_padding, kernel_flat_index) over one window.
void ForEachTap(const Window& w, const Shape& in_spatial, const Shape& pos,
                const std::function<void(int64_t, int64_t)>& visit);

}  // namespace edgeloop::compiler::ops
