#include "server/options.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/status.h"
#include "compiler/sandbox.h"

namespace edgeloop::server {
namespace {

void Register(FlagSet& f, ServerOptions& o) {
  f.String("data-dir", &o.data_dir, "state directory (default ./var)");
  f.String(
      "db", &o.db,
      "sqlite:///abs/path.db (default <data-dir>/edgeloop.db) or postgresql://user@host:port/db");
  f.String("blobs", &o.blobs, "file:///abs/dir (default <data-dir>/blobs) or postgresql");
  f.String("http-listen", &o.http_listen,
           "REST, /metrics, /healthz, /readyz (default 127.0.0.1:8080; port 0 = any free port)");
  f.String("grpc-listen", &o.grpc_listen, "operator gRPC (default 127.0.0.1:9090)");
  f.String("device-listen", &o.device_listen,
           "device gRPC over TLS, for agents (default 0.0.0.0:7443)");
  f.String(
      "device-hostnames", &o.device_hostnames,
      "names and addresses agents dial, put in the TLS certificate (default localhost,127.0.0.1)");
  f.Int("rollout-interval-ms", &o.rollout_interval_ms,
        "the rollout controller judges every rollout this often (default 1000)");
  f.Int("watch-poll-seconds", &o.watch_poll_seconds,
        "each device Watch stream rereads its desired state this often, beside the changes "
        "pushed at once from this replica and (PostgreSQL) from the others (default 15)");
  f.Int("watch-check-threads", &o.watch_check_threads,
        "threads that read a watching device's new desired state and push it; they wait on the "
        "database as much as they compute (default 2)");
  f.Int("telemetry-window-seconds", &o.telemetry_window_seconds,
        "devices summarise what their models see in windows this long (default 60)");
  f.String("telemetry-cohort-label", &o.telemetry_cohort_label,
           "device label whose value splits telemetry into cohorts (default site; empty: none)");
  f.Int("telemetry-max-cohorts", &o.telemetry_max_cohorts,
        "cohort values with a series of their own; later ones are counted as _other (default 32)");
  f.Int("telemetry-bucket-seconds", &o.telemetry_bucket_seconds,
        "telemetry aggregates sum device windows over buckets this long (default 60)");
  f.Int("telemetry-raw-retention-hours", &o.telemetry_raw_retention_hours,
        "raw device windows are kept this long, and older ones refused (default 168)");
  f.Int("telemetry-aggregate-retention-days", &o.telemetry_aggregate_retention_days,
        "telemetry aggregates are kept this long (default 90)");
  f.Int("telemetry-device-windows-per-minute", &o.telemetry_device_windows_per_minute,
        "windows one device may send a minute (burst 1024, for a device back from an outage); "
        "more are answered RESOURCE_EXHAUSTED (default 120)");
  f.Int("telemetry-reference-min-samples", &o.telemetry_reference_min_samples,
        "a version registered without a validation set takes its reference from its devices' "
        "first windows once each feature has this many raw values (default 200)");
  f.Int("sync-interval-seconds", &o.sync_interval_seconds,
        "base interval between device syncs (default 30; jittered, longer under load)");
  f.Int("sync-capacity-per-second", &o.sync_capacity_per_second,
        "syncs per second above which intervals stretch (default 500)");
  f.Duration("device-cert-validity", &o.device_cert_validity,
             "validity of device certificates, e.g. 720h (default 30 days; agents renew at 2/3)");
  f.Int("offline-after-seconds", &o.offline_after_seconds,
        "a device unseen this long is offline (default 90)");
  f.Int64("max-upload-bytes", &o.max_upload_bytes, "largest blob accepted (default 2 GiB)");
  f.Int64("max-json-body-bytes", &o.max_json_body_bytes,
          "largest JSON request body (default 4 MiB)");
  f.Int("http-threads", &o.http_threads, "REST worker threads (default 8)");
  f.Int("http-idle-timeout-seconds", &o.http_idle_timeout_seconds,
        "time a client has to send a request's whole header, keep-alive wait included (default "
        "60)");
  f.Int("http-body-timeout-seconds", &o.http_body_timeout_seconds,
        "time for a JSON body, and for each 64 KiB of a blob upload or download (default 30)");
  f.Int("http-max-connections", &o.http_max_connections,
        "REST connections served at once; more are answered 503 (default 1024)");
  f.Int("db-pool-size", &o.db_pool_size, "database connections (default 16)");
  f.Int("db-acquire-timeout-seconds", &o.db_acquire_timeout_seconds,
        "time a request waits for a free database connection before it is answered 503 "
        "(default 10)");
  f.Int("db-statement-timeout-seconds", &o.db_statement_timeout_seconds,
        "PostgreSQL statements running longer are cancelled (default 60; migrations exempt)");
  f.Int("device-threads", &o.device_threads,
        "threads for device Enroll/Sync/Renew/FetchModule calls; more at once are refused "
        "RESOURCE_EXHAUSTED (default 64; Watch streams need none)");
  f.Int("device-streams-per-device", &o.device_streams_per_device,
        "Watch and FetchModule streams one device may hold open (default 4)");
  f.Int("device-keepalive-seconds", &o.device_keepalive_seconds,
        "keepalive ping interval on device connections; a peer that does not answer is "
        "dropped (default 60)");
  f.String("log-level", &o.log_level, "debug|info|warning|error (default info)");
  f.String("role", &o.role, "all (API, devices, compile workers) or worker (compile workers only)");
  f.String("compile-targets", &o.compile_targets,
           "target classes every version is compiled for besides the fleet's (default x86_64-v2)");
  f.Int("compile-workers", &o.compile_workers,
        "compile jobs run at once in this process (default 1)");
  f.String("compile-binary", &o.compile_binary,
           "the model compiler (default: edgeloop-compile next to this binary)");
  f.String("compile-sandbox", &o.compile_sandbox,
           "auto (every sandbox control this machine allows) or require (refuse to start "
           "without namespaces and the syscall filter); see docs/security.md");
  f.Bool("rotate-signing-key", &o.rotate_signing_key,
         "replace the module signing key now: the old key signs the hand-over devices follow, "
         "every module's manifest is signed again (docs/operations.md)");
  f.Int("validation-samples", &o.validation_samples,
        "samples of a version's validation set each module is checked on (default 256)");
  f.Int("shutdown-grace-seconds", &o.shutdown_grace_seconds,
        "time requests in flight get on SIGTERM (default 20)");
}

}  // namespace

std::string ServerUsage() {
  ServerOptions options;
  FlagSet flags;
  Register(flags, options);
  return absl::StrCat(
      "usage: edgeloop-server [flags]\n\n", flags.Usage(),
      "\nEvery flag can be set as EDGELOOP_<FLAG> (e.g. EDGELOOP_DATA_DIR); flags win.\n"
      "The admin token is EDGELOOP_ADMIN_TOKEN, or is written to <data-dir>/admin.token on first "
      "start.\nChosen ports are written to <data-dir>/ports.json.\n");
}

absl::StatusOr<ServerOptions> ParseServerOptions(const std::vector<std::string>& args, bool* help) {
  ServerOptions options;
  FlagSet flags;
  Register(flags, options);
  RETURN_IF_ERROR(flags.Parse(args, help));
  if (*help) return options;
  if (options.role != "all" && options.role != "worker") {
    return absl::InvalidArgumentError("--role must be all or worker");
  }
  RETURN_IF_ERROR(compiler::ParseSandboxMode(options.compile_sandbox).status());
  for (const auto& [flag, value] :
       {std::pair{"device-threads", options.device_threads},
        {"device-streams-per-device", options.device_streams_per_device},
        {"device-keepalive-seconds", options.device_keepalive_seconds},
        {"db-pool-size", options.db_pool_size},
        {"db-acquire-timeout-seconds", options.db_acquire_timeout_seconds},
        {"db-statement-timeout-seconds", options.db_statement_timeout_seconds},
        {"telemetry-window-seconds", options.telemetry_window_seconds},
        {"rollout-interval-ms", options.rollout_interval_ms},
        {"watch-poll-seconds", options.watch_poll_seconds},
        {"watch-check-threads", options.watch_check_threads},
        {"telemetry-max-cohorts", options.telemetry_max_cohorts},
        {"telemetry-bucket-seconds", options.telemetry_bucket_seconds},
        {"telemetry-raw-retention-hours", options.telemetry_raw_retention_hours},
        {"telemetry-aggregate-retention-days", options.telemetry_aggregate_retention_days},
        {"telemetry-device-windows-per-minute", options.telemetry_device_windows_per_minute},
        {"telemetry-reference-min-samples", options.telemetry_reference_min_samples}}) {
    if (value < 1)
      return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be at least 1"));
  }
  std::error_code ec;
  std::filesystem::path data_dir = std::filesystem::absolute(options.data_dir, ec);
  options.data_dir = data_dir.lexically_normal().string();
  if (options.data_dir.size() > 1 && options.data_dir.back() == '/') options.data_dir.pop_back();
  if (options.db.empty()) options.db = absl::StrCat("sqlite://", options.data_dir, "/edgeloop.db");
  if (options.blobs.empty()) options.blobs = absl::StrCat("file://", options.data_dir, "/blobs");
  return options;
}

}  // namespace edgeloop::server
