#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::sim {

/// A hardware profile an agent on a device of `target` class would report (the ISA features
/// that class needs, `ram_mb`, `labels`, and the label fleetsim=true).
/// INVALID_ARGUMENT for an unknown class.
absl::StatusOr<v1::HardwareProfile> ProfileFor(const std::string& target, int64_t ram_mb,
                                               const std::map<std::string, std::string>& labels);

}  // namespace edgeloop::sim
