#include "server/schema.h"

#include <cstdio>
#include <cstdlib>

#include "ci/schema.h"
#include "fleet/schema.h"
#include "registry/schema.h"
#include "rollout/schema.h"
#include "server/auth.h"
#include "telemetry/schema.h"

namespace edgeloop::server {

const std::vector<store::Migration>& ServerSchema() {
  static const auto* schema = [] {
    auto merged = store::MergeMigrations({&registry::Migrations(), &AuthMigrations(),
                                          &store::BlobMigrations(), &fleet::Migrations(),
                                          &ci::Migrations(), &telemetry::Migrations(),
                                          &rollout::Migrations()});
    if (!merged.ok()) {
      // Two components claimed one migration number: a build that must not start.
      std::fprintf(stderr, "edgeloop-server: %s\n", merged.status().ToString().c_str());
      std::abort();
    }
    return new std::vector<store::Migration>(*std::move(merged));
  }();
  return *schema;
}

}  // namespace edgeloop::server
