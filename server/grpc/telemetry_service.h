#pragma once

#include "edgeloop/v1/telemetry.grpc.pb.h"
#include "server/api.h"
#include "server/metrics.h"

namespace edgeloop::server::grpc_api {

/// edgeloop.v1.TelemetryService (operators) over the shared Api.
class TelemetryService final : public v1::TelemetryService::Service {
 public:
  TelemetryService(Api* api, ServerMetrics* metrics) : api_(*api), metrics_(*metrics) {}

  grpc::Status GetModelTelemetry(grpc::ServerContext* c, const v1::GetModelTelemetryRequest* r,
                                 v1::ModelTelemetry* out) override;
  grpc::Status GetDeviceTelemetry(grpc::ServerContext* c, const v1::GetDeviceTelemetryRequest* r,
                                  v1::DeviceTelemetryReport* out) override;
  grpc::Status GetDriftSettings(grpc::ServerContext* c, const v1::GetDriftSettingsRequest* r,
                                v1::ModelDriftSettings* out) override;
  grpc::Status SetDriftSettings(grpc::ServerContext* c, const v1::SetDriftSettingsRequest* r,
                                v1::ModelDriftSettings* out) override;

 private:
  Api& api_;
  ServerMetrics& metrics_;
};

}  // namespace edgeloop::server::grpc_api
