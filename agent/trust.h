#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace edgeloop::agent {

/// Connects to `server` (HOST:PORT) over TLS without trusting anything yet, takes the
/// certificate chain it presents and returns the PEM of the certificate whose SHA-256 pin
/// equals `pin` (from the enrollment token). PERMISSION_DENIED when no certificate matches:
/// the agent is talking to another server, and must not enroll there. UNAVAILABLE when the
/// server cannot be reached.
absl::StatusOr<std::string> FetchPinnedCa(const std::string& server, const std::string& pin);

}  // namespace edgeloop::agent
