#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <semaphore>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/signing.h"
#include "edgeloop/v1/registry.pb.h"
#include "store/blob_store.h"
#include "store/database.h"

namespace edgeloop::registry {

/// A version's compile jobs as the CI stage reports them; ListArtifacts shows them beside the
/// modules (the registry does not read the CI stage's tables).
using CompileJobLister =
    std::function<absl::StatusOr<std::vector<v1::CompileJob>>(int64_t model_id, int64_t version)>;

struct RegistryOptions {
  store::Database* database = nullptr;  // not owned; migrations already applied
  store::BlobStore* blobs = nullptr;    // not owned
  const Clock* clock = SystemClock::Get();
  /// Pushed models are parsed whole in memory (up to the upload limit each), so only this
  /// many are inspected at once; a push that waits longer than `inspection_wait` for a turn
  /// is refused with UNAVAILABLE and can be retried.
  int max_concurrent_inspections = 2;
  absl::Duration inspection_wait = absl::Seconds(30);
  CompileJobLister compile_jobs = nullptr;  // unset: ListArtifacts lists no jobs
};

/// A signed module built for one version and target class (a row of `artifacts`).
struct ArtifactRecord {
  int64_t model_id = 0;
  int64_t version = 0;
  std::string target;
  std::string backend = "c";
  std::string module_digest;
  int64_t module_size = 0;
  std::string manifest;
  std::string signature;
  std::string validation;
  double compile_seconds = 0;
  int64_t created_at_ms = 0;
  std::string reason;  // why it was built for this class
  /// The version's reference statistics the compile computed from its validation set; the
  /// first artifact that brings one sets the version's reference (every class computes the
  /// same, on the reference interpreter).
  std::optional<v1::ReferenceStatistics> reference;
};

/// What the CI stage needs to build a version.
struct VersionSource {
  int64_t model_id = 0;
  std::string model;
  int64_t version = 0;
  std::string onnx_digest;
  std::string validation_digest;  // empty: validated on generated inputs
  /// Empty for versions pushed before features were recorded: the compiler's defaults.
  std::vector<v1::MonitoredFeature> monitored_features;
  v1::VersionStatus status = v1::VERSION_STATUS_UNSPECIFIED;
};

/// What recording an artifact did to its version.
enum class ArtifactOutcome {
  kRecorded,                  // more of the version's classes are still building
  kVersionReady,              // it was the last: the version became READY (event version.ready)
  kReadyVersionGainedModule,  // a class that joined later got a module for a READY version
};

/// Counts exported as gauges on /metrics.
struct RegistrySizes {
  int64_t models = 0;
  int64_t versions = 0;
  int64_t aliases = 0;
};

/// The model registry: models, immutable numbered versions, aliases with an append-only
/// history, and the ordered event log. Transport-neutral; REST and gRPC call the same methods.
/// Thread-safe; every write is one database transaction, so a crash leaves either all of a
/// change or none of it.
///
/// Errors: INVALID_ARGUMENT for malformed input (names, digests, ONNX), NOT_FOUND for
/// unknown models, versions, aliases and blobs, ALREADY_EXISTS for a duplicate model.
class Registry {
 public:
  static absl::StatusOr<std::unique_ptr<Registry>> Create(const RegistryOptions& options);

  absl::StatusOr<v1::Model> CreateModel(const v1::CreateModelRequest& request,
                                        absl::string_view actor);
  absl::StatusOr<v1::Model> GetModel(const v1::GetModelRequest& request);
  absl::StatusOr<v1::ListModelsResponse> ListModels(const v1::ListModelsRequest& request);

  /// Reads the ONNX blob, checks it and records its signature, then allocates the next
  /// version number. Concurrent calls for one model get distinct, consecutive numbers.
  absl::StatusOr<v1::ModelVersion> CreateVersion(const v1::CreateVersionRequest& request,
                                                 absl::string_view actor);
  absl::StatusOr<v1::ModelVersion> GetVersion(const v1::GetVersionRequest& request);
  absl::StatusOr<v1::ListVersionsResponse> ListVersions(const v1::ListVersionsRequest& request);

  /// Points an alias at a version and appends the move to its history. Setting an alias to
  /// the version it already names changes nothing and records nothing.
  absl::StatusOr<v1::Alias> SetAlias(const v1::SetAliasRequest& request, absl::string_view actor);
  absl::StatusOr<v1::Alias> GetAlias(const v1::GetAliasRequest& request);
  absl::StatusOr<v1::GetAliasHistoryResponse> GetAliasHistory(
      const v1::GetAliasHistoryRequest& request);

