#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace edgeloop {

/// Source of the current time, injected so tests control it instead of sleeping.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  /// Waits `d` of this clock's time (a fake clock just moves on by `d`).
  virtual void SleepFor(absl::Duration d) const = 0;
};

class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  void SleepFor(absl::Duration d) const override { absl::SleepFor(d); }
  /// Process-wide instance; never destroyed.
  static const Clock* Get() {
    static const SystemClock* clock = new SystemClock();
    return clock;
  }
};

}  // namespace edgeloop
