#include "fleet/testing/test_fleet.h"

#include "absl/strings/str_cat.h"
#include "common/random.h"
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
    fleet->assignments = std::make_unique<Assignments>(fleet->db.get(), options.clock, nullptr,
                                                       options.overrides);
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

absl::StatusOr<std::string> TestFleet::EnrollDevice(
    const v1::HardwareProfile& profile, const std::map<std::string, std::string>& labels) {
  v1::CreateEnrollmentTokenRequest token;
  token.set_max_uses(1);
  token.set_ttl_seconds(3600);
  token.mutable_labels()->insert(labels.begin(), labels.end());
  ASSIGN_OR_RETURN(v1::CreateEnrollmentTokenResponse created, tokens->Create(token, "test"));
  ASSIGN_OR_RETURN(crypto::KeyAndCsr csr, crypto::GenerateKeyAndCsr("device"));
  v1::EnrollRequest enroll;
  enroll.set_token(created.secret());
  enroll.set_csr_pem(csr.csr_pem);
  *enroll.mutable_profile() = profile;
  enroll.set_serial(absl::StrCat("serial-", RandomHex(4)));
  ASSIGN_OR_RETURN(v1::EnrollResponse enrolled, devices->Enroll(enroll));
  return enrolled.device_id();
}

absl::StatusOr<int64_t> TestFleet::AddModel(
    const std::string& name, const std::string& onnx,
    const std::map<int64_t, std::vector<std::string>>& targets_by_version) {
  v1::CreateModelRequest create;
  create.set_name(name);
  RETURN_IF_ERROR(models->CreateModel(create, "test").status());
  ASSIGN_OR_RETURN(std::unique_ptr<store::BlobWriter> writer, blobs->NewWriter(int64_t{1} << 24));
  RETURN_IF_ERROR(writer->Write(onnx));
  ASSIGN_OR_RETURN(store::BlobInfo blob, writer->Commit(""));
  ASSIGN_OR_RETURN(std::optional<int64_t> id, registry::Registry::FindModelId(*db, name));
  if (!id.has_value()) return absl::InternalError("the model just created is not there");
  for (const auto& [version, targets] : targets_by_version) {
    v1::CreateVersionRequest push;
    push.set_model(name);
    push.set_onnx_digest(blob.digest);
    ASSIGN_OR_RETURN(v1::ModelVersion pushed, models->CreateVersion(push, "test"));
    if (pushed.version() != version) {
      return absl::InvalidArgumentError("versions are numbered from 1, in order");
    }
    for (size_t i = 0; i < targets.size(); ++i) {
      registry::ArtifactRecord a;
      a.model_id = *id;
      a.version = version;
      a.target = targets[i];
      a.module_digest = ModuleDigest(name, version, targets[i]);
      a.module_size = 100;
      a.manifest = absl::StrCat("{\"target\":\"", targets[i], "\"}");
      a.signature = "sig";
      a.validation = "{}";
      a.compile_seconds = 0.1;
      RETURN_IF_ERROR(store::RunInTransaction(*db, [&](store::Transaction& tx) {
        return registry::Registry::RecordArtifact(tx, a, i + 1 == targets.size()).status();
      }));
    }
  }
  return *id;
}

std::string TestFleet::ModuleDigest(const std::string& model, int64_t version,
                                    const std::string& target) {
  return absl::StrCat("sha256:", model, "-", version, "-", target);
}

}  // namespace edgeloop::fleet::testing
