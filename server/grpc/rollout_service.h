#pragma once

#include "edgeloop/v1/rollout.grpc.pb.h"
#include "server/api.h"
#include "server/metrics.h"

namespace edgeloop::server::grpc_api {

/// edgeloop.v1.RolloutService (operators) over the shared Api.
class RolloutService final : public v1::RolloutService::Service {
 public:
  RolloutService(Api* api, ServerMetrics* metrics) : api_(*api), metrics_(*metrics) {}

  grpc::Status CreateRollout(grpc::ServerContext* c, const v1::RolloutSpec* r,
                             v1::Rollout* out) override;
  grpc::Status GetRollout(grpc::ServerContext* c, const v1::GetRolloutRequest* r,
                          v1::Rollout* out) override;
  grpc::Status ListRollouts(grpc::ServerContext* c, const v1::ListRolloutsRequest* r,
                            v1::ListRolloutsResponse* out) override;
  grpc::Status PauseRollout(grpc::ServerContext* c, const v1::RolloutActionRequest* r,
                            v1::Rollout* out) override;
  grpc::Status ResumeRollout(grpc::ServerContext* c, const v1::RolloutActionRequest* r,
                             v1::Rollout* out) override;
  grpc::Status AbortRollout(grpc::ServerContext* c, const v1::RolloutActionRequest* r,
                            v1::Rollout* out) override;
  grpc::Status PromoteRollout(grpc::ServerContext* c, const v1::RolloutActionRequest* r,
                              v1::Rollout* out) override;
  grpc::Status ListRolloutEvents(grpc::ServerContext* c, const v1::ListRolloutEventsRequest* r,
                                 v1::ListRolloutEventsResponse* out) override;

 private:
  Api& api_;
  ServerMetrics& metrics_;
};

}  // namespace edgeloop::server::grpc_api
