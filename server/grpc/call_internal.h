#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status.h"
#include "server/api.h"
#include "server/metrics.h"

namespace edgeloop::server::grpc_api {

/// The one place a Status becomes a gRPC status: absl and gRPC share code numbers.
inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

/// The bearer token from the call's `authorization` metadata.
inline absl::StatusOr<Principal> Authenticate(TokenStore& tokens,
                                              const grpc::ServerContext& context) {
  auto it = context.client_metadata().find("authorization");
  if (it == context.client_metadata().end()) return tokens.Authenticate("");
  return tokens.Authenticate(absl::string_view(it->second.data(), it->second.size()));
}

/// Authenticates, calls `call(principal)`, records metrics and maps the result.
template <typename Resp, typename Call>
grpc::Status Unary(Api& api, ServerMetrics& metrics, const char* method,
                   grpc::ServerContext* context, Resp* response, Call call) {
  const absl::Time start = absl::Now();
  absl::Status status;
  absl::StatusOr<Principal> principal = Authenticate(api.tokens(), *context);
  if (!principal.ok()) {
    status = principal.status();
  } else {
    auto result = call(*principal);
    if (result.ok()) {
      *response = std::move(*result);
    } else {
      status = result.status();
    }
  }
  const absl::Duration elapsed = absl::Now() - start;
  metrics.ObserveGrpc(method, StatusCodeName(status.code()), elapsed);
  const int http = HttpStatusFor(status);
  Log(http >= 500   ? LogLevel::kWarning
      : http >= 400 ? LogLevel::kInfo
                    : LogLevel::kDebug,
      "grpc call",
      {{"method", method},
       {"code", StatusCodeName(status.code())},
       {"duration_ms", absl::ToDoubleMilliseconds(elapsed)},
       {"error", std::string(status.message())}});
  return ToGrpcStatus(status);
}

}  // namespace edgeloop::server::grpc_api
