#pragma once

#include "store/migrations.h"

namespace edgeloop::telemetry {

/// The telemetry component's tables: telemetry_windows (raw windows as devices sent them),
/// telemetry_aggregates (their sums per model, version, target class, cohort and time bucket),
/// telemetry_cohorts (the cohort values given their own series, capped) and telemetry_devices
/// (per device: what it reported, what was refused or dropped).
const store::ComponentMigrations& Migrations();

}  // namespace edgeloop::telemetry
