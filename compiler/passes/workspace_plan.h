#pragma once

// The backend's last planning step: where each intermediate lives in the one workspace the
// caller gives a module.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace edgeloop::compiler {

/// A region the module needs while steps first..last (inclusive) run: an intermediate value
/// (written by `first`, last read by `last`) or one step's scratch.
struct Buffer {
  std::string name;
  int64_t floats = 0;
  int first = 0, last = 0;
};

struct WorkspacePlan {
  std::map<std::string, int64_t> offsets;  // floats from the workspace's start
  int64_t floats = 0;                      // the workspace's size
};

/// Buffers whose lifetimes overlap never share memory; the others may. Greedy first fit,
/// largest first (ties in the given order), each rounded up to 16 floats (64 bytes) so every
/// buffer starts cache-line aligned. Deterministic.
WorkspacePlan PlanWorkspace(const std::vector<Buffer>& buffers);

}  // namespace edgeloop::compiler
