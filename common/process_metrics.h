#pragma once

#include <string>

namespace edgeloop {

/// The standard process metrics (process_cpu_seconds_total, process_resident_memory_bytes,
/// process_start_time_seconds, process_open_fds) in Prometheus text format, read from /proc
/// at call time, under the names Prometheus client libraries use.
std::string ProcessMetricsText();

}  // namespace edgeloop
