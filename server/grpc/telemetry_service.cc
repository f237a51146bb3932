#include "server/grpc/telemetry_service.h"

#include "server/grpc/call_internal.h"

namespace edgeloop::server::grpc_api {

grpc::Status TelemetryService::GetModelTelemetry(grpc::ServerContext* c,
                                                 const v1::GetModelTelemetryRequest* r,
                                                 v1::ModelTelemetry* out) {
  return Unary(api_, metrics_, "GetModelTelemetry", c, out,
               [&](const Principal& p) { return api_.GetModelTelemetry(p, *r); });
}

grpc::Status TelemetryService::GetDeviceTelemetry(grpc::ServerContext* c,
                                                  const v1::GetDeviceTelemetryRequest* r,
                                                  v1::DeviceTelemetryReport* out) {
  return Unary(api_, metrics_, "GetDeviceTelemetry", c, out,
               [&](const Principal& p) { return api_.GetDeviceTelemetry(p, *r); });
}

grpc::Status TelemetryService::GetDriftSettings(grpc::ServerContext* c,
                                                const v1::GetDriftSettingsRequest* r,
                                                v1::ModelDriftSettings* out) {
  return Unary(api_, metrics_, "GetDriftSettings", c, out,
               [&](const Principal& p) { return api_.GetDriftSettings(p, *r); });
}

grpc::Status TelemetryService::SetDriftSettings(grpc::ServerContext* c,
                                                const v1::SetDriftSettingsRequest* r,
                                                v1::ModelDriftSettings* out) {
  return Unary(api_, metrics_, "SetDriftSettings", c, out,
               [&](const Principal& p) { return api_.SetDriftSettings(p, *r); });
}

}  // namespace edgeloop::server::grpc_api
