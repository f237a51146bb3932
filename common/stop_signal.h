#pragma once

#include <string>

namespace edgeloop {

/// Blocks SIGTERM and SIGINT for the calling thread and every thread it starts afterwards, and
/// ignores SIGPIPE. Call first thing in main(), so only WaitForStopSignal receives them.
void BlockStopSignals();

/// Blocks until SIGTERM or SIGINT arrives; returns "SIGTERM" or "SIGINT".
std::string WaitForStopSignal();

}  // namespace edgeloop
