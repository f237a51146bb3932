#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir.h"
#include "edgeloop/module_abi.h"

namespace edgeloop::compiler {

/// A compiled module loaded in this process (dlopen), for validation and tests. Unloaded on
/// destruction.
class LoadedModule {
 public:
  /// FAILED_PRECONDITION when the object does not load, lacks edgeloop_module_v1 or has
  /// another ABI version.
  static absl::StatusOr<std::unique_ptr<LoadedModule>> Load(const std::string& so_path);
  ~LoadedModule();

  const elm_module& module() const { return *module_; }
  /// Runs the module's embedded self-test (0 = pass).
  int SelfTest();
  /// Runs on inputs in the module's order; outputs in its order.
  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<const Tensor*>& inputs);

 private:
  LoadedModule(void* handle, const elm_module* module) : handle_(handle), module_(module) {}
  void* handle_;
  const elm_module* module_;
};

}  // namespace edgeloop::compiler
