#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"

namespace edgeloop::agent {

/// Everything `edgeloop-agent` is configured with (flags, or EDGELOOP_<FLAG> variables).
struct AgentOptions {
  std::string server;  // HOST:PORT of the server's --device-listen
  std::string state_dir = "/var/lib/edgeloop";
  std::string enroll_token;    // needed until the device has enrolled
  std::string ca_file;         // trust this CA instead of the token's pin
  std::string metrics_listen;  // HOST:PORT for /metrics; empty: none
  std::map<std::string, std::string> labels;
  std::string serial;  // default: DMI / device-tree serial, else machine-id
  std::string log_level = "info";
  bool print_profile = false;
  bool enroll_only = false;  // enroll (if needed), then exit: for installers
  int max_backoff_seconds = 60;
  std::string socket;             // the local inference API; default <state-dir>/agent.sock
  int64_t max_download_kbps = 0;  // 0: no cap
  int64_t module_cache_mb = 512;  // modules kept on disk besides the active and previous ones
  int64_t telemetry_spool_kb = 4096;  // closed telemetry windows kept for the server
  int telemetry_spread_seconds = 10;  // a fleet's reports spread over this after windows close
  int64_t memory_budget_kb = 0;   // memory for loaded modules; 0: MemAvailable
  // Local rollback after a swap (see ModelHost::RollbackPolicy); min calls 0 turns it off.
  int64_t rollback_min_calls = 50;
  double rollback_error_rate = 0.05;
  double rollback_latency_ratio = 3.0;
  double rollback_latency_slack_us = 100;
  // When to sync, renew, retry and refresh the profile. gRPC deadlines stay on the system
  // clock, which is the one gRPC reads.
  const Clock* clock = SystemClock::Get();
};

/// INVALID_ARGUMENT for bad flags; sets `*help` on --help. `*usage` gets the --help text.
absl::StatusOr<AgentOptions> ParseAgentOptions(const std::vector<std::string>& args, bool* help,
                                               std::string* usage);

}  // namespace edgeloop::agent
