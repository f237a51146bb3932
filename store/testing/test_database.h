#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/database.h"

namespace edgeloop::store::testing {

/// A migrated database for a suite instantiated per driver: "sqlite" (a file in `dir`) or
/// "postgres" (a fresh database on the shared throwaway cluster).
absl::StatusOr<std::unique_ptr<Database>> OpenTestDatabase(const std::string& driver,
                                                           const std::string& dir);

}  // namespace edgeloop::store::testing
