#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "edgeloop/v1/device.pb.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop::agent {

/// The monitoring spec that came with a desired module, once it checks: its signature by the
/// pinned module signing key (over MonitoringSpecStatement, so no other signed text passes
/// for one), it parses, it names the ref's model and version, its window is 1 s to 1 day, and
/// every feature's edges are 2 to 32 finite, non-decreasing values (or none, before the
/// version has a reference). nullopt when the ref carries none; PERMISSION_DENIED for a bad
/// signature, INVALID_ARGUMENT for anything else, each saying why. The module itself does not
/// depend on it: a device with a bad spec serves and monitors nothing of that version.
absl::StatusOr<std::optional<v1::MonitoringSpec>> VerifyMonitoringSpec(
    const v1::ModuleRef& ref, const std::string& signing_key_pem);

}  // namespace edgeloop::agent
