#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/module_file.h"
#include "agent/window_counters.h"
#include "edgeloop/module_abi.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::agent {

/// One verified module loaded into the agent (dlopen, RTLD_LOCAL), serving one model version.
/// Immutable once loaded; requests share it through a shared_ptr, so a module replaced while
/// calls run on it is unloaded when the last of them ends. Each call takes a workspace from a
/// pool (one per concurrent call, allocated on first need), so calls run in parallel.
class ServingModel {
 public:
  /// Loads and checks: the ABI version, the module's own target class against the ref and
  /// against this CPU's class (FAILED_PRECONDITION for a module this CPU cannot run), its
  /// embedded self-test, and one warm-up call.
  /// `file` is the verified file (OpenVerifiedModule): it is loaded through its descriptor.
  static absl::StatusOr<std::shared_ptr<ServingModel>> Load(const v1::ModuleRef& ref,
                                                            ModuleFile file,
                                                            const std::string& device_target);
  ~ServingModel();
  ServingModel(const ServingModel&) = delete;
  ServingModel& operator=(const ServingModel&) = delete;

  const v1::ModuleRef& ref() const { return ref_; }
  const elm_module& module() const { return *module_; }
  /// Runs one call; inputs and outputs in the module's order, sized by its signature.
  absl::Status Run(const void* const* inputs, void* const* outputs) const;

  /// Calls served to applications (not the load checks), for the post-swap health watch.
  struct Stats {
    int64_t calls = 0, errors = 0;
    double mean_run_us = 0;
  };
  void Record(absl::Duration run, bool ok) const;
  Stats stats() const;

  /// The counters this version's calls add to (null: not monitored). Set from the background
  /// thread when its monitoring spec arrives or changes; a call reads it with one atomic load.
  WindowCounters* counters() const { return counters_.load(std::memory_order_acquire); }
  /// Kept alive with this module, so a call that loaded the old pointer can finish with it.
  void Monitor(std::shared_ptr<WindowCounters> counters) const;

 private:
  ServingModel(void* handle, ModuleFile file, const elm_module* module, v1::ModuleRef ref)
      : handle_(handle), file_(std::move(file)), module_(module), ref_(std::move(ref)) {}
  struct FreeDeleter {
    void operator()(void* p) const;
  };
  using Workspace = std::unique_ptr<void, FreeDeleter>;
  Workspace TakeWorkspace() const;
  void ReturnWorkspace(Workspace w) const;

  void* handle_;
  ModuleFile file_;  // closed after dlclose (members go after the destructor's body)
  const elm_module* module_;
  v1::ModuleRef ref_;
  mutable std::mutex pool_mu_;
  mutable std::vector<Workspace> pool_;
  mutable std::atomic<int64_t> calls_{0}, errors_{0}, run_ns_{0};
  mutable std::mutex monitor_mu_;
  mutable std::vector<std::shared_ptr<WindowCounters>> monitors_;  // every one it was given
  mutable std::atomic<WindowCounters*> counters_{nullptr};
};

/// Elements of a module tensor.
int64_t Elements(const elm_tensor& t);

}  // namespace edgeloop::agent
