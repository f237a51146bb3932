#pragma once

#include <algorithm>
#include <memory>
#include <semaphore>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "edgeloop/v1/registry.pb.h"
#include "store/blob_store.h"
#include "store/database.h"

namespace edgeloop::registry {

struct RegistryOptions {
  store::Database* database = nullptr;  // not owned; migrations already applied
  store::BlobStore* blobs = nullptr;    // not owned
  const Clock* clock = SystemClock::Get();
  /// Pushed models are parsed whole in memory (up to the upload limit each), so only this
  /// many are inspected at once; a push that waits longer than `inspection_wait` for a turn
  /// is refused with UNAVAILABLE and can be retried.
  int max_concurrent_inspections = 2;
  absl::Duration inspection_wait = absl::Seconds(30);
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
/// Appends one event to the registry's log in `tx` (for changes made outside Registry, like the
/// CI stage's `version.ready` and `version.failed`).
absl::Status AppendEvent(store::Transaction& tx, absl::string_view type, absl::string_view model,
                         int64_t version, absl::string_view alias, absl::string_view actor,
                         int64_t at_ms);

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

 private:
  explicit Registry(const RegistryOptions& options)
      : options_(options), inspections_(std::max(1, options.max_concurrent_inspections)) {}
  RegistryOptions options_;
  std::counting_semaphore<> inspections_;
};

}  // namespace edgeloop::registry
