#pragma once

// What the server accepts from a device as a telemetry window: exactly what an agent holding
// the version's monitoring spec can produce, so that nothing a device sends (a bug, a disk
// fault, a hostile device) can corrupt the aggregates every other device's windows merge into.
#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop::telemetry {

struct WindowBounds {
  /// A window that ended longer ago than this is refused: past the raw retention it would be
  /// deleted at once, and aggregates that old are no longer read.
  absl::Duration max_age = absl::Hours(24 * 7);
  /// Clock skew allowed: a window may end at most this far in the future.
  absl::Duration max_skew = absl::Minutes(5);
  absl::Duration max_length = absl::Hours(24);
  /// No single count may exceed this (2^40: a million calls a second for twelve days).
  int64_t max_count = int64_t{1} << 40;
  /// Raw values per feature a window may carry once its version has a reference: devices
  /// still counting under the spec without one (they hear of the reference at their next
  /// sync) send them for a window or two.
  int max_samples = 256;
};

/// OK when `window` is one a device monitoring with `spec` could have sent at `now`; else
/// OUT_OF_RANGE for a window from the future or from before the retention, INVALID_ARGUMENT
/// saying what else is wrong: the id, model or version not the spec's, a length or start
/// that is no window's, a negative or absurd
/// count, parts that add up to more than the calls, a histogram with the wrong bin count, an
/// unknown or repeated feature, too many or non-finite samples.
absl::Status CheckWindow(const v1::TelemetryWindow& window, const v1::MonitoringSpec& spec,
                         absl::Time now, const WindowBounds& bounds = {});

}  // namespace edgeloop::telemetry
