#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edgeloop {

/// An enrollment token as handed to a device owner: "<id>.<secret>.<ca pin hex>". The id names
/// the token, the secret proves possession (the server keeps its SHA-256), and the pin is the
/// SHA-256 of the server CA's certificate, so the agent can check it talks to the right server
/// before it trusts anything (as kubeadm's discovery hash does).
struct EnrollmentTokenParts {
  std::string id;      // 16 hex
  std::string secret;  // 64 hex
  std::string ca_pin;  // "sha256:<64 hex>"
};

std::string FormatEnrollmentToken(const EnrollmentTokenParts& parts);
/// INVALID_ARGUMENT when the text is not of that form.
absl::StatusOr<EnrollmentTokenParts> ParseEnrollmentToken(absl::string_view token);

}  // namespace edgeloop
