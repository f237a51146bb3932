#pragma once

#include "absl/status/status.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::fleet {

/// Checks a profile a device sent before anything of it is stored: sizes of every string
/// and list, plausible numbers (no negative RAM), labels by the label rules, and at most
/// 64 KiB in all. INVALID_ARGUMENT naming the first problem.
absl::Status ValidateProfile(const v1::HardwareProfile& profile);

/// Checks a reported device state the same way.
absl::Status ValidateDeviceState(const v1::DeviceState& state);

}  // namespace edgeloop::fleet
