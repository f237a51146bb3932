#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/model_host.h"
#include "edgeloop/v1/local.grpc.pb.h"

namespace edgeloop::agent {

/// The agent's local API (edgeloop.v1.LocalInference) on a Unix socket, for applications on
/// the device: Predict, Feedback, ListModels, Health. gRPC's thread pool serves concurrent
/// callers in parallel; each call runs on the module active when it started.
class LocalApi {
 public:
  /// Listens on `socket_path` (a stale socket file is replaced; mode 0660, so the agent's
  /// group can call it). `health` fills in what only the agent knows (device id, generation).
  static absl::StatusOr<std::unique_ptr<LocalApi>> Start(
      const std::string& socket_path, ModelHost* host,
      std::function<void(lv1::HealthResponse*)> health);
  ~LocalApi();

 private:
  class Service;
  LocalApi() = default;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string socket_path_;
};

}  // namespace edgeloop::agent
