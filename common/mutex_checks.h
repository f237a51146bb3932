#pragma once

namespace edgeloop {

/// Turns off Abseil's lock-order (deadlock) detection for the process. Debian builds Abseil
/// without NDEBUG, so every absl::Mutex lock — gRPC takes many per call — also records lock
/// order in one process-wide graph behind a spin lock: a tenth of the server's CPU in a
/// profile of a 10,000-device rollout, and on a device a lock the idle-priority background
/// thread may hold while serving threads wait for it. Lock-order checking belongs in tests
/// (TSan), not in the binaries: each main calls this before starting threads.
void DisableMutexDeadlockDetection();

}  // namespace edgeloop
