#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir.h"

namespace edgeloop::compiler {

/// A convolution or pooling window resolved against a concrete input: kernel, strides,
/// dilations, begin/end padding (auto_pad applied) and the output spatial size.
struct Window {
  std::vector<int64_t> kernel, strides, dilations, pad_begin, pad_end, out;
};

/// Resolves the window attributes of `node` (strides, dilations, pads, auto_pad) for spatial
/// input sizes `in_spatial`; `ceil_mode` as pooling defines it. Shared by the reference
/// interpreter and the backends so both read the attributes the same way.
absl::StatusOr<Window> PlanWindow(const Node& node, const std::vector<int64_t>& in_spatial,
                                  std::vector<int64_t> kernel, bool ceil_mode);

}  // namespace edgeloop::compiler
