#include "server/api.h"

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status.h"

namespace edgeloop::server {

absl::StatusOr<v1::Model> Api::CreateModel(const Principal& p, const v1::CreateModelRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.registry->CreateModel(r, p.actor());
}

absl::StatusOr<v1::Model> Api::GetModel(const Principal& p, const v1::GetModelRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.registry->GetModel(r);
}

absl::StatusOr<v1::ListModelsResponse> Api::ListModels(const Principal& p,
                                                       const v1::ListModelsRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.registry->ListModels(r);
}

absl::StatusOr<v1::ModelVersion> Api::CreateVersion(const Principal& p,
                                                    const v1::CreateVersionRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.registry->CreateVersion(r, p.actor());
}

absl::StatusOr<v1::ModelVersion> Api::GetVersion(const Principal& p,
                                                 const v1::GetVersionRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.registry->GetVersion(r);
}

absl::StatusOr<v1::ListVersionsResponse> Api::ListVersions(const Principal& p,
                                                           const v1::ListVersionsRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.registry->ListVersions(r);
}

absl::StatusOr<v1::Alias> Api::SetAlias(const Principal& p, const v1::SetAliasRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  ASSIGN_OR_RETURN(v1::Alias alias, options_.registry->SetAlias(r, p.actor()));
  // Devices assigned to the alias follow it. Told after the commit: a crash in between only
  // delays them to their next periodic sync, which resolves the alias afresh.
  RETURN_IF_ERROR(DesiredStateChanged());
  return alias;
}

absl::Status Api::DesiredStateChanged() {
  if (options_.assignments == nullptr) return absl::OkStatus();
  RETURN_IF_ERROR(options_.assignments->Touch());
  if (options_.devices != nullptr) options_.devices->WakeAllWatchers();
  return absl::OkStatus();
}

absl::StatusOr<v1::Alias> Api::GetAlias(const Principal& p, const v1::GetAliasRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.registry->GetAlias(r);
}

absl::StatusOr<v1::GetAliasHistoryResponse> Api::GetAliasHistory(
    const Principal& p, const v1::GetAliasHistoryRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.registry->GetAliasHistory(r);
}

absl::StatusOr<v1::ListArtifactsResponse> Api::ListArtifacts(const Principal& p,
                                                             const v1::ListArtifactsRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.registry->ListArtifacts(r);
}

absl::StatusOr<v1::ListEventsResponse> Api::ListEvents(const Principal& p,
                                                       const v1::ListEventsRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.registry->ListEvents(r);
}

absl::StatusOr<v1::CreateTokenResponse> Api::CreateToken(const Principal& p,
                                                         const v1::CreateTokenRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::ADMIN));
  return options_.tokens->Create(r, p.actor());
}

absl::StatusOr<v1::ListTokensResponse> Api::ListTokens(const Principal& p,
                                                       const v1::ListTokensRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::ADMIN));
  return options_.tokens->List(r);
}

absl::StatusOr<v1::ApiToken> Api::RevokeToken(const Principal& p, const v1::RevokeTokenRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::ADMIN));
  return options_.tokens->Revoke(r.id());
}

absl::StatusOr<v1::PingResponse> Api::Ping(const Principal& p, const v1::PingRequest&) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return v1::PingResponse();
}

absl::StatusOr<v1::CreateEnrollmentTokenResponse> Api::CreateEnrollmentToken(
    const Principal& p, const v1::CreateEnrollmentTokenRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.enrollment_tokens->Create(r, p.actor());
}

absl::StatusOr<v1::ListEnrollmentTokensResponse> Api::ListEnrollmentTokens(
    const Principal& p, const v1::ListEnrollmentTokensRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.enrollment_tokens->List(r);
}

absl::StatusOr<v1::EnrollmentToken> Api::RevokeEnrollmentToken(
    const Principal& p, const v1::RevokeEnrollmentTokenRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.enrollment_tokens->Revoke(r.id());
}

absl::StatusOr<v1::ListDevicesResponse> Api::ListDevices(const Principal& p,
                                                         const v1::ListDevicesRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.devices->List(r);
}

absl::StatusOr<v1::Device> Api::GetDevice(const Principal& p, const v1::GetDeviceRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.devices->Get(r.id());
}

absl::StatusOr<v1::ModelTelemetry> Api::GetModelTelemetry(const Principal& p,
                                                          const v1::GetModelTelemetryRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.telemetry->Model(r);
}

absl::StatusOr<v1::DeviceTelemetryReport> Api::GetDeviceTelemetry(
    const Principal& p, const v1::GetDeviceTelemetryRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  RETURN_IF_ERROR(options_.devices->Get(r.device_id()).status());  // NOT_FOUND for no device
  return options_.telemetry->Device(r);
}

