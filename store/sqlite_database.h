#pragma once

#include <memory>

#include "store/database.h"

namespace edgeloop::store {

/// The embedded default: one SQLite file in WAL mode with full fsync, a pool of
/// connections, prepared statements cached per connection. Zero setup.
class SqliteDatabase {
 public:
  /// `options.url` is `sqlite:///absolute/path.db`; the file is created when missing.
  static absl::StatusOr<std::unique_ptr<Database>> Create(const DatabaseOptions& options);
};

}  // namespace edgeloop::store
