#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace edgeloop::server {

/// Everything `edgeloop-server` is configured with. Each flag `--foo-bar` can also be given
/// as the environment variable `EDGELOOP_FOO_BAR`; a flag wins over the environment.
struct ServerOptions {
  std::string data_dir = "./var";
  std::string db;     // default sqlite://<data-dir>/edgeloop.db
  std::string blobs;  // default file://<data-dir>/blobs
  std::string http_listen = "127.0.0.1:8080";
  std::string grpc_listen = "127.0.0.1:9090";
  std::string device_listen = "0.0.0.0:7443";
  /// Names and addresses agents use to reach --device-listen; the TLS certificate covers them.
  std::string device_hostnames = "localhost,127.0.0.1";
  int sync_interval_seconds = 30;
  int rollout_interval_ms = 1000;    // how often the rollout controller looks at every rollout
  /// How often each Watch stream rereads its device's generation: the safety net under the
  /// change feed (PostgreSQL NOTIFY), which pushes changes made on any replica at once.
  int watch_poll_seconds = 15;
  /// Threads that answer Watch streams: each reads a device's desired state and writes it.
  int watch_check_threads = 2;
  int telemetry_window_seconds = 60;  // how often devices close a telemetry window
  /// The device label whose value is a telemetry cohort, and how many values get a series.
  std::string telemetry_cohort_label = "site";
  int telemetry_max_cohorts = 32;
  int telemetry_bucket_seconds = 60;
  int telemetry_raw_retention_hours = 24 * 7;
  int telemetry_aggregate_retention_days = 90;
  int telemetry_device_windows_per_minute = 120;
  /// Raw values per feature a version without a reference needs before it takes one.
  int telemetry_reference_min_samples = 200;
  int sync_capacity_per_second = 500;
  absl::Duration device_cert_validity = absl::Hours(24 * 30);
  int offline_after_seconds = 90;
  int64_t max_upload_bytes = int64_t{2} << 30;
  int64_t max_json_body_bytes = 4 << 20;
  int http_threads = 8;
  int http_idle_timeout_seconds = 60;
  int http_body_timeout_seconds = 30;
  int http_max_connections = 1024;
  int db_pool_size = 16;
  /// A request waits this long for a free database connection, then is answered 503.
  int db_acquire_timeout_seconds = 10;
  /// PostgreSQL statements running longer are cancelled.
  int db_statement_timeout_seconds = 60;
  /// Threads for device calls other than Watch (which holds none).
  int device_threads = 64;
  /// Watch and FetchModule streams one device may hold open at once.
  int device_streams_per_device = 4;
  /// Keepalive ping interval on device connections; a peer silent this long again is dropped.
  int device_keepalive_seconds = 60;
  std::string log_level = "info";
  int shutdown_grace_seconds = 20;
  /// "all": API, device listener and compile workers; "worker": compile workers only.
  std::string role = "all";
  /// Target classes every version is compiled for, besides the fleet's (comma-separated).
  std::string compile_targets = "x86_64-v2";
  int compile_workers = 1;
  int validation_samples = 256;
  /// edgeloop-compile; empty: the one next to this binary.
  std::string compile_binary;
  /// "auto" (every control this machine allows, logged) or "require" (refuse to start without
  /// namespaces and the syscall filter); docs/security.md.
  std::string compile_sandbox = "auto";
  /// Replace the module signing key at this start (docs/operations.md).
  bool rotate_signing_key = false;
};

/// Parses argv (without argv[0]) and the environment. INVALID_ARGUMENT names the bad flag.
/// Sets `*help` instead when --help is given.
absl::StatusOr<ServerOptions> ParseServerOptions(const std::vector<std::string>& args, bool* help);

/// The --help text.
std::string ServerUsage();

}  // namespace edgeloop::server
