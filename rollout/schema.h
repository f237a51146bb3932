#pragma once

#include "store/migrations.h"

namespace edgeloop::rollout {

/// The rollout component's tables: rollouts (spec, state, current wave, revision),
/// rollout_devices (which devices each rollout released, in which wave) and rollout_events
/// (every transition with the gate values that caused it).
const store::ComponentMigrations& Migrations();

}  // namespace edgeloop::rollout
