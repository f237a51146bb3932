#pragma once

#include <string>

#include "absl/time/time.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::agent {

/// What a sync reports about the device's health now: uptime, load, free memory, free storage
/// on the filesystem of `state_dir`.
v1::DeviceHealth ReadDeviceHealth(const std::string& state_dir, absl::Duration uptime);

}  // namespace edgeloop::agent
