#include "telemetry/schema.h"

namespace edgeloop::telemetry {

// Applied steps are never edited; a change is a new step.
const store::ComponentMigrations& Migrations() {
  static const auto* migrations = new store::ComponentMigrations{
      "telemetry",
      {
          // A window is stored once per device, model, version and start: the primary key makes a
          // resent window a no-op. `body` is the TelemetryWindow as checked; the columns beside it
          // are what queries select on. Aggregates hold a TelemetryWindow of summed counts (no raw
          // samples) per series and bucket. A cohort's slot numbers it: the unique slot is what
          // keeps their number under the cap when replicas add cohorts at once.
          {11, "telemetry", R"sql(
CREATE TABLE telemetry_windows (
  device_id TEXT NOT NULL,
  model_id BIGINT NOT NULL,
  version BIGINT NOT NULL,
  start_ms BIGINT NOT NULL,
  end_ms BIGINT NOT NULL,
  target TEXT NOT NULL,
  cohort TEXT NOT NULL,
  requests BIGINT NOT NULL,
  errors BIGINT NOT NULL,
  received_ms BIGINT NOT NULL,
  body {{BYTES}} NOT NULL,
  PRIMARY KEY (device_id, model_id, version, start_ms)
);
CREATE INDEX telemetry_windows_by_version ON telemetry_windows (model_id, version, start_ms);
CREATE INDEX telemetry_windows_by_end ON telemetry_windows (end_ms);
CREATE TABLE telemetry_aggregates (
  model_id BIGINT NOT NULL,
  version BIGINT NOT NULL,
  target TEXT NOT NULL,
  cohort TEXT NOT NULL,
  bucket_ms BIGINT NOT NULL,
  windows BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  summary {{BYTES}} NOT NULL,
  PRIMARY KEY (model_id, version, bucket_ms, target, cohort)
);
CREATE INDEX telemetry_aggregates_by_bucket ON telemetry_aggregates (bucket_ms);
CREATE TABLE telemetry_cohorts (
  slot BIGINT PRIMARY KEY,
  value TEXT NOT NULL UNIQUE,
  created_ms BIGINT NOT NULL
);
CREATE TABLE telemetry_devices (
  device_id TEXT PRIMARY KEY,
  windows_stored BIGINT NOT NULL,
  windows_refused BIGINT NOT NULL,
  windows_dropped BIGINT NOT NULL,
  last_report_ms BIGINT NOT NULL,
  last_refusal TEXT NOT NULL
);
)sql"},
          // An operator's drift thresholds for one model (a DriftSettings; unset fields keep
          // the server's defaults). No row: the defaults.
          {12, "telemetry_drift_settings", R"sql(
CREATE TABLE telemetry_drift_settings (
  model_id BIGINT PRIMARY KEY,
  settings {{BYTES}} NOT NULL,
  updated_ms BIGINT NOT NULL
);
)sql"},
      }};
  return *migrations;
}

}  // namespace edgeloop::telemetry
