#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "store/database.h"
#include "store/migrations.h"

namespace edgeloop::store::testing {

/// A database with the schema of `components` (each component under test lists its own and
/// those it builds on) for a suite instantiated per driver: "sqlite" (a file in `dir`) or
/// "postgres" (a fresh database on the shared throwaway cluster).
absl::StatusOr<std::unique_ptr<Database>> OpenTestDatabase(
    const std::string& driver, const std::string& dir,
    const std::vector<const ComponentMigrations*>& components);

}  // namespace edgeloop::store::testing
