#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::agent {

/// The module signing key a device accepts, given the one it pinned (empty: none yet, a device
/// enrolled before keys were pinned) and what a server offers: the pinned key itself, or a new
/// key that the CA (`ca_pem`, the one the enrollment token pinned) endorsed or that the pinned
/// key signed over as its successor. PERMISSION_DENIED, saying why, for anything else: whoever
/// answers as the server cannot make the device trust a key of its own.
absl::StatusOr<std::string> AcceptSigningKey(const std::string& pinned, const std::string& ca_pem,
                                             const v1::SigningKeyTrust& offer);

}  // namespace edgeloop::agent
