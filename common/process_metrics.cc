#include "common/process_metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace edgeloop {

std::string ProcessMetricsText() {
  std::string out;
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may contain spaces) start past the last ')'.
  size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
    // f[0] is field 3 (state); utime=14, stime=15, starttime=22, rss=24 (1-based).
    if (f.size() > 21) {
      const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
      const double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
      double boot_time = 0;
      std::ifstream proc_stat("/proc/stat");
      for (std::string line; std::getline(proc_stat, line);) {
        if (line.rfind("btime ", 0) == 0) boot_time = std::stod(line.substr(6));
      }
      const double start = boot_time + std::stod(f[19]) / ticks;
      const double rss = std::stod(f[21]) * static_cast<double>(::sysconf(_SC_PAGESIZE));
      absl::StrAppend(
          &out,
          "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n",
          "# TYPE process_cpu_seconds_total counter\n", "process_cpu_seconds_total ", cpu, "\n",
          "# HELP process_resident_memory_bytes Resident memory size in bytes.\n",
          "# TYPE process_resident_memory_bytes gauge\n", "process_resident_memory_bytes ", rss,
          "\n",
          "# HELP process_start_time_seconds Start time of the process since unix epoch in "
          "seconds.\n",
          "# TYPE process_start_time_seconds gauge\n", "process_start_time_seconds ",
          absl::StrFormat("%.3f", start), "\n");
    }
  }
  int fds = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (struct dirent* e = ::readdir(dir)) {
      if (e->d_name[0] != '.') ++fds;
    }
    ::closedir(dir);
  }
  absl::StrAppend(&out, "# HELP process_open_fds Number of open file descriptors.\n",
                  "# TYPE process_open_fds gauge\n", "process_open_fds ", fds, "\n");
  return out;
}

}  // namespace edgeloop