absl::StatusOr<v1::ModelDriftSettings> Api::GetDriftSettings(const Principal& p,
                                                             const v1::GetDriftSettingsRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.telemetry->DriftSettings(r.model());
}

absl::StatusOr<v1::ModelDriftSettings> Api::SetDriftSettings(const Principal& p,
                                                             const v1::SetDriftSettingsRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.telemetry->SetDriftSettings(r);
}

absl::StatusOr<v1::Device> Api::UpdateDevice(const Principal& p, const v1::UpdateDeviceRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.devices->Update(r);
}

absl::StatusOr<v1::Device> Api::DecommissionDevice(const Principal& p,
                                                   const v1::DecommissionDeviceRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.devices->Decommission(r.id());
}

absl::StatusOr<v1::Assignment> Api::AssignModel(const Principal& p,
                                                const v1::AssignModelRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  ASSIGN_OR_RETURN(v1::Assignment assignment, options_.assignments->Assign(r, p.actor()));
  options_.devices->WakeAllWatchers();  // the generation moved in the same transaction
  return assignment;
}

absl::StatusOr<v1::Assignment> Api::RollbackDevice(const Principal& p,
                                                   const v1::RollbackDeviceRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  ASSIGN_OR_RETURN(v1::Device device, options_.devices->Get(r.id()));
  // The device says what it keeps as previous; that is the version to go back to.
  for (const v1::ModuleStatus& m : device.state().modules()) {
    if (m.state() != "previous" || m.module().model() != r.model()) continue;
    v1::AssignModelRequest assign;
    assign.set_model(r.model());
    assign.set_device_id(r.id());
    assign.set_version(m.module().version());
    return AssignModel(p, assign);
  }
  return absl::FailedPreconditionError(
      absl::StrCat("device \"", r.id(), "\" reports no previous module of \"",
                   r.model().substr(0, 128), "\" to roll back to"));
}

absl::StatusOr<v1::ListAssignmentsResponse> Api::ListAssignments(
    const Principal& p, const v1::ListAssignmentsRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.assignments->List(r);
}

absl::StatusOr<v1::Rollout> Api::CreateRollout(const Principal& p, const v1::RolloutSpec& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.rollouts->Create(r, p.actor());
}

absl::StatusOr<v1::Rollout> Api::GetRollout(const Principal& p, const v1::GetRolloutRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.rollouts->Get(r.id());
}

absl::StatusOr<v1::ListRolloutsResponse> Api::ListRollouts(const Principal& p,
                                                           const v1::ListRolloutsRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.rollouts->List(r);
}

absl::StatusOr<v1::Rollout> Api::PauseRollout(const Principal& p,
                                              const v1::RolloutActionRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.rollouts->Pause(r, p.actor());
}

absl::StatusOr<v1::Rollout> Api::ResumeRollout(const Principal& p,
                                               const v1::RolloutActionRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.rollouts->Resume(r, p.actor());
}

absl::StatusOr<v1::Rollout> Api::AbortRollout(const Principal& p,
                                              const v1::RolloutActionRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.rollouts->Abort(r, p.actor());
}

absl::StatusOr<v1::Rollout> Api::PromoteRollout(const Principal& p,
                                                const v1::RolloutActionRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  return options_.rollouts->Promote(r, p.actor());
}

absl::StatusOr<v1::ListRolloutEventsResponse> Api::ListRolloutEvents(
    const Principal& p, const v1::ListRolloutEventsRequest& r) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.rollouts->Events(r);
}

absl::StatusOr<std::unique_ptr<store::BlobWriter>> Api::BeginBlobUpload(const Principal& p,
                                                                        int64_t declared_size) {
  RETURN_IF_ERROR(RequireRole(p, v1::OPERATOR));
  if (declared_size > options_.max_upload_bytes) {
    return PayloadTooLargeError(absl::StrCat("upload of ", declared_size,
                                             " bytes exceeds the limit of ",
                                             options_.max_upload_bytes, " bytes"));
  }
  return options_.blobs->NewWriter(options_.max_upload_bytes);
}

absl::StatusOr<v1::Blob> Api::FinishBlobUpload(store::BlobWriter& writer,
                                               absl::string_view expected_digest) {
  if (!expected_digest.empty()) RETURN_IF_ERROR(CheckDigest("expected digest", expected_digest));
  ASSIGN_OR_RETURN(store::BlobInfo info, writer.Commit(expected_digest));
  v1::Blob blob;
  blob.set_digest(info.digest);
  blob.set_size(info.size);
  return blob;
}

absl::StatusOr<std::unique_ptr<store::BlobReader>> Api::OpenBlob(const Principal& p,
                                                                 absl::string_view digest) {
  RETURN_IF_ERROR(RequireRole(p, v1::VIEWER));
  return options_.blobs->Open(digest);
}

}  // namespace edgeloop::server
