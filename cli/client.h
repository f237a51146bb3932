#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "edgeloop/v1/admin.grpc.pb.h"
#include "edgeloop/v1/device.grpc.pb.h"
#include "edgeloop/v1/registry.grpc.pb.h"
#include "edgeloop/v1/rollout.grpc.pb.h"
#include "edgeloop/v1/telemetry.grpc.pb.h"

namespace edgeloop::cli {

/// The operator gRPC connection the CLI talks through, with the bearer token attached to
/// every call.
class Client {
 public:
  /// `server` is HOST:PORT; the token is read from `token_file` (first line).
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& server,
                                                         const std::string& token_file);

  /// A fresh context carrying the token and a deadline.
  std::unique_ptr<grpc::ClientContext> Context(int timeout_seconds = 30) const;

  v1::RegistryService::Stub& registry() { return *registry_; }
  v1::AdminService::Stub& admin() { return *admin_; }
  v1::FleetService::Stub& fleet() { return *fleet_; }
  v1::TelemetryService::Stub& telemetry() { return *telemetry_; }
  v1::RolloutService::Stub& rollouts() { return *rollouts_; }

 private:
  std::string token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::RegistryService::Stub> registry_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::FleetService::Stub> fleet_;
  std::unique_ptr<v1::TelemetryService::Stub> telemetry_;
  std::unique_ptr<v1::RolloutService::Stub> rollouts_;
};

/// A failed call as a Status with the server's message.
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace edgeloop::cli
