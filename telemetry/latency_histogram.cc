#include "telemetry/latency_histogram.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace edgeloop::telemetry {

absl::StatusOr<double> LatencyQuantile(const std::vector<int64_t>& counts, double q) {
  if (counts.size() != kLatencyBuckets) {
    return absl::InvalidArgumentError(
        absl::StrCat("a latency histogram has ", kLatencyBuckets, " buckets, not ", counts.size()));
  }
  if (!(q > 0 && q < 1)) return absl::InvalidArgumentError("a quantile is in (0, 1)");
  int64_t total = 0;
  for (const int64_t c : counts) {
    if (c < 0) return absl::InvalidArgumentError("a negative bucket count");
    total += c;
  }
  if (total == 0) return absl::InvalidArgumentError("no latencies");
  const double rank = q * static_cast<double>(total);
  double below = 0;
  for (size_t b = 0; b < counts.size(); ++b) {
    const double in = static_cast<double>(counts[b]);
    if (below + in >= rank && in > 0) {
      if (b == kLatencyBoundsUs.size()) return kLatencyBoundsUs.back();
      const double lower = b == 0 ? 0 : kLatencyBoundsUs[b - 1];
      return lower + (kLatencyBoundsUs[b] - lower) * (rank - below) / in;
    }
    below += in;
  }
  return kLatencyBoundsUs.back();
}

}  // namespace edgeloop::telemetry
