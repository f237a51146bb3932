#include "compiler/module_loader.h"

#include <dlfcn.h>

#include "absl/strings/str_cat.h"

namespace edgeloop::compiler {

absl::StatusOr<std::unique_ptr<LoadedModule>> LoadedModule::Load(const std::string& so_path) {
  void* handle = ::dlopen(so_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr)
    return absl::FailedPreconditionError(absl::StrCat("dlopen: ", ::dlerror()));
  using Entry = const elm_module* (*)();
  auto entry = reinterpret_cast<Entry>(::dlsym(handle, "edgeloop_module_v1"));
  const elm_module* module = entry ? entry() : nullptr;
  if (module == nullptr || module->abi != EDGELOOP_MODULE_ABI) {
    ::dlclose(handle);
    return absl::FailedPreconditionError("not an edgeloop module of ABI version 1");
  }
  return std::unique_ptr<LoadedModule>(new LoadedModule(handle, module));
}

LoadedModule::~LoadedModule() { ::dlclose(handle_); }

int LoadedModule::SelfTest() {
  std::vector<float> workspace(module_->workspace_bytes / sizeof(float) + 1);
  return module_->selftest(workspace.data());
}

absl::StatusOr<std::vector<Tensor>> LoadedModule::Run(const std::vector<const Tensor*>& inputs) {
  if (inputs.size() != module_->num_inputs)
    return absl::InvalidArgumentError("wrong number of inputs");
  std::vector<const void*> in;
  for (uint32_t k = 0; k < module_->num_inputs; ++k) {
    const elm_tensor& spec = module_->inputs[k];
    int64_t n = 1;
    for (int32_t d = 0; d < spec.rank; ++d) n *= spec.dims[d];
    if (inputs[k]->dtype != DType::kFloat32 || static_cast<int64_t>(inputs[k]->f.size()) != n) {
      return absl::InvalidArgumentError(
          absl::StrCat("input ", k, " does not match the module's signature"));
    }
    in.push_back(inputs[k]->f.data());
  }
  std::vector<Tensor> outputs(module_->num_outputs);
  std::vector<void*> out;
  for (uint32_t k = 0; k < module_->num_outputs; ++k) {
    const elm_tensor& spec = module_->outputs[k];
    outputs[k].shape.assign(spec.dims, spec.dims + spec.rank);
    outputs[k].f.resize(outputs[k].size());
    out.push_back(outputs[k].f.data());
  }
  std::vector<float> workspace(module_->workspace_bytes / sizeof(float) + 1);
  if (module_->run(workspace.data(), in.data(), out.data()) != 0)
    return absl::InternalError("module run failed");
  return outputs;
}

}  // namespace edgeloop::compiler
