#include "agent/serving_model.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "agent/thread_priority.h"
#include "common/hardware.h"
#include "common/status.h"

namespace edgeloop::agent {

int64_t Elements(const elm_tensor& t) {
  int64_t n = 1;
  for (int k = 0; k < t.rank; ++k) n *= t.dims[k];
  return n;
}

namespace {

// dlopen and dlclose hold the process's locks that request threads take too — the dynamic
// loader's (thread creation, which gRPC's server does on the request path, sets up TLS under
// it) and the kernel's mmap lock (a call's page fault or malloc waits on it) — so the
// background thread does them at normal priority (see thread_priority.h).
void* OpenModule(const std::string& so_path) {
  NormalPriority normal;
  return ::dlopen(so_path.c_str(), RTLD_NOW | RTLD_LOCAL);
}

void CloseModule(void* handle) {
  NormalPriority normal;
  ::dlclose(handle);
}

}  // namespace

void ServingModel::FreeDeleter::operator()(void* p) const { std::free(p); }

absl::StatusOr<std::shared_ptr<ServingModel>> ServingModel::Load(
    const v1::ModuleRef& ref, ModuleFile file, const std::string& device_target) {
  // Refuse a module for another CPU before running any of its code.
  if (!TargetRunsOn(ref.target(), device_target)) {
    return absl::FailedPreconditionError(absl::StrCat("module ", ref.digest(), " is built for ",
                                                      ref.target(), ", which this ",
                                                      device_target, " CPU cannot run"));
  }
  void* handle = OpenModule(file.ProcPath());
  if (handle == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("dlopen ", file.path(), ": ", ::dlerror()));
  }
  using Entry = const elm_module* (*)();
  auto entry = reinterpret_cast<Entry>(::dlsym(handle, "edgeloop_module_v1"));
  const elm_module* module = entry ? entry() : nullptr;
  if (module == nullptr || module->abi != EDGELOOP_MODULE_ABI) {
    CloseModule(handle);
    return absl::FailedPreconditionError(absl::StrCat(
        "module ", ref.digest(), " is not an edgeloop module of ABI version ", EDGELOOP_MODULE_ABI));
  }
  std::shared_ptr<ServingModel> model(new ServingModel(handle, std::move(file), module, ref));
  if (ref.target() != module->target) {
    return absl::FailedPreconditionError(absl::StrCat("module ", ref.digest(), " says target ",
                                                      module->target, ", its manifest ",
                                                      ref.target()));
  }
  Workspace ws = model->TakeWorkspace();
  if (ws == nullptr) return absl::ResourceExhaustedError("no memory for the module's workspace");
  if (module->selftest(ws.get()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("module ", ref.digest(), " failed its self-test on this device"));
  }
  model->ReturnWorkspace(std::move(ws));
  // A warm-up call: pages in the weights and the code before the first request does.
  std::vector<std::vector<float>> in(module->num_inputs), out(module->num_outputs);
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;
  for (uint32_t k = 0; k < module->num_inputs; ++k) {
    in[k].assign(Elements(module->inputs[k]), 0.0f);
    in_ptrs.push_back(in[k].data());
  }
  for (uint32_t k = 0; k < module->num_outputs; ++k) {
    out[k].resize(Elements(module->outputs[k]));
    out_ptrs.push_back(out[k].data());
  }
  RETURN_IF_ERROR(model->Run(in_ptrs.data(), out_ptrs.data()));
  return model;
}

ServingModel::~ServingModel() { CloseModule(handle_); }

ServingModel::Workspace ServingModel::TakeWorkspace() const {
  {
    std::lock_guard lock(pool_mu_);
    if (!pool_.empty()) {
      Workspace w = std::move(pool_.back());
      pool_.pop_back();
      return w;
    }
  }
  const size_t bytes = (module_->workspace_bytes + 63) / 64 * 64 + 64;
  return Workspace(std::aligned_alloc(64, bytes));
}

void ServingModel::ReturnWorkspace(Workspace w) const {
  std::lock_guard lock(pool_mu_);
  pool_.push_back(std::move(w));
}

void ServingModel::Record(absl::Duration run, bool ok) const {
  calls_.fetch_add(1, std::memory_order_relaxed);
  if (!ok) errors_.fetch_add(1, std::memory_order_relaxed);
  run_ns_.fetch_add(absl::ToInt64Nanoseconds(run), std::memory_order_relaxed);
}

void ServingModel::Monitor(std::shared_ptr<WindowCounters> counters) const {
  std::lock_guard lock(monitor_mu_);
  counters_.store(counters.get(), std::memory_order_release);
  monitors_.push_back(std::move(counters));  // a spec changes once or twice per version
}

ServingModel::Stats ServingModel::stats() const {
  Stats s;
  s.calls = calls_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  s.mean_run_us = s.calls > 0 ? static_cast<double>(run_ns_.load()) / 1000.0 / s.calls : 0;
  return s;
}

absl::Status ServingModel::Run(const void* const* inputs, void* const* outputs) const {
  Workspace ws = TakeWorkspace();
  if (ws == nullptr) return absl::ResourceExhaustedError("no memory for a workspace");
  const int code = module_->run(ws.get(), inputs, outputs);
  ReturnWorkspace(std::move(ws));
  if (code != 0) return absl::InternalError(absl::StrCat("the module returned ", code));
  return absl::OkStatus();
}

}  // namespace edgeloop::agent
