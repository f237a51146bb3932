#pragma once

// Latency quantiles from the counts devices report on the shared buckets
// (common/latency_buckets.h).
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/latency_buckets.h"

namespace edgeloop::telemetry {

/// The q-quantile (0 < q < 1) of a merged latency histogram, interpolated linearly inside the
/// bucket it falls in (as Prometheus's histogram_quantile does: the first bucket starts at 0,
/// a quantile in the overflow bucket is the last bound). INVALID_ARGUMENT for the wrong number
/// of buckets, a negative count or no counts.
absl::StatusOr<double> LatencyQuantile(const std::vector<int64_t>& counts, double q);

}  // namespace edgeloop::telemetry
