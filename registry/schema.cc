#include "registry/schema.h"

namespace edgeloop::registry {

// Applied steps are never edited; a change is a new step.
const store::ComponentMigrations& Migrations() {
  static const auto* migrations = new store::ComponentMigrations{
      "registry", {
      {1, "registry", R"sql(
CREATE TABLE models (
  id {{SERIAL}},
  name TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL,
  labels TEXT NOT NULL,
  next_version BIGINT NOT NULL DEFAULT 1,
  created_at_ms BIGINT NOT NULL,
  created_by TEXT NOT NULL
);
CREATE TABLE model_versions (
  model_id BIGINT NOT NULL REFERENCES models(id),
  version BIGINT NOT NULL,
  onnx_digest TEXT NOT NULL,
  onnx_size BIGINT NOT NULL,
  status TEXT NOT NULL,
  status_message TEXT NOT NULL,
  details TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  PRIMARY KEY (model_id, version)
);
CREATE TABLE aliases (
  model_id BIGINT NOT NULL REFERENCES models(id),
  alias TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL,
  updated_by TEXT NOT NULL,
  PRIMARY KEY (model_id, alias),
  FOREIGN KEY (model_id, version) REFERENCES model_versions(model_id, version)
);
CREATE TABLE alias_history (
  id {{SERIAL}},
  model_id BIGINT NOT NULL REFERENCES models(id),
  alias TEXT NOT NULL,
  from_version BIGINT NOT NULL,
  to_version BIGINT NOT NULL,
  actor TEXT NOT NULL,
  at_ms BIGINT NOT NULL
);
CREATE INDEX alias_history_by_alias ON alias_history (model_id, alias, id);
CREATE TABLE registry_events (
  sequence BIGINT PRIMARY KEY,
  type TEXT NOT NULL,
  model TEXT NOT NULL,
  version BIGINT NOT NULL,
  alias TEXT NOT NULL,
  actor TEXT NOT NULL,
  at_ms BIGINT NOT NULL
);
CREATE TABLE registry_event_counter (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_sequence BIGINT NOT NULL
);
INSERT INTO registry_event_counter (id, last_sequence) VALUES (1, 0);
)sql"},
      // Steps 5-7 also built other components' tables (see store/migrations.h).
      {5, "artifacts", R"sql(
CREATE TABLE artifacts (
  model_id BIGINT NOT NULL REFERENCES models(id),
  version BIGINT NOT NULL,
  target TEXT NOT NULL,
  backend TEXT NOT NULL,
  module_digest TEXT NOT NULL,
  module_size BIGINT NOT NULL,
  manifest TEXT NOT NULL,
  signature TEXT NOT NULL,
  validation TEXT NOT NULL,
  compile_seconds DOUBLE PRECISION NOT NULL,
  created_at_ms BIGINT NOT NULL,
  PRIMARY KEY (model_id, version, target)
);
)sql"},
      {6, "artifact_reasons", R"sql(
ALTER TABLE artifacts ADD COLUMN reason TEXT NOT NULL DEFAULT '';
)sql"},
      {7, "artifacts_by_module", R"sql(
CREATE INDEX artifacts_by_module ON artifacts (module_digest);
)sql"},
      // One reference per version (ReferenceStatistics as proto3 JSON), the first recorded.
      {10, "version_references", R"sql(
CREATE TABLE version_references (
  model_id BIGINT NOT NULL,
  version BIGINT NOT NULL,
  source TEXT NOT NULL,
  reference TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  PRIMARY KEY (model_id, version),
  FOREIGN KEY (model_id, version) REFERENCES model_versions(model_id, version)
);
)sql"},
                 }};
  return *migrations;
}

}  // namespace edgeloop::registry
