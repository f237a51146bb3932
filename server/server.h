#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "server/options.h"

namespace edgeloop::server {

/// `edgeloop-server`: the database, blob store, registry, auth, REST gateway and gRPC
/// services wired together. Create() opens storage and applies migrations; Start() binds
/// the listeners and writes `<data-dir>/ports.json`; Shutdown() drains and stops.
class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options);
  ~Server();

  absl::Status Start();
  /// Stops accepting, lets requests in flight finish for up to the configured grace period.
  void Shutdown();

  int http_port() const;
  int grpc_port() const;
  int device_port() const;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgeloop::server
