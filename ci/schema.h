#pragma once

#include "store/migrations.h"

namespace edgeloop::ci {

/// The CI stage's tables: compile_jobs and event_consumers (the planner's place in the
/// registry's event log).
const store::ComponentMigrations& Migrations();

}  // namespace edgeloop::ci
