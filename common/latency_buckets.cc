#include "common/latency_buckets.h"

#include <algorithm>

namespace edgeloop {

size_t LatencyBucket(double microseconds) {
  return static_cast<size_t>(
      std::lower_bound(kLatencyBoundsUs.begin(), kLatencyBoundsUs.end(), microseconds) -
      kLatencyBoundsUs.begin());
}

}  // namespace edgeloop
