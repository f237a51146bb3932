#pragma once

#include "store/migrations.h"

namespace edgeloop::fleet {

/// The fleet's tables: enrollment_tokens, devices, assignments and desired_state.
const store::ComponentMigrations& Migrations();

}  // namespace edgeloop::fleet
