#pragma once

#include "edgeloop/v1/device.grpc.pb.h"
#include "server/api.h"
#include "server/metrics.h"

namespace edgeloop::server::grpc_api {

/// edgeloop.v1.FleetService (operators) over the shared Api.
class FleetService final : public v1::FleetService::Service {
 public:
  FleetService(Api* api, ServerMetrics* metrics) : api_(*api), metrics_(*metrics) {}

  grpc::Status CreateEnrollmentToken(grpc::ServerContext* c,
                                     const v1::CreateEnrollmentTokenRequest* r,
                                     v1::CreateEnrollmentTokenResponse* out) override;
  grpc::Status ListEnrollmentTokens(grpc::ServerContext* c,
                                    const v1::ListEnrollmentTokensRequest* r,
                                    v1::ListEnrollmentTokensResponse* out) override;
  grpc::Status RevokeEnrollmentToken(grpc::ServerContext* c,
                                     const v1::RevokeEnrollmentTokenRequest* r,
                                     v1::EnrollmentToken* out) override;
  grpc::Status ListDevices(grpc::ServerContext* c, const v1::ListDevicesRequest* r,
                           v1::ListDevicesResponse* out) override;
  grpc::Status GetDevice(grpc::ServerContext* c, const v1::GetDeviceRequest* r,
                         v1::Device* out) override;
  grpc::Status UpdateDevice(grpc::ServerContext* c, const v1::UpdateDeviceRequest* r,
                            v1::Device* out) override;
  grpc::Status DecommissionDevice(grpc::ServerContext* c, const v1::DecommissionDeviceRequest* r,
                                  v1::Device* out) override;
  grpc::Status AssignModel(grpc::ServerContext* c, const v1::AssignModelRequest* r,
                           v1::Assignment* out) override;
  grpc::Status ListAssignments(grpc::ServerContext* c, const v1::ListAssignmentsRequest* r,
                               v1::ListAssignmentsResponse* out) override;
  grpc::Status RollbackDevice(grpc::ServerContext* c, const v1::RollbackDeviceRequest* r,
                              v1::Assignment* out) override;

 private:
  Api& api_;
  ServerMetrics& metrics_;
};

}  // namespace edgeloop::server::grpc_api
