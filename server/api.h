#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "edgeloop/v1/admin.pb.h"
#include "edgeloop/v1/device.pb.h"
#include "edgeloop/v1/registry.pb.h"
#include "edgeloop/v1/rollout.pb.h"
#include "fleet/assignments.h"
#include "fleet/device_registry.h"
#include "fleet/enrollment_tokens.h"
#include "registry/registry.h"
#include "rollout/controller.h"
#include "server/auth.h"
#include "store/blob_store.h"
#include "telemetry/analysis.h"

namespace edgeloop::server {

struct ApiOptions {
  registry::Registry* registry = nullptr;                // not owned
  store::BlobStore* blobs = nullptr;                     // not owned
  TokenStore* tokens = nullptr;                          // not owned
  fleet::DeviceRegistry* devices = nullptr;              // not owned
  fleet::EnrollmentTokens* enrollment_tokens = nullptr;  // not owned
  fleet::Assignments* assignments = nullptr;             // not owned
  telemetry::TelemetryQueries* telemetry = nullptr;      // not owned
  rollout::Controller* rollouts = nullptr;               // not owned
  int64_t max_upload_bytes = int64_t{2} << 30;
};

/// Every operator operation, once: the role it needs and the domain call it makes. The REST
/// gateway and the gRPC services both translate into these methods, so the two transports
/// cannot drift apart. Thread-safe.
class Api {
 public:
  explicit Api(const ApiOptions& options) : options_(options) {}

  absl::StatusOr<v1::Model> CreateModel(const Principal& p, const v1::CreateModelRequest& r);
  absl::StatusOr<v1::Model> GetModel(const Principal& p, const v1::GetModelRequest& r);
  absl::StatusOr<v1::ListModelsResponse> ListModels(const Principal& p,
                                                    const v1::ListModelsRequest& r);
  absl::StatusOr<v1::ModelVersion> CreateVersion(const Principal& p,
                                                 const v1::CreateVersionRequest& r);
  absl::StatusOr<v1::ModelVersion> GetVersion(const Principal& p, const v1::GetVersionRequest& r);
  absl::StatusOr<v1::ListVersionsResponse> ListVersions(const Principal& p,
                                                        const v1::ListVersionsRequest& r);
  absl::StatusOr<v1::Alias> SetAlias(const Principal& p, const v1::SetAliasRequest& r);
  absl::StatusOr<v1::Alias> GetAlias(const Principal& p, const v1::GetAliasRequest& r);
  absl::StatusOr<v1::GetAliasHistoryResponse> GetAliasHistory(const Principal& p,
                                                              const v1::GetAliasHistoryRequest& r);
  absl::StatusOr<v1::ListArtifactsResponse> ListArtifacts(const Principal& p,
                                                          const v1::ListArtifactsRequest& r);
  absl::StatusOr<v1::ListEventsResponse> ListEvents(const Principal& p,
                                                    const v1::ListEventsRequest& r);

  absl::StatusOr<v1::CreateTokenResponse> CreateToken(const Principal& p,
                                                      const v1::CreateTokenRequest& r);
  absl::StatusOr<v1::ListTokensResponse> ListTokens(const Principal& p,
                                                    const v1::ListTokensRequest& r);
  absl::StatusOr<v1::ApiToken> RevokeToken(const Principal& p, const v1::RevokeTokenRequest& r);
  absl::StatusOr<v1::PingResponse> Ping(const Principal& p, const v1::PingRequest& r);

  absl::StatusOr<v1::CreateEnrollmentTokenResponse> CreateEnrollmentToken(
      const Principal& p, const v1::CreateEnrollmentTokenRequest& r);
  absl::StatusOr<v1::ListEnrollmentTokensResponse> ListEnrollmentTokens(
      const Principal& p, const v1::ListEnrollmentTokensRequest& r);
  absl::StatusOr<v1::EnrollmentToken> RevokeEnrollmentToken(
      const Principal& p, const v1::RevokeEnrollmentTokenRequest& r);
  absl::StatusOr<v1::ListDevicesResponse> ListDevices(const Principal& p,
                                                      const v1::ListDevicesRequest& r);
  absl::StatusOr<v1::Device> GetDevice(const Principal& p, const v1::GetDeviceRequest& r);
  absl::StatusOr<v1::ModelTelemetry> GetModelTelemetry(const Principal& p,
                                                       const v1::GetModelTelemetryRequest& r);
  absl::StatusOr<v1::DeviceTelemetryReport> GetDeviceTelemetry(
      const Principal& p, const v1::GetDeviceTelemetryRequest& r);
  absl::StatusOr<v1::ModelDriftSettings> GetDriftSettings(const Principal& p,
                                                          const v1::GetDriftSettingsRequest& r);
  absl::StatusOr<v1::ModelDriftSettings> SetDriftSettings(const Principal& p,
                                                          const v1::SetDriftSettingsRequest& r);
  absl::StatusOr<v1::Device> UpdateDevice(const Principal& p, const v1::UpdateDeviceRequest& r);
  absl::StatusOr<v1::Device> DecommissionDevice(const Principal& p,
                                                const v1::DecommissionDeviceRequest& r);
  absl::StatusOr<v1::Assignment> AssignModel(const Principal& p, const v1::AssignModelRequest& r);
  absl::StatusOr<v1::ListAssignmentsResponse> ListAssignments(const Principal& p,
                                                              const v1::ListAssignmentsRequest& r);
  absl::StatusOr<v1::Assignment> RollbackDevice(const Principal& p,
                                                const v1::RollbackDeviceRequest& r);

  absl::StatusOr<v1::Rollout> CreateRollout(const Principal& p, const v1::RolloutSpec& r);
  absl::StatusOr<v1::Rollout> GetRollout(const Principal& p, const v1::GetRolloutRequest& r);
  absl::StatusOr<v1::ListRolloutsResponse> ListRollouts(const Principal& p,
                                                        const v1::ListRolloutsRequest& r);
  absl::StatusOr<v1::Rollout> PauseRollout(const Principal& p, const v1::RolloutActionRequest& r);
  absl::StatusOr<v1::Rollout> ResumeRollout(const Principal& p, const v1::RolloutActionRequest& r);
  absl::StatusOr<v1::Rollout> AbortRollout(const Principal& p, const v1::RolloutActionRequest& r);
  absl::StatusOr<v1::Rollout> PromoteRollout(const Principal& p,
                                             const v1::RolloutActionRequest& r);
  absl::StatusOr<v1::ListRolloutEventsResponse> ListRolloutEvents(
      const Principal& p, const v1::ListRolloutEventsRequest& r);

  /// Starts a blob upload. `declared_size` (-1 when unknown) lets an oversized upload be
  /// refused before any byte is read.
  absl::StatusOr<std::unique_ptr<store::BlobWriter>> BeginBlobUpload(const Principal& p,
                                                                     int64_t declared_size);
  absl::StatusOr<v1::Blob> FinishBlobUpload(store::BlobWriter& writer,
                                            absl::string_view expected_digest);
  absl::StatusOr<std::unique_ptr<store::BlobReader>> OpenBlob(const Principal& p,
                                                              absl::string_view digest);

  TokenStore& tokens() { return *options_.tokens; }

 private:
  // Tells watching devices that what they should run may have changed.
  absl::Status DesiredStateChanged();

  ApiOptions options_;
};

}  // namespace edgeloop::server
