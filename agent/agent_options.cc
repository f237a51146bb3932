#include "agent/agent_options.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/status.h"

namespace edgeloop::agent {

absl::StatusOr<AgentOptions> ParseAgentOptions(const std::vector<std::string>& args, bool* help,
                                               std::string* usage) {
  AgentOptions o;
  std::string labels;
  FlagSet f;
  f.String("server", &o.server, "HOST:PORT of the server's device listener (its --device-listen)");
  f.String("state-dir", &o.state_dir,
           "where identity and state are kept (default /var/lib/edgeloop)");
  f.String("enroll-token", &o.enroll_token,
           "enrollment token from `edgeloop token create --enroll`; needed only until enrolled");
  f.String("ca-file", &o.ca_file, "PEM of the server CA to trust, instead of the pin in the token");
  f.String("metrics-listen", &o.metrics_listen,
           "HOST:PORT for Prometheus /metrics (port 0 = any free port)");
  f.String("labels", &labels, "k=v,k=v labels this device reports");
  f.String("serial", &o.serial,
           "hardware serial number (default: read from DMI / device tree / machine-id)");
  f.String("log-level", &o.log_level, "debug|info|warning|error (default info)");
  f.Bool("print-profile", &o.print_profile,
         "print the hardware profile and target class as JSON and exit");
  f.Bool("enroll-only", &o.enroll_only,
         "enroll if not enrolled yet, then exit (used by install.sh)");
  f.Int("max-backoff-seconds", &o.max_backoff_seconds, "longest wait between retries (default 60)");
  f.String("socket", &o.socket,
           "Unix socket of the local inference API (default <state-dir>/agent.sock, mode 0660)");
  f.Int64("max-download-kbps", &o.max_download_kbps,
          "bandwidth cap for module downloads in kbit/s (default 0: none)");
  f.Int64("telemetry-spool-kb", &o.telemetry_spool_kb,
          "telemetry windows kept on disk until the server has them; past it the oldest are "
          "dropped and counted (default 4096)");
  f.Int("telemetry-spread-seconds", &o.telemetry_spread_seconds,
        "each device sends its closed windows a fixed random delay under this after they close, "
        "so a fleet does not report in one instant (default 10; 0: at once)");
  f.Int64("module-cache-mb", &o.module_cache_mb,
          "disk kept for modules besides the active and previous ones (default 512)");
  f.Int64("memory-budget-kb", &o.memory_budget_kb,
          "memory the loaded modules may use; when a new one does not fit beside the old, calls "
          "wait while the old drains (default 0: what the kernel reports available)");
  f.Int64("rollback-min-calls", &o.rollback_min_calls,
          "calls a new module serves before it is judged; 0 turns local rollback off (default 50)");
  f.Double("rollback-error-rate", &o.rollback_error_rate,
           "roll back locally when a new module fails more calls than this (default 0.05)");
  f.Double("rollback-latency-ratio", &o.rollback_latency_ratio,
           "roll back locally when a new module runs slower than this times the previous "
           "(default 3)");
  f.Double("rollback-latency-slack-us", &o.rollback_latency_slack_us,
           "...and by more than this many microseconds (default 100)");
  *usage = absl::StrCat(
      "usage: edgeloop-agent --server HOST:PORT --state-dir DIR [--enroll-token T] [flags]\n\n",
      f.Usage(), "\nEvery flag can also be set as EDGELOOP_<FLAG>.\n");
  RETURN_IF_ERROR(f.Parse(args, help));
  for (absl::string_view pair : absl::StrSplit(labels, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.first.empty()) return absl::InvalidArgumentError("--labels takes k=v,k=v");
    o.labels[kv.first] = kv.second;
  }
  if (!*help && !o.print_profile && o.server.empty()) {
    return absl::InvalidArgumentError("--server HOST:PORT is required (see --help)");
  }
  if (o.max_backoff_seconds < 1) o.max_backoff_seconds = 1;
  if (o.socket.empty()) o.socket = o.state_dir + "/agent.sock";
  return o;
}

}  // namespace edgeloop::agent
