#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop {

/// The target classes modules are compiled for. A module built for a class runs on every
/// device of that class or a higher one in the same family.
inline constexpr absl::string_view kTargetClasses[] = {
    "x86_64-v1", "x86_64-v2", "x86_64-v3", "x86_64-v4", "aarch64-v8", "aarch64-v8.2-dotprod",
    "armv7-neon"};

/// The highest target class a profile supports, from its architecture and ISA features:
/// x86-64 psABI levels v1–v4 (v3 and v4 only when the OS enables the AVX / AVX-512 state,
/// which the feature reader checks with xgetbv), aarch64 with or without the dot-product
/// extension, armv7 with NEON. "" when the machine reaches none of them (e.g. armv7 without
/// NEON), with the reason in `*why`.
std::string DeriveTargetClass(const v1::HardwareProfile& profile, std::string* why = nullptr);

/// "sha256:<hex>" of the profile's deterministic serialisation: how agent and server tell
/// whether the stored profile is current without sending it on every sync.
std::string ProfileHash(const v1::HardwareProfile& profile);

/// True when a module built for `module_target` runs on a device of class `device_target`.
bool TargetRunsOn(absl::string_view module_target, absl::string_view device_target);

}  // namespace edgeloop