  /// The signed modules built for a version and the state of its compile jobs.
  absl::StatusOr<v1::ListArtifactsResponse> ListArtifacts(const v1::ListArtifactsRequest& request);

  /// Events with sequence > after_sequence, oldest first. Sequences are assigned in commit
  /// order, so a consumer that remembers the last sequence it handled never misses one.
  absl::StatusOr<v1::ListEventsResponse> ListEvents(const v1::ListEventsRequest& request);

  absl::StatusOr<RegistrySizes> Sizes();

  // The interface other components use instead of the registry's tables. Each read takes the
  // database or the caller's transaction; each write takes the caller's transaction, so that it
  // commits together with the caller's own change (the CI stage's job, say).

  /// The model's internal id; nullopt when there is no such model.
  static absl::StatusOr<std::optional<int64_t>> FindModelId(store::Reader& db,
                                                            const std::string& name);
  /// Names of the given model ids (ids without a model are left out).
  static absl::StatusOr<std::map<int64_t, std::string>> ModelNames(store::Reader& db,
                                                                   const std::set<int64_t>& ids);
  static absl::StatusOr<bool> HasVersion(store::Reader& db, int64_t model_id, int64_t version);
  /// The version an alias names; nullopt when the model has no such alias.
  static absl::StatusOr<std::optional<int64_t>> AliasTarget(store::Reader& db, int64_t model_id,
                                                            const std::string& alias);
  /// (model id, version) of every alias.
  static absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>> AliasedVersions(
      store::Reader& db);
  /// NOT_FOUND when the version does not exist.
  static absl::StatusOr<VersionSource> FindVersion(store::Reader& db, int64_t model_id,
                                                   int64_t version);
  /// The event log after `after_sequence`, oldest first, at most `limit`.
  static absl::StatusOr<std::vector<v1::RegistryEvent>> EventsAfter(store::Reader& db,
                                                                    int64_t after_sequence,
                                                                    int limit);

  /// The modules built for a version, ordered by target class.
  static absl::StatusOr<std::vector<ArtifactRecord>> Artifacts(store::Reader& db, int64_t model_id,
                                                               int64_t version);
  /// True when `digest` is a module built for some version (what devices may fetch).
  static absl::StatusOr<bool> IsModule(store::Reader& db, const std::string& digest);

  /// The version's reference statistics; nullopt until it has one.
  static absl::StatusOr<std::optional<v1::ReferenceStatistics>> Reference(store::Reader& db,
                                                                          int64_t model_id,
                                                                          int64_t version);
  /// Sets the version's reference unless it has one already (a reference never changes once
  /// devices are compared with it); returns whether it was set.
  static absl::StatusOr<bool> SetReference(store::Transaction& tx, int64_t model_id,
                                           int64_t version,
                                           const v1::ReferenceStatistics& reference,
                                           int64_t at_ms);

  /// The CI stage planned the version's builds: REGISTERED → COMPILING.
  static absl::Status MarkCompiling(store::Transaction& tx, int64_t model_id, int64_t version);
  /// Records a built module (once per version and class: a second record changes nothing). When
  /// `last_of_version` (no other class of the version is still building) the version becomes
  /// READY, unless it FAILED meanwhile.
  static absl::StatusOr<ArtifactOutcome> RecordArtifact(store::Transaction& tx,
                                                        const ArtifactRecord& artifact,
                                                        bool last_of_version);
  /// A build failed for good: the version becomes FAILED with `message` (event version.failed).
  /// A version already READY (the failing class joined later) or FAILED is left as it is;
  /// returns whether it changed.
  static absl::StatusOr<bool> MarkFailed(store::Transaction& tx, int64_t model_id,
                                         int64_t version, const std::string& message,
                                         int64_t at_ms);
  /// Signs every artifact's manifest again with `signer`, in one transaction (a rotation of the
  /// module signing key: devices that follow it accept only the new key's signatures).
  static absl::Status ResignArtifacts(store::Database& database, const crypto::SigningKey& signer);

 private:
  explicit Registry(const RegistryOptions& options)
      : options_(options), inspections_(std::max(1, options.max_concurrent_inspections)) {}
  RegistryOptions options_;
  std::counting_semaphore<> inspections_;
};

}  // namespace edgeloop::registry
