#pragma once

// Latency as devices report it: counts in fixed, log-spaced buckets that every agent and the
// server share, so windows from any device merge by adding counts. Part of the device
// protocol, like the monitored features.
#include <array>
#include <cstddef>

namespace edgeloop {

/// Upper bounds (microseconds, inclusive) of the latency buckets: 1-2-5 steps from 1 µs to
/// 100 s; one more bucket past the last bound counts everything slower.
inline constexpr std::array<double, 25> kLatencyBoundsUs = {
    1,   2,   5,   10,  20,  50,  100, 200, 500, 1e3, 2e3, 5e3, 1e4,
    2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 2e7, 5e7, 1e8};
inline constexpr size_t kLatencyBuckets = kLatencyBoundsUs.size() + 1;

/// The bucket a latency falls in (no allocation: the agent calls it per call).
size_t LatencyBucket(double microseconds);

}  // namespace edgeloop
