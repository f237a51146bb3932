#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "edgeloop/v1/rollout.pb.h"
#include "store/database.h"

namespace edgeloop::rollout {

/// States whose rollouts the controller still acts on.
bool Unfinished(const std::string& state);

/// A rollout as stored.
struct RolloutRecord {
  int64_t id = 0;
  int64_t model_id = 0;
  std::string model;  // its name
  int64_t version = 0;
  int64_t replaced_version = 0;
  v1::RolloutSpec spec;
  std::string state;
  int wave = 0;
  int64_t wave_started_ms = 0;
  int64_t bake_started_ms = 0;  // in ROLLING_BACK: when the rollback began
  std::string message;
  std::vector<v1::GateResult> gates;
  int64_t revision = 0;
  bool shadowing = false;  // the current wave is in its shadow stage
  int64_t superseded_by = 0;
  std::string created_by;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  /// What the controller last saw of its devices (waves with counts, matching_devices,
  /// wave_total), at observed_at_ms; 0: never observed.
  v1::Rollout observed;
  int64_t observed_at_ms = 0;
};

/// A device a rollout released.
struct ReleasedDevice {
  int wave = 0;
  int64_t released_ms = 0;
  int64_t activated_ms = 0;  // first seen running the candidate; 0: not yet
};

/// What a transition changes, and the event that records it.
struct Transition {
  std::string to_state;
  int wave = 0;
  int64_t wave_started_ms = 0;
  int64_t bake_started_ms = 0;
  std::string reason;
  std::vector<v1::GateResult> gates;
  std::string actor;
  /// Whether the wave is in its shadow stage afterwards; unset: as before.
  std::optional<bool> shadowing = std::nullopt;
};

/// The rollout component's SQL: rollouts, rollout_devices and rollout_events. Static
/// functions over a Reader or the caller's transaction.
class RolloutStore {
 public:
  /// Inserts a new rollout (its id filled in) with its creation event.
  static absl::Status Insert(store::Transaction& tx, RolloutRecord& record);
  static absl::StatusOr<std::optional<RolloutRecord>> Load(store::Reader& db, int64_t id);
  /// Unfinished rollouts (of one model when model_id > 0), oldest first.
  static absl::StatusOr<std::vector<RolloutRecord>> LoadUnfinished(store::Reader& db,
                                                                   int64_t model_id);
  /// Newest first, ids below `before`, at most `limit`.
  static absl::StatusOr<std::vector<RolloutRecord>> List(store::Reader& db, int64_t model_id,
                                                         bool unfinished_only, int64_t before,
                                                         int limit);

  /// Applies `t` when the rollout is still at `record.revision`, writing its event; false when
  /// another writer moved it first (nothing written). Updates `record` when applied.
  static absl::StatusOr<bool> Apply(store::Transaction& tx, RolloutRecord& record,
                                    const Transition& t, int64_t now_ms);
  /// Takes the rollout's next revision without a transition (releasing devices): false when
  /// another writer moved it first.
  static absl::StatusOr<bool> Bump(store::Transaction& tx, RolloutRecord& record, int64_t now_ms);
  /// Stores the gate values last judged (no event).
  static absl::Status SaveGates(store::Transaction& tx, int64_t id,
                                const std::vector<v1::GateResult>& gates, int64_t now_ms);
  /// Stores what a pass saw of the rollout's devices (no event; not an update of the rollout).
  static absl::Status SaveObserved(store::Transaction& tx, int64_t id, const v1::Rollout& observed,
                                   int64_t now_ms);
  static absl::Status MarkSuperseded(store::Transaction& tx, int64_t id, int64_t by);

  static absl::StatusOr<std::map<std::string, ReleasedDevice>> Devices(store::Reader& db,
                                                                       int64_t rollout_id);
  static absl::Status Release(store::Transaction& tx, int64_t rollout_id, int wave,
                              const std::vector<std::string>& devices, int64_t now_ms);
  static absl::Status MarkActivated(store::Transaction& tx, int64_t rollout_id,
                                    const std::vector<std::string>& devices, int64_t now_ms);
  /// Devices released in the last `since_ms` (for the per-minute limit).
  static absl::StatusOr<int64_t> ReleasedSince(store::Reader& db, int64_t rollout_id,
                                               int64_t since_ms);

  /// (model id, version) of the candidates of unfinished and completed rollouts: versions
  /// devices may be told to run (the CI stage builds them for classes that join later).
  static absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>> Candidates(store::Reader& db);
  /// Rollouts per state.
  static absl::StatusOr<std::map<std::string, int64_t>> CountByState(store::Reader& db);

  /// Events with id above `after`, oldest first, at most `limit`.
  static absl::StatusOr<std::vector<v1::RolloutEvent>> Events(store::Reader& db, int64_t rollout_id,
                                                              int64_t after, int limit);

  /// (model id, version, created_at_ms) of the rollouts that decide what `device_id` runs:
  /// the unfinished ones that released it and the completed ones whose selector
  /// matches (the caller matches `selector`).
  struct InForce {
    int64_t model_id = 0;
    int64_t version = 0;
    int64_t created_at_ms = 0;
    std::string selector;
    bool by_selector = false;  // completed: applies where `selector` matches
    /// Released into the current wave while it shadows: the device shadows the candidate.
    std::optional<v1::ShadowStage> shadow;
  };
  static absl::StatusOr<std::vector<InForce>> InForceFor(store::Reader& db,
                                                         const std::string& device_id);
};

}  // namespace edgeloop::rollout
