#include "ci/schema.h"

namespace edgeloop::ci {

// Applied steps are never edited; a change is a new step.
const store::ComponentMigrations& Migrations() {
  static const auto* migrations = new store::ComponentMigrations{
      "ci", {
      {5, "compile_pipeline", R"sql(
CREATE TABLE compile_jobs (
  id {{SERIAL}},
  model_id BIGINT NOT NULL REFERENCES models(id),
  version BIGINT NOT NULL,
  target TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts BIGINT NOT NULL,
  lease_owner TEXT NOT NULL,
  lease_expires_ms BIGINT NOT NULL,
  error TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL,
  UNIQUE (model_id, version, target)
);
CREATE INDEX compile_jobs_by_state ON compile_jobs (state, id);
CREATE TABLE event_consumers (
  name TEXT PRIMARY KEY,
  last_sequence BIGINT NOT NULL
);
)sql"},
      {6, "compile_reasons", R"sql(
ALTER TABLE compile_jobs ADD COLUMN reason TEXT NOT NULL DEFAULT '';
)sql"},
                 }};
  return *migrations;
}

}  // namespace edgeloop::ci
