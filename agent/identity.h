#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace edgeloop::agent {

/// Who this device is to the server: its id, its private key (never leaves the device), the
/// certificate and CA that Enroll returned, and the module signing key it pinned then (empty
/// for a device enrolled before keys were pinned; AcceptSigningKey).
struct DeviceIdentity {
  std::string device_id;
  std::string key_pem;
  std::string cert_pem;
  std::string ca_pem;
  std::string module_signing_key;
};

/// Reads the identity from `<state_dir>/identity/`; nullopt when the device never enrolled.
absl::StatusOr<std::optional<DeviceIdentity>> LoadIdentity(const std::string& state_dir);

/// Writes it atomically: key (0600), certificate, CA and pinned key first, the device id last,
/// so an interrupted write never looks like a finished enrollment.
absl::Status SaveIdentity(const std::string& state_dir, const DeviceIdentity& identity);

/// A private key kept before enrollment, so a retried Enroll (after a lost reply) reuses it.
absl::StatusOr<std::string> PendingKey(const std::string& state_dir);

}  // namespace edgeloop::agent
