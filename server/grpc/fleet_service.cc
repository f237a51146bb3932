#include "server/grpc/fleet_service.h"

#include "server/grpc/call_internal.h"

namespace edgeloop::server::grpc_api {

grpc::Status FleetService::CreateEnrollmentToken(grpc::ServerContext* c,
                                                 const v1::CreateEnrollmentTokenRequest* r,
                                                 v1::CreateEnrollmentTokenResponse* out) {
  return Unary(api_, metrics_, "CreateEnrollmentToken", c, out,
               [&](const Principal& p) { return api_.CreateEnrollmentToken(p, *r); });
}
grpc::Status FleetService::ListEnrollmentTokens(grpc::ServerContext* c,
                                                const v1::ListEnrollmentTokensRequest* r,
                                                v1::ListEnrollmentTokensResponse* out) {
  return Unary(api_, metrics_, "ListEnrollmentTokens", c, out,
               [&](const Principal& p) { return api_.ListEnrollmentTokens(p, *r); });
}
grpc::Status FleetService::RevokeEnrollmentToken(grpc::ServerContext* c,
                                                 const v1::RevokeEnrollmentTokenRequest* r,
                                                 v1::EnrollmentToken* out) {
  return Unary(api_, metrics_, "RevokeEnrollmentToken", c, out,
               [&](const Principal& p) { return api_.RevokeEnrollmentToken(p, *r); });
}
grpc::Status FleetService::ListDevices(grpc::ServerContext* c, const v1::ListDevicesRequest* r,
                                       v1::ListDevicesResponse* out) {
  return Unary(api_, metrics_, "ListDevices", c, out,
               [&](const Principal& p) { return api_.ListDevices(p, *r); });
}
grpc::Status FleetService::GetDevice(grpc::ServerContext* c, const v1::GetDeviceRequest* r,
                                     v1::Device* out) {
  return Unary(api_, metrics_, "GetDevice", c, out,
               [&](const Principal& p) { return api_.GetDevice(p, *r); });
}
grpc::Status FleetService::UpdateDevice(grpc::ServerContext* c, const v1::UpdateDeviceRequest* r,
                                        v1::Device* out) {
  return Unary(api_, metrics_, "UpdateDevice", c, out,
               [&](const Principal& p) { return api_.UpdateDevice(p, *r); });
}
grpc::Status FleetService::DecommissionDevice(grpc::ServerContext* c,
                                              const v1::DecommissionDeviceRequest* r,
                                              v1::Device* out) {
  return Unary(api_, metrics_, "DecommissionDevice", c, out,
               [&](const Principal& p) { return api_.DecommissionDevice(p, *r); });
}

grpc::Status FleetService::AssignModel(grpc::ServerContext* c, const v1::AssignModelRequest* r,
                                       v1::Assignment* out) {
  return Unary(api_, metrics_, "AssignModel", c, out,
               [&](const Principal& p) { return api_.AssignModel(p, *r); });
}

grpc::Status FleetService::RollbackDevice(grpc::ServerContext* c,
                                          const v1::RollbackDeviceRequest* r,
                                          v1::Assignment* out) {
  return Unary(api_, metrics_, "RollbackDevice", c, out,
               [&](const Principal& p) { return api_.RollbackDevice(p, *r); });
}

grpc::Status FleetService::ListAssignments(grpc::ServerContext* c,
                                           const v1::ListAssignmentsRequest* r,
                                           v1::ListAssignmentsResponse* out) {
  return Unary(api_, metrics_, "ListAssignments", c, out,
               [&](const Principal& p) { return api_.ListAssignments(p, *r); });
}

}  // namespace edgeloop::server::grpc_api
