#pragma once

// A version registered without a validation set has no reference to compare its devices with.
// Its monitoring spec then asks devices for raw values of each monitored feature (a few per
// window); once enough have arrived, the server takes the version's reference from them,
// marked FIRST_WINDOWS (never presented as a validation set's), and the spec that devices get
// from then on has its edges. Windows counted before that stay as they were sent: their raw
// values are never binned after the fact into the same series as the devices' own counts.
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop::telemetry {

/// The reference `windows` (of one version, monitored with `spec`) give, or nullopt while some
/// monitored feature has fewer than `min_samples` raw values among them. For each feature: its
/// decile edges and histogram on its values (as a validation set's, compiler/reference_statistics);
/// the summed prediction class counts and confidence histogram when the windows have them (a
/// classifier's). A regressor's devices bin no predictions without edges, so its reference has
/// none. `samples` is the number of calls the windows counted.
absl::StatusOr<std::optional<v1::ReferenceStatistics>> ReferenceFromWindows(
    const std::vector<v1::TelemetryWindow>& windows, const v1::MonitoringSpec& spec,
    int min_samples);

}  // namespace edgeloop::telemetry
