#pragma once

#include <mutex>

#include "common/clock.h"

namespace edgeloop::testing {

/// A clock that moves only when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  absl::Time Now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  /// A sleeper on a fake clock wakes at once, the clock moved on by `d`.
  void SleepFor(absl::Duration d) const override {
    std::lock_guard lock(mu_);
    now_ += d;
  }
  void Advance(absl::Duration d) {
    std::lock_guard lock(mu_);
    now_ += d;
  }

 private:
  mutable std::mutex mu_;
  mutable absl::Time now_;
};

}  // namespace edgeloop::testing
