#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "agent/serving_model.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::sim {

/// The real modules of classes this host runs: each fetched once (through the first virtual
/// device that is given it), verified as the agent verifies it (manifest signature, digest),
/// loaded with the agent's own loader (ABI, self-test), and timed. Every device given that
/// module then serves it at the measured cost. Thread-safe.
class ModuleCache {
 public:
  ModuleCache(std::string dir, std::string host_target)
      : dir_(std::move(dir)), host_target_(std::move(host_target)) {}

  struct Loaded {
    std::shared_ptr<agent::ServingModel> model;
    double mean_run_us = 0;  // of 20 calls on zero inputs
  };
  /// `fetch(path)` writes the module's bytes to `path`.
  absl::StatusOr<Loaded> Get(const v1::ModuleRef& ref, const std::string& signing_key_pem,
                             const std::function<absl::Status(const std::string& path)>& fetch);
  int fetched() const;

 private:
  std::string dir_;
  std::string host_target_;
  mutable std::mutex mu_;
  std::map<std::string, Loaded> loaded_;  // by digest
  std::map<std::string, std::unique_ptr<std::mutex>> loading_;
};

}  // namespace edgeloop::sim
