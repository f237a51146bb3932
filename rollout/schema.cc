#include "rollout/schema.h"

namespace edgeloop::rollout {

// Applied steps are never edited; a change is a new step.
const store::ComponentMigrations& Migrations() {
  static const auto* migrations = new store::ComponentMigrations{
      "rollout",
      {
          // `spec` is the RolloutSpec as JSON; `revision` grows with every transition, and a
          // transition is written only where the revision is still the one it was decided on,
          // so two controllers (a leader and one that has lost its lease) never both act.
          // Creating a rollout takes its model's row in rollout_model_locks first, so two
          // creates for one model (on any replica) run one after the other and the second sees
          // the first when it checks for overlap.
          // A device is released into a rollout once (the primary key); `activated_ms` is when
          // the controller first saw it run the candidate.
          {13, "rollouts", R"sql(
CREATE TABLE rollouts (
  id {{SERIAL}},
  model_id BIGINT NOT NULL,
  version BIGINT NOT NULL,
  replaced_version BIGINT NOT NULL,
  selector TEXT NOT NULL,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  wave BIGINT NOT NULL,
  wave_started_ms BIGINT NOT NULL,
  bake_started_ms BIGINT NOT NULL,
  message TEXT NOT NULL,
  gates TEXT NOT NULL,
  revision BIGINT NOT NULL,
  superseded_by BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
CREATE INDEX rollouts_by_model ON rollouts (model_id, state);
CREATE INDEX rollouts_by_state ON rollouts (state, id);
CREATE TABLE rollout_devices (
  rollout_id BIGINT NOT NULL REFERENCES rollouts(id),
  device_id TEXT NOT NULL,
  wave BIGINT NOT NULL,
  released_ms BIGINT NOT NULL,
  activated_ms BIGINT NOT NULL,
  PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_by_device ON rollout_devices (device_id);
CREATE TABLE rollout_events (
  id {{SERIAL}},
  rollout_id BIGINT NOT NULL REFERENCES rollouts(id),
  at_ms BIGINT NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  wave BIGINT NOT NULL,
  reason TEXT NOT NULL,
  gates TEXT NOT NULL,
  actor TEXT NOT NULL
);
CREATE INDEX rollout_events_by_rollout ON rollout_events (rollout_id, id);
CREATE TABLE rollout_model_locks (
  model_id BIGINT PRIMARY KEY,
  creates BIGINT NOT NULL
);
)sql"},
          // What the controller last saw of a rollout's devices (its waves with their counts,
          // as the JSON of a Rollout holding only those), so reading a rollout or listing
          // them does not read the fleet.
          {14, "rollouts_observed", R"sql(
ALTER TABLE rollouts ADD COLUMN observed TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN observed_at_ms BIGINT NOT NULL DEFAULT 0;
)sql"},
          // While the current wave is in its shadow stage, `shadow` holds the spec's
          // ShadowStage as JSON (what the wave's devices are told to shadow with); '' when it
          // is not. Events record whether the wave shadowed after them.
          {15, "rollouts_shadow", R"sql(
ALTER TABLE rollouts ADD COLUMN shadow TEXT NOT NULL DEFAULT '';
ALTER TABLE rollout_events ADD COLUMN shadowing BIGINT NOT NULL DEFAULT 0;
)sql"},
      }};
  return *migrations;
}

}  // namespace edgeloop::rollout
