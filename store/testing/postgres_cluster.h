#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace edgeloop::store::testing {

/// A throwaway PostgreSQL cluster for tests: initdb + pg_ctl on a temp directory that also
/// holds the Unix socket (no TCP port, so parallel test binaries never collide). When the
/// tests run as root the server runs as the `postgres` user, since PostgreSQL refuses root.
/// Stopped (immediate mode) and deleted on destruction.
class PostgresCluster {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresCluster>> Start();
  ~PostgresCluster();

  /// Stops the server (immediate mode: connections drop as in a crash) / starts it again.
  absl::Status Stop();
  absl::Status Restart();

  /// Creates an empty database and returns its connection URL.
  absl::StatusOr<std::string> CreateDatabase(const std::string& name);
  const std::string& socket_dir() const { return dir_; }

 private:
  PostgresCluster(std::string bin, std::string dir) : bin_(std::move(bin)), dir_(std::move(dir)) {}
  std::string bin_;
  std::string dir_;
};

/// One cluster per test binary, started on first use and stopped at exit.
absl::StatusOr<PostgresCluster*> SharedPostgresCluster();

/// A fresh database on the shared cluster with a unique name; its URL.
absl::StatusOr<std::string> NewTestDatabase();

}  // namespace edgeloop::store::testing
