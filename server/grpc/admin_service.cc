#include "server/grpc/admin_service.h"

#include "server/grpc/call_internal.h"

namespace edgeloop::server::grpc_api {

grpc::Status AdminService::CreateToken(grpc::ServerContext* c, const v1::CreateTokenRequest* r,
                                       v1::CreateTokenResponse* out) {
  return Unary(api_, metrics_, "CreateToken", c, out,
               [&](const Principal& p) { return api_.CreateToken(p, *r); });
}
grpc::Status AdminService::ListTokens(grpc::ServerContext* c, const v1::ListTokensRequest* r,
                                      v1::ListTokensResponse* out) {
  return Unary(api_, metrics_, "ListTokens", c, out,
               [&](const Principal& p) { return api_.ListTokens(p, *r); });
}
grpc::Status AdminService::RevokeToken(grpc::ServerContext* c, const v1::RevokeTokenRequest* r,
                                       v1::ApiToken* out) {
  return Unary(api_, metrics_, "RevokeToken", c, out,
               [&](const Principal& p) { return api_.RevokeToken(p, *r); });
}
grpc::Status AdminService::Ping(grpc::ServerContext* c, const v1::PingRequest* r,
                                v1::PingResponse* out) {
  return Unary(api_, metrics_, "Ping", c, out,
               [&](const Principal& p) { return api_.Ping(p, *r); });
}

}  // namespace edgeloop::server::grpc_api
