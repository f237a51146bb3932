#include "common/mutex_checks.h"

#include "absl/synchronization/mutex.h"

namespace edgeloop {

void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace edgeloop
