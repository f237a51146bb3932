#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/x509.h"
#include "fleet/assignments.h"
#include "fleet/device_registry.h"
#include "fleet/enrollment_tokens.h"
#include "fleet/sync_pacer.h"
#include "registry/registry.h"
#include "store/blob_store.h"
#include "store/database.h"
#include "store/migrations.h"

namespace edgeloop::fleet::testing {

/// A fleet on a test database, for the fleet's tests and those of what builds on it: the
/// database (the registry's and the fleet's tables, and those of `more_components`), a file
/// blob store, the model registry, a CA, enrollment tokens, the sync pacer, assignments and
/// the device registry, all in `dir` and on `clock`.
struct TestFleet {
  struct Options {
    std::string driver;  // "sqlite" or "postgres" (store::testing::OpenTestDatabase)
    std::string dir;
    const Clock* clock = nullptr;
    std::vector<const store::ComponentMigrations*> more_components;
    bool assignments = true;  // false: the device registry resolves no desired modules
    OverrideLookup overrides = nullptr;  // what rollouts add to the assignments
  };
  static absl::StatusOr<std::unique_ptr<TestFleet>> Create(const Options& options);

  /// Enrolls a device with `profile` and `labels` (through a one-use token); its id.
  absl::StatusOr<std::string> EnrollDevice(const v1::HardwareProfile& profile,
                                           const std::map<std::string, std::string>& labels = {});
  /// A model whose versions (numbered from 1, each of `onnx`) have modules built for the
  /// given classes, as the registry and the CI stage would have recorded them (with digests
  /// ModuleDigest(...)); the model's id.
  absl::StatusOr<int64_t> AddModel(
      const std::string& name, const std::string& onnx,
      const std::map<int64_t, std::vector<std::string>>& targets_by_version);
  static std::string ModuleDigest(const std::string& model, int64_t version,
                                  const std::string& target);

  std::unique_ptr<store::Database> db;
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<registry::Registry> models;
  std::unique_ptr<crypto::CertificateAuthority> ca;
  std::unique_ptr<EnrollmentTokens> tokens;
  std::unique_ptr<SyncPacer> pacer;
  std::unique_ptr<Assignments> assignments;  // null unless options.assignments
  std::unique_ptr<DeviceRegistry> devices;
};

}  // namespace edgeloop::fleet::testing
