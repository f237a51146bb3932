#pragma once

#include <deque>
#include <mutex>
#include <random>

#include "absl/time/time.h"
#include "common/clock.h"

namespace edgeloop::fleet {

/// Decides when each device syncs next. The base interval gets ±20 % jitter, so devices that
/// came back together (after an outage) spread out; and it grows in proportion to the load
/// when the server handles more syncs per second than `capacity_per_second`, so a fleet
/// reconnecting at once cannot keep the server saturated. Thread-safe.
class SyncPacer {
 public:
  SyncPacer(absl::Duration base, double capacity_per_second, const Clock* clock, uint64_t seed = 1)
      : base_(base), capacity_(capacity_per_second), clock_(clock), random_(seed) {}

  /// Records one sync now and returns the interval to give that device.
  absl::Duration Next();
  /// Syncs per second over the last window.
  double Rate();

 private:
  void Trim(absl::Time now);

  const absl::Duration base_;
  const double capacity_;
  const Clock* clock_;
  std::mutex mu_;
  std::mt19937_64 random_;
  std::deque<absl::Time> recent_;  // sync times within the window
};

}  // namespace edgeloop::fleet
