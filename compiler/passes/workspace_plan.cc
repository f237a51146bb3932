#include "compiler/passes/workspace_plan.h"

#include <algorithm>

namespace edgeloop::compiler {

WorkspacePlan PlanWorkspace(const std::vector<Buffer>& buffers) {
  auto rounded = [](int64_t floats) { return (floats + 15) / 16 * 16; };
  std::vector<const Buffer*> order;
  for (const Buffer& b : buffers) order.push_back(&b);
  std::stable_sort(order.begin(), order.end(), [&](const Buffer* a, const Buffer* b) {
    return rounded(a->floats) > rounded(b->floats);
  });
  WorkspacePlan plan;
  std::vector<std::pair<const Buffer*, int64_t>> placed;
  for (const Buffer* buffer : order) {
    const int64_t size = rounded(buffer->floats);
    int64_t offset = 0;
    bool moved = true;
    while (moved) {
      moved = false;
      for (const auto& [other, at] : placed) {
        const bool overlap_in_time = !(buffer->last < other->first || other->last < buffer->first);
        const int64_t other_size = rounded(other->floats);
        if (overlap_in_time && offset < at + other_size && at < offset + size) {
          offset = at + other_size;
          moved = true;
        }
      }
    }
    placed.emplace_back(buffer, offset);
    plan.offsets[buffer->name] = offset;
    plan.floats = std::max(plan.floats, offset + size);
  }
  return plan;
}

}  // namespace edgeloop::compiler
