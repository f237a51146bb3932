#include "server/grpc/rollout_service.h"

#include "server/grpc/call_internal.h"

namespace edgeloop::server::grpc_api {

grpc::Status RolloutService::CreateRollout(grpc::ServerContext* c, const v1::RolloutSpec* r,
                                           v1::Rollout* out) {
  return Unary(api_, metrics_, "CreateRollout", c, out,
               [&](const Principal& p) { return api_.CreateRollout(p, *r); });
}

grpc::Status RolloutService::GetRollout(grpc::ServerContext* c, const v1::GetRolloutRequest* r,
                                        v1::Rollout* out) {
  return Unary(api_, metrics_, "GetRollout", c, out,
               [&](const Principal& p) { return api_.GetRollout(p, *r); });
}

grpc::Status RolloutService::ListRollouts(grpc::ServerContext* c, const v1::ListRolloutsRequest* r,
                                          v1::ListRolloutsResponse* out) {
  return Unary(api_, metrics_, "ListRollouts", c, out,
               [&](const Principal& p) { return api_.ListRollouts(p, *r); });
}

grpc::Status RolloutService::PauseRollout(grpc::ServerContext* c, const v1::RolloutActionRequest* r,
                                          v1::Rollout* out) {
  return Unary(api_, metrics_, "PauseRollout", c, out,
               [&](const Principal& p) { return api_.PauseRollout(p, *r); });
}

grpc::Status RolloutService::ResumeRollout(grpc::ServerContext* c,
                                           const v1::RolloutActionRequest* r, v1::Rollout* out) {
  return Unary(api_, metrics_, "ResumeRollout", c, out,
               [&](const Principal& p) { return api_.ResumeRollout(p, *r); });
}

grpc::Status RolloutService::AbortRollout(grpc::ServerContext* c, const v1::RolloutActionRequest* r,
                                          v1::Rollout* out) {
  return Unary(api_, metrics_, "AbortRollout", c, out,
               [&](const Principal& p) { return api_.AbortRollout(p, *r); });
}

grpc::Status RolloutService::PromoteRollout(grpc::ServerContext* c,
                                            const v1::RolloutActionRequest* r, v1::Rollout* out) {
  return Unary(api_, metrics_, "PromoteRollout", c, out,
               [&](const Principal& p) { return api_.PromoteRollout(p, *r); });
}

grpc::Status RolloutService::ListRolloutEvents(grpc::ServerContext* c,
                                               const v1::ListRolloutEventsRequest* r,
                                               v1::ListRolloutEventsResponse* out) {
  return Unary(api_, metrics_, "ListRolloutEvents", c, out,
               [&](const Principal& p) { return api_.ListRolloutEvents(p, *r); });
}

}  // namespace edgeloop::server::grpc_api
