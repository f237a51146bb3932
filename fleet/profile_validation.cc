#include "fleet/profile_validation.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "common/status.h"

namespace edgeloop::fleet {
namespace {

constexpr size_t kMaxProfileBytes = 64 * 1024;

absl::Status Text(const char* field, const std::string& value, size_t max) {
  if (value.size() <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("profile.", field, " is longer than ", max, " characters"));
}

absl::Status Range(const char* field, int64_t value, int64_t max) {
  if (value >= 0 && value <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("profile.", field, " = ", value, " is outside 0..", max));
}

}  // namespace

absl::Status ValidateProfile(const v1::HardwareProfile& p) {
  if (p.ByteSizeLong() > kMaxProfileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("profile is ", p.ByteSizeLong(), " bytes; at most 64 KiB"));
  }
  if (p.arch().empty()) return absl::InvalidArgumentError("profile.arch is empty");
  RETURN_IF_ERROR(Text("arch", p.arch(), 32));
  RETURN_IF_ERROR(Text("cpuModel", p.cpu_model(), 256));
  RETURN_IF_ERROR(Text("os", p.os(), 256));
  RETURN_IF_ERROR(Text("kernel", p.kernel(), 256));
  RETURN_IF_ERROR(Text("glibc", p.glibc(), 64));
  RETURN_IF_ERROR(Text("agentVersion", p.agent_version(), 64));
  RETURN_IF_ERROR(Text("target", p.target(), 64));
  if (p.isa_features_size() > 512)
    return absl::InvalidArgumentError("profile has more than 512 ISA features");
  for (const auto& f : p.isa_features()) RETURN_IF_ERROR(Text("isaFeatures[]", f, 64));
  if (p.accelerators_size() > 64)
    return absl::InvalidArgumentError("profile has more than 64 accelerators");
  for (const auto& a : p.accelerators()) {
    RETURN_IF_ERROR(Text("accelerators[].kind", a.kind(), 32));
    RETURN_IF_ERROR(Text("accelerators[].path", a.path(), 256));
  }
  RETURN_IF_ERROR(Range("cores", p.cores(), 4096));
  RETURN_IF_ERROR(Range("ramMb", p.ram_mb(), int64_t{64} << 20));         // 64 TiB
  RETURN_IF_ERROR(Range("storageMb", p.storage_mb(), int64_t{1} << 40));  // 1 EiB
  RETURN_IF_ERROR(Range("storageTotalMb", p.storage_total_mb(), int64_t{1} << 40));
  RETURN_IF_ERROR(ValidateLabels(p.labels()));
  // hw.* names the hardware fields selectors read: a device labelling itself hw.target=... would
  // be picked by another target's rollouts. edgeloop.* is kept for the server's own labels.
  for (const auto& [key, value] : p.labels()) {
    if (absl::StartsWith(key, "hw.") || absl::StartsWith(key, "edgeloop.")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label \"", key, "\" is reserved: devices may not set hw.* or edgeloop.* labels"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateDeviceState(const v1::DeviceState& s) {
  if (s.ByteSizeLong() > kMaxProfileBytes)
    return absl::InvalidArgumentError("device state is larger than 64 KiB");
  if (s.modules_size() > 256)
    return absl::InvalidArgumentError("device reports more than 256 modules");
  if (s.agent_version().size() > 64)
    return absl::InvalidArgumentError("state.agentVersion is too long");
  return absl::OkStatus();
}

}  // namespace edgeloop::fleet
