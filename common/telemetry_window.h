#pragma once

// Telemetry windows (telemetry.proto) are counts that merge by adding: the agent merges the
// two parts of a window a restart split, the server merges windows into its aggregates.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop {

/// The format of TelemetryWindow that agents write and the server reads
/// (ReportTelemetryRequest.format). Fields may be added within a format; a change in what a
/// field means is a new format.
inline constexpr int kTelemetryFormat = 1;

/// A window's id, unique per device: "<model>/<version>/<start_ms>".
std::string TelemetryWindowId(absl::string_view model, int64_t version, int64_t start_ms);

/// Adds `from`'s counts to `into`'s, feature by feature (by name), and widens `into`'s end to
/// cover `from`'s. A histogram empty in `into` takes `from`'s; two of different lengths (binned
/// on different edges) are not comparable and `into`'s is kept. Raw samples are appended up
/// to `max_samples` per feature (0 drops them). Shadowed candidates add up by version.
void MergeWindow(v1::TelemetryWindow& into, const v1::TelemetryWindow& from, int max_samples);

}  // namespace edgeloop
