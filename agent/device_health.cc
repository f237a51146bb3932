#include "agent/device_health.h"

#include <stdlib.h>
#include <sys/statvfs.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"

namespace edgeloop::agent {

v1::DeviceHealth ReadDeviceHealth(const std::string& state_dir, absl::Duration uptime) {
  v1::DeviceHealth health;
  health.set_uptime_seconds(absl::ToDoubleSeconds(uptime));
  double load[1] = {0};
  if (::getloadavg(load, 1) == 1) health.set_load1(load[0]);
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    int64_t kb = 0;
    if (absl::StartsWith(line, "MemAvailable:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::StripSuffix(line.substr(13), "kB")),
                         &kb)) {
      health.set_mem_available_mb(kb / 1024);
    }
  }
  struct statvfs fs;
  if (::statvfs(state_dir.c_str(), &fs) == 0) {
    health.set_storage_free_mb(static_cast<int64_t>(fs.f_bavail * fs.f_frsize / (1024 * 1024)));
  }
  return health;
}

}  // namespace edgeloop::agent
