#pragma once

#include "store/migrations.h"

namespace edgeloop::registry {

/// The registry's tables: models, model_versions, aliases, alias_history, registry_events,
/// registry_event_counter and artifacts.
const store::ComponentMigrations& Migrations();

}  // namespace edgeloop::registry
