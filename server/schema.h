#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "store/migrations.h"

namespace edgeloop::server {

/// The whole database schema of edgeloop-server: every component's migrations (each
/// component declares those of the tables it owns; docs/architecture.md) in one ordered
/// sequence.
const std::vector<store::Migration>& ServerSchema();

}  // namespace edgeloop::server
