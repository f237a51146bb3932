#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/flags.h"

namespace edgeloop::bench {

/// Throughput and latency of one measured operation.
struct Measurement {
  int64_t ops = 0;
  int64_t errors = 0;
  double seconds = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double rate() const { return seconds > 0 ? ops / seconds : 0; }
};

/// Runs `clients` threads for `seconds`; each calls the operation `make()` built for it (so
/// every client has its own connection) as fast as it can. An operation returns false on error.
Measurement RunClients(int clients, double seconds,
                       const std::function<std::function<bool()>()>& make);

/// What every benchmark run is configured with.
struct RunSettings {
  double seconds = 3;
  int clients = 4;
  std::vector<std::string> backends = {"sqlite", "postgres"};
  std::string json;
};

/// Parses argv into `flags`, printing usage on --help (to stdout) or a bad flag (to stderr).
/// Returns the exit code when the program should stop (--help: 0, bad flags: 2).
std::optional<int> ParseFlags(FlagSet& flags, int argc, char** argv);

/// Parses the shared flags (--seconds, --clients, --backends, --json) plus those `extra` adds.
/// Returns the exit code when the program should stop (--help: 0, bad flags: 2).
std::optional<int> ParseRunSettings(int argc, char** argv, RunSettings* settings,
                                    const std::function<void(FlagSet&)>& extra = {});

/// Writes a benchmark's results to `path` (atomically, creating its directory; nothing when
/// `path` is empty) and says where, or why not, on stdout or stderr. False when it failed.
bool WriteResults(const std::string& path, const std::string& json);

/// {"ops":…,"errors":…,"seconds":…,"ops_per_second":…,"p50_ms":…,"p99_ms":…}
std::string MeasurementJson(const Measurement& m);

}  // namespace edgeloop::bench
