#include "fleet/testing/test_fleet.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "fleet/schema.h"
#include "registry/schema.h"
#include "store/testing/test_database.h"

namespace edgeloop::fleet::testing {

absl::StatusOr<std::unique_ptr<TestFleet>> TestFleet::Create(const Options& options) {
  auto fleet = std::make_unique<TestFleet>();
  std::vector<const store::ComponentMigrations*> components = {&registry::Migrations(),
                                                               &fleet::Migrations()};
  components.insert(components.end(), options.more_components.begin(),
                    options.more_components.end());
  ASSIGN_OR_RETURN(fleet->db,
                   store::testing::OpenTestDatabase(options.driver, options.dir, components));
  store::BlobStoreOptions blob_options;
  blob_options.url = absl::StrCat("file://", options.dir, "/blobs");
  blob_options.staging_dir = options.dir + "/staging";
  ASSIGN_OR_RETURN(fleet->blobs, store::BlobStore::Create(blob_options));
  ASSIGN_OR_RETURN(fleet->models, registry::Registry::Create({.database = fleet->db.get(),
                                                              .blobs = fleet->blobs.get(),
                                                              .clock = options.clock}));
  ASSIGN_OR_RETURN(fleet->ca, crypto::CertificateAuthority::LoadOrCreate(options.dir + "/ca",
                                                                         options.clock->Now()));
  fleet->tokens =
      std::make_unique<EnrollmentTokens>(fleet->db.get(), options.clock, fleet->ca->pin());
  fleet->pacer = std::make_unique<SyncPacer>(absl::Seconds(30), 1000, options.clock);
  if (options.assignments) {
    fleet->assignments = std::make_unique<Assignments>(fleet->db.get(), options.clock);
  }
  fleet->devices = std::make_unique<DeviceRegistry>(
      DeviceRegistryOptions{.database = fleet->db.get(),
                            .ca = fleet->ca.get(),
                            .tokens = fleet->tokens.get(),
                            .pacer = fleet->pacer.get(),
                            .assignments = fleet->assignments.get(),
                            .clock = options.clock,
                            .module_signing_key = {}});
  return fleet;
}

}  // namespace edgeloop::fleet::testing
