#pragma once

namespace edgeloop {

/// A crash point for crash-safety tests: when the environment variable EDGELOOP_FAILPOINT
/// names `point`, the process kills itself with SIGKILL right there, as a power cut would.
/// Costs one string comparison otherwise.
void Failpoint(const char* point);

}  // namespace edgeloop
