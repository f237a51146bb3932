#pragma once

#include "edgeloop/v1/admin.grpc.pb.h"
#include "server/api.h"
#include "server/metrics.h"

namespace edgeloop::server::grpc_api {

/// edgeloop.v1.AdminService over the shared Api.
class AdminService final : public v1::AdminService::Service {
 public:
  AdminService(Api* api, ServerMetrics* metrics) : api_(*api), metrics_(*metrics) {}

  grpc::Status CreateToken(grpc::ServerContext* c, const v1::CreateTokenRequest* r,
                           v1::CreateTokenResponse* out) override;
  grpc::Status ListTokens(grpc::ServerContext* c, const v1::ListTokensRequest* r,
                          v1::ListTokensResponse* out) override;
  grpc::Status RevokeToken(grpc::ServerContext* c, const v1::RevokeTokenRequest* r,
                           v1::ApiToken* out) override;
  grpc::Status Ping(grpc::ServerContext* c, const v1::PingRequest* r,
                    v1::PingResponse* out) override;

 private:
  Api& api_;
  ServerMetrics& metrics_;
};

}  // namespace edgeloop::server::grpc_api
