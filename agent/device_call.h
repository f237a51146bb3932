#pragma once

// How the agent makes its calls to the server's device port.
#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace edgeloop::agent {

inline absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

/// A context for one unary call. The deadline is on the system clock, the one gRPC reads.
inline std::unique_ptr<grpc::ClientContext> CallContext(
    absl::Duration timeout = absl::Seconds(30)) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return c;
}

}  // namespace edgeloop::agent
