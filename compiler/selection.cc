#include "compiler/selection.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/hardware.h"
#include "common/status.h"
#include "compiler/toolchain.h"

namespace edgeloop::compiler {
namespace {
double MiB(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }
}  // namespace

absl::StatusOr<Selection> SelectForDevice(const v1::HardwareProfile& profile,
                                          const ModuleFootprint& footprint,
                                          const SelectionBudget& budget) {
  std::string why;
  const std::string target = DeriveTargetClass(profile, &why);
  if (target.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("no target class for this device: ", why));
  }
  ASSIGN_OR_RETURN(Toolchain toolchain, ToolchainFor(target));
  const uint64_t memory = footprint.workspace_bytes + footprint.weight_bytes;
  const double ram_budget = static_cast<double>(profile.ram_mb()) * budget.ram_fraction;
  if (MiB(memory) > ram_budget) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("the model needs %.1f MiB of memory (workspace %.1f + weights %.1f); the "
                        "device has %d MiB RAM and "
                        "models may use %.0f%% of it",
                        MiB(memory), MiB(footprint.workspace_bytes), MiB(footprint.weight_bytes),
                        profile.ram_mb(), budget.ram_fraction * 100));
  }
  const double storage_needed =
      2 * MiB(footprint.module_bytes);  // the running module and the next one
  const double storage_budget = static_cast<double>(profile.storage_mb()) * budget.storage_fraction;
  if (storage_needed > storage_budget) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the module takes %.1f MiB on disk (twice during a swap); the device has %d MiB free and "
        "modules may use "
        "%.0f%% of it",
        MiB(footprint.module_bytes), profile.storage_mb(), budget.storage_fraction * 100));
  }
  Selection selection;
  selection.target = target;
  selection.flags = toolchain.flags;
  selection.reason = absl::StrFormat(
      "%s from the device's %s ISA features%s; backend c; needs %.1f MiB of %d MiB RAM and %.1f "
      "MiB of %d MiB free "
      "storage",
      target, profile.arch(), why.empty() ? "" : absl::StrCat(" (", why, " for the next level)"),
      MiB(memory), profile.ram_mb(), storage_needed, profile.storage_mb());
  return selection;
}

}  // namespace edgeloop::compiler
