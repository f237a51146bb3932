#pragma once

#include <memory>

#include "store/database.h"

namespace edgeloop::store {

/// PostgreSQL through libpqxx: a pool of connections, statements prepared once per
/// connection, READ COMMITTED transactions. For several server replicas on one database.
class PostgresDatabase {
 public:
  /// `options.url` is a libpq connection URI, e.g. `postgresql://edgeloop@db:5432/edgeloop`.
  static absl::StatusOr<std::unique_ptr<Database>> Create(const DatabaseOptions& options);
};

}  // namespace edgeloop::store
