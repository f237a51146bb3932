#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::compiler {

/// What a module needs on a device.
struct ModuleFootprint {
  uint64_t workspace_bytes = 0;  // per concurrent call
  uint64_t weight_bytes = 0;     // constant data, mapped with the module
  uint64_t module_bytes = 0;     // the .so on disk
};

/// The compiler's choice for one device, and why.
struct Selection {
  std::string target;  // target class
  std::string backend = "c";
  std::vector<std::string> flags;  // toolchain flags for the target
  std::string reason;              // one sentence a person can read
};

struct SelectionBudget {
  double ram_fraction = 0.5;      // of RAM a model may use (the device runs other things)
  double storage_fraction = 0.5;  // of free storage; two modules are kept during a swap
};

/// Picks target class, backend and flags from a hardware profile, and refuses — with the
/// numbers — a device whose RAM or storage budget cannot hold the module: RESOURCE_EXHAUSTED
/// when it does not fit, FAILED_PRECONDITION when the hardware reaches no target class.
absl::StatusOr<Selection> SelectForDevice(const v1::HardwareProfile& profile,
                                          const ModuleFootprint& footprint,
                                          const SelectionBudget& budget = {});

}  // namespace edgeloop::compiler
