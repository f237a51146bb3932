#include "sim/module_cache.h"

#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/module_store.h"
#include "common/status.h"

namespace edgeloop::sim {
namespace {

size_t DtypeBytes(elm_dtype t) {
  switch (t) {
    case ELM_I8:
    case ELM_U8:
      return 1;
    case ELM_I64:
      return 8;
    default:
      return 4;
  }
}

size_t Bytes(const elm_tensor& t) {
  size_t n = DtypeBytes(t.dtype);
  for (int32_t d = 0; d < t.rank; ++d) n *= static_cast<size_t>(t.dims[d] > 0 ? t.dims[d] : 1);
  return n;
}

// The mean run time of `calls` calls on zero inputs.
absl::StatusOr<double> Time(const agent::ServingModel& model, int calls) {
  const elm_module& m = model.module();
  std::vector<std::vector<char>> in(m.num_inputs), out(m.num_outputs);
  std::vector<const void*> in_ptr;
  std::vector<void*> out_ptr;
  for (uint32_t i = 0; i < m.num_inputs; ++i) {
    in[i].assign(Bytes(m.inputs[i]), 0);
    in_ptr.push_back(in[i].data());
  }
  for (uint32_t i = 0; i < m.num_outputs; ++i) {
    out[i].assign(Bytes(m.outputs[i]), 0);
    out_ptr.push_back(out[i].data());
  }
  const auto start = std::chrono::steady_clock::now();
  for (int k = 0; k < calls; ++k) RETURN_IF_ERROR(model.Run(in_ptr.data(), out_ptr.data()));
  const std::chrono::duration<double, std::micro> spent = std::chrono::steady_clock::now() - start;
  return spent.count() / calls;
}

}  // namespace

absl::StatusOr<ModuleCache::Loaded> ModuleCache::Get(
    const v1::ModuleRef& ref, const std::string& signing_key_pem,
    const std::function<absl::Status(const std::string& path)>& fetch) {
  std::mutex* loading;
  {
    std::lock_guard lock(mu_);
    if (auto it = loaded_.find(ref.digest()); it != loaded_.end()) return it->second;
    auto& slot = loading_[ref.digest()];
    if (slot == nullptr) slot = std::make_unique<std::mutex>();
    loading = slot.get();
  }
  // One device fetches a digest while the others given it wait for it.
  std::lock_guard one(*loading);
  {
    std::lock_guard lock(mu_);
    if (auto it = loaded_.find(ref.digest()); it != loaded_.end()) return it->second;
  }
  RETURN_IF_ERROR(agent::VerifyManifest(ref, signing_key_pem));
  const std::string path = absl::StrCat(dir_, "/", ref.digest().substr(7), ".so");
  RETURN_IF_ERROR(fetch(path));
  ASSIGN_OR_RETURN(agent::ModuleFile file, agent::OpenVerifiedModule(ref, path));
  Loaded loaded;
  ASSIGN_OR_RETURN(loaded.model, agent::ServingModel::Load(ref, std::move(file), host_target_));
  ASSIGN_OR_RETURN(loaded.mean_run_us, Time(*loaded.model, 20));
  std::lock_guard lock(mu_);
  loaded_[ref.digest()] = loaded;
  return loaded;
}

int ModuleCache::fetched() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(loaded_.size());
}

}  // namespace edgeloop::sim
