#include "fleet/sync_pacer.h"

#include <algorithm>

namespace edgeloop::fleet {
namespace {
constexpr absl::Duration kWindow = absl::Seconds(10);
}

void SyncPacer::Trim(absl::Time now) {
  while (!recent_.empty() && recent_.front() < now - kWindow) recent_.pop_front();
}

double SyncPacer::Rate() {
  std::lock_guard lock(mu_);
  Trim(clock_->Now());
  return static_cast<double>(recent_.size()) / absl::ToDoubleSeconds(kWindow);
}

absl::Duration SyncPacer::Next() {
  std::lock_guard lock(mu_);
  const absl::Time now = clock_->Now();
  Trim(now);
  recent_.push_back(now);
  const double rate = static_cast<double>(recent_.size()) / absl::ToDoubleSeconds(kWindow);
  const double load = std::max(1.0, rate / capacity_);
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  return base_ * (load * jitter(random_));
}

}  // namespace edgeloop::fleet
