#pragma once

#include <string>
#include <vector>

#include "edgeloop/v1/device.pb.h"

namespace edgeloop::fleet::testing {

/// Hardware profiles as agents on real boards report them, for tests of the fleet and of
/// what builds on it (the CI stage plans per class).
v1::HardwareProfile Profile(const std::string& arch, std::vector<std::string> features,
                            int64_t ram_mb);
v1::HardwareProfile Pi4();   // aarch64-v8
v1::HardwareProfile Orin();  // aarch64-v8.2-dotprod, with a GPU

}  // namespace edgeloop::fleet::testing
