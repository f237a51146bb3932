#include "store/testing/test_database.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "store/migrations.h"
#include "store/testing/postgres_cluster.h"

namespace edgeloop::store::testing {

absl::StatusOr<std::unique_ptr<Database>> OpenTestDatabase(
    const std::string& driver, const std::string& dir,
    const std::vector<const ComponentMigrations*>& components) {
  ASSIGN_OR_RETURN(std::vector<Migration> schema, MergeMigrations(components));
  std::string url = absl::StrCat("sqlite://", dir, "/test.db");
  if (driver == "postgres") {
    ASSIGN_OR_RETURN(url, NewTestDatabase());
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Database> db, Database::Open({.url = url, .pool_size = 8}));
  RETURN_IF_ERROR(ApplyMigrations(*db, schema).status());
  return db;
}

}  // namespace edgeloop::store::testing
