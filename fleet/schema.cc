#include "fleet/schema.h"

namespace edgeloop::fleet {

// Applied steps are never edited; a change is a new step.
const store::ComponentMigrations& Migrations() {
  static const auto* migrations = new store::ComponentMigrations{
      "fleet", {
      {4, "fleet", R"sql(
CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  labels TEXT NOT NULL,
  max_uses BIGINT NOT NULL,
  uses BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  revoked_at_ms BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  created_by TEXT NOT NULL
);
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  serial TEXT NOT NULL,
  labels TEXT NOT NULL,
  profile TEXT NOT NULL,
  profile_hash TEXT NOT NULL,
  target TEXT NOT NULL,
  arch TEXT NOT NULL,
  ram_mb BIGINT NOT NULL,
  storage_mb BIGINT NOT NULL,
  cores BIGINT NOT NULL,
  accel TEXT NOT NULL,
  status TEXT NOT NULL,
  state TEXT NOT NULL,
  enrollment_token_id TEXT NOT NULL,
  cert_expires_at_ms BIGINT NOT NULL,
  enrolled_at_ms BIGINT NOT NULL,
  last_seen_ms BIGINT NOT NULL,
  generation BIGINT NOT NULL
);
CREATE INDEX devices_by_target ON devices (target, status);
)sql"},
      {7, "assignments", R"sql(
CREATE TABLE assignments (
  id {{SERIAL}},
  model_id BIGINT NOT NULL REFERENCES models(id),
  selector TEXT NOT NULL,
  device_id TEXT NOT NULL,
  version BIGINT NOT NULL,
  alias TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL
);
CREATE TABLE desired_state (
  id INTEGER PRIMARY KEY,
  generation BIGINT NOT NULL
);
INSERT INTO desired_state (id, generation) VALUES (1, 0);
)sql"},
      // A sync reads the device's own assignments and the selector ones, not every device's.
      {8, "assignments_by_device", R"sql(
CREATE INDEX assignments_by_device ON assignments (device_id, id);
CREATE INDEX assignments_with_selector ON assignments (id) WHERE selector <> '';
)sql"},
      // The key a device enrolled with: a retried Enroll (same token, key and serial) whose
      // answer was lost finds its device instead of spending another use.
      {9, "devices_enrollment_key", R"sql(
ALTER TABLE devices ADD COLUMN enrollment_key TEXT NOT NULL DEFAULT '';
CREATE INDEX devices_by_enrollment ON devices (enrollment_token_id, enrollment_key);
)sql"},
                 }};
  return *migrations;
}

}  // namespace edgeloop::fleet
