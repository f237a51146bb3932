#include "compiler/window.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace edgeloop::compiler {
namespace {

using Shape = std::vector<int64_t>;

absl::Status Bad(const Node& node, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(node.op, " '", node.name, "': ", why));
}

}  // namespace

absl::StatusOr<Window> PlanWindow(const Node& node, const Shape& in_spatial, Shape kernel,
                                  bool ceil_mode) {
  const size_t d = in_spatial.size();
  Window w;
  w.kernel = std::move(kernel);
  w.strides = node.Ints("strides");
  w.dilations = node.Ints("dilations");
  if (w.strides.empty()) w.strides.assign(d, 1);
  if (w.dilations.empty()) w.dilations.assign(d, 1);
  Shape pads = node.Ints("pads");
  if (pads.empty()) pads.assign(2 * d, 0);
  if (w.kernel.size() != d || w.strides.size() != d || w.dilations.size() != d ||
      pads.size() != 2 * d) {
    return Bad(node, "kernel_shape, strides, dilations or pads do not match the input rank");
  }
  // Held to the tensor bound, so the sums and products below stay far inside int64.
  for (const Shape* values : std::initializer_list<const Shape*>{
           &w.kernel, &w.strides, &w.dilations, &pads, &in_spatial}) {
    for (const int64_t v : *values) {
      if (v < 0 || v > kMaxTensorElements) return Bad(node, "window attribute out of range");
    }
  }
  w.pad_begin.assign(pads.begin(), pads.begin() + d);
  w.pad_end.assign(pads.begin() + d, pads.end());
  const std::string auto_pad = node.String("auto_pad", "NOTSET");
  w.out.resize(d);
  for (size_t k = 0; k < d; ++k) {
    if (w.strides[k] <= 0 || w.dilations[k] <= 0 || w.kernel[k] <= 0)
      return Bad(node, "non-positive window");
    const int64_t extent = (w.kernel[k] - 1) * w.dilations[k] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      w.out[k] = (in_spatial[k] + w.strides[k] - 1) / w.strides[k];
      const int64_t total =
          std::max<int64_t>(0, (w.out[k] - 1) * w.strides[k] + extent - in_spatial[k]);
      w.pad_begin[k] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      w.pad_end[k] = total - w.pad_begin[k];
    } else if (auto_pad == "VALID") {
      w.pad_begin[k] = w.pad_end[k] = 0;
      w.out[k] = (in_spatial[k] - extent) / w.strides[k] + 1;
    } else if (auto_pad == "NOTSET") {
      const int64_t span = in_spatial[k] + w.pad_begin[k] + w.pad_end[k] - extent;
      w.out[k] = (ceil_mode ? (span + w.strides[k] - 1) / w.strides[k] : span / w.strides[k]) + 1;
      // A window that would start inside the end padding only is dropped (ceil_mode).
      if (ceil_mode && (w.out[k] - 1) * w.strides[k] >= in_spatial[k] + w.pad_begin[k]) --w.out[k];
    } else {
      return Bad(node, absl::StrCat("unknown auto_pad ", auto_pad));
    }
    if (w.out[k] <= 0) return Bad(node, "window larger than the padded input");
  }
  return w;
}

}  // namespace edgeloop::compiler
