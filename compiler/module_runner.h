#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir.h"
#include "compiler/toolchain.h"

namespace edgeloop::compiler {

/// Runs a module for a target this machine emulates: builds the small `elm-runner` program
/// with the target's toolchain and runs it under the target's emulator (qemu-user), passing
/// tensors through files. Slower than in-process, but the only honest way to check a cross
/// compiled module before a device does.
class EmulatedModule {
 public:
  static absl::StatusOr<std::unique_ptr<EmulatedModule>> Create(const Toolchain& toolchain,
                                                                const std::string& so_path,
                                                                const std::string& work_dir);
  /// 0 when the module's embedded self-test passes.
  absl::StatusOr<int> SelfTest();
  /// Runs every sample (its inputs in the module's order) in one emulator process; per sample,
  /// the outputs in the module's order.
  absl::StatusOr<std::vector<std::vector<Tensor>>> Run(
      const std::vector<std::vector<const Tensor*>>& samples,
      const std::vector<std::vector<int64_t>>& output_shapes);

 private:
  EmulatedModule(Toolchain toolchain, std::string so_path, std::string work_dir, std::string runner)
      : toolchain_(std::move(toolchain)),
        so_path_(std::move(so_path)),
        work_dir_(std::move(work_dir)),
        runner_(std::move(runner)) {}
  Toolchain toolchain_;
  std::string so_path_, work_dir_, runner_;
};

}  // namespace edgeloop::compiler
