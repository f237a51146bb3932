#include "rollout/rollout_store.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "registry/registry.h"

namespace edgeloop::rollout {
namespace {

using google::protobuf::util::TimeUtil;
using store::Rows;

constexpr char kColumns[] =
    "id, model_id, version, replaced_version, spec, state, wave, wave_started_ms, "
    "bake_started_ms, message, gates, revision, superseded_by, created_by, created_at_ms, "
    "updated_at_ms, observed, observed_at_ms, shadow";

// Gate values are stored as the JSON of a message that holds only them.
std::string GatesJson(const std::vector<v1::GateResult>& gates) {
  v1::Rollout holder;
  for (const v1::GateResult& g : gates) *holder.add_gates() = g;
  return PrintProtoJson(holder);
}

absl::StatusOr<std::vector<v1::GateResult>> ParseGates(const std::string& json) {
  v1::Rollout holder;
  RETURN_IF_ERROR(ParseProtoJson(json, &holder, true));
  return std::vector<v1::GateResult>(holder.gates().begin(), holder.gates().end());
}

absl::StatusOr<std::vector<RolloutRecord>> FromRows(store::Reader& db, const Rows& rows) {
  std::set<int64_t> ids;
  for (const store::Row& row : rows) ids.insert(row.Int("model_id"));
  ASSIGN_OR_RETURN(const auto names, registry::Registry::ModelNames(db, ids));
  std::vector<RolloutRecord> out;
  for (const store::Row& row : rows) {
    RolloutRecord& r = out.emplace_back();
    r.id = row.Int("id");
    r.model_id = row.Int("model_id");
    if (auto it = names.find(r.model_id); it != names.end()) r.model = it->second;
    r.version = row.Int("version");
    r.replaced_version = row.Int("replaced_version");
    RETURN_IF_ERROR(ParseProtoJson(row.Text("spec"), &r.spec, true));
    r.state = row.Text("state");
    r.wave = static_cast<int>(row.Int("wave"));
    r.wave_started_ms = row.Int("wave_started_ms");
    r.bake_started_ms = row.Int("bake_started_ms");
    r.message = row.Text("message");
    ASSIGN_OR_RETURN(r.gates, ParseGates(row.Text("gates")));
    r.revision = row.Int("revision");
    r.superseded_by = row.Int("superseded_by");
    r.created_by = row.Text("created_by");
    r.created_at_ms = row.Int("created_at_ms");
    r.updated_at_ms = row.Int("updated_at_ms");
    if (!row.Text("observed").empty()) {
      RETURN_IF_ERROR(ParseProtoJson(row.Text("observed"), &r.observed, true));
    }
    r.observed_at_ms = row.Int("observed_at_ms");
    r.shadowing = !row.Text("shadow").empty();
  }
  return out;
}

absl::Status InsertEvent(store::Transaction& tx, int64_t rollout_id, int64_t at_ms,
                         const std::string& from, const std::string& to, int wave,
                         const std::string& reason, const std::vector<v1::GateResult>& gates,
                         const std::string& actor, bool shadowing) {
  return tx
      .Execute(
          "INSERT INTO rollout_events (rollout_id, at_ms, from_state, to_state, wave, "
          "reason, gates, actor, shadowing) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
          {rollout_id, at_ms, from, to, int64_t{wave}, reason.substr(0, 2000), GatesJson(gates),
           actor, int64_t{shadowing ? 1 : 0}})
      .status();
}

}  // namespace

bool Unfinished(const std::string& state) {
  return state == "PENDING" || state == "IN_PROGRESS" || state == "BAKING" || state == "PAUSED" ||
         state == "ROLLING_BACK";
}

absl::Status RolloutStore::Insert(store::Transaction& tx, RolloutRecord& r) {
  ASSIGN_OR_RETURN(
      Rows rows,
      tx.Query("INSERT INTO rollouts (model_id, version, replaced_version, selector, spec, state, "
               "wave, wave_started_ms, bake_started_ms, message, gates, revision, superseded_by, "
               "created_by, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, "
               "$8, $9, $10, $11, 1, 0, $12, $13, $13) RETURNING id",
               {r.model_id, r.version, r.replaced_version, r.spec.selector(),
                PrintProtoJson(r.spec), r.state, int64_t{r.wave}, r.wave_started_ms,
                r.bake_started_ms, r.message, GatesJson(r.gates), r.created_by, r.created_at_ms}));
  r.id = rows[0].Int("id");
  r.revision = 1;
  r.updated_at_ms = r.created_at_ms;
  return InsertEvent(tx, r.id, r.created_at_ms, "", r.state, 0, r.message, {}, r.created_by,
                     false);
}

absl::StatusOr<std::optional<RolloutRecord>> RolloutStore::Load(store::Reader& db, int64_t id) {
  ASSIGN_OR_RETURN(
      Rows rows, db.Query(absl::StrCat("SELECT ", kColumns, " FROM rollouts WHERE id = $1"), {id}));
  ASSIGN_OR_RETURN(std::vector<RolloutRecord> records, FromRows(db, rows));
  if (records.empty()) return std::nullopt;
  return std::move(records[0]);
}

absl::StatusOr<std::vector<RolloutRecord>> RolloutStore::LoadUnfinished(store::Reader& db,
                                                                        int64_t model_id) {
  ASSIGN_OR_RETURN(
      Rows rows,
      db.Query(absl::StrCat("SELECT ", kColumns,
                            " FROM rollouts WHERE state IN ('PENDING', 'IN_PROGRESS', 'BAKING', "
                            "'PAUSED', 'ROLLING_BACK') AND ($1 = 0 OR model_id = $1) ORDER BY id"),
               {model_id}));
  return FromRows(db, rows);
}

absl::StatusOr<std::vector<RolloutRecord>> RolloutStore::List(store::Reader& db, int64_t model_id,
                                                              bool unfinished_only, int64_t before,
                                                              int limit) {
  ASSIGN_OR_RETURN(
      Rows rows,
      db.Query(
          absl::StrCat("SELECT ", kColumns,
                       " FROM rollouts WHERE ($1 = 0 OR model_id = $1) AND id < $2 AND ($3 = 0 "
                       "OR state IN ('PENDING', 'IN_PROGRESS', 'BAKING', 'PAUSED', "
                       "'ROLLING_BACK')) ORDER BY id DESC LIMIT $4"),
          {model_id, before, int64_t{unfinished_only ? 1 : 0}, int64_t{limit}}));
  return FromRows(db, rows);
}

absl::StatusOr<bool> RolloutStore::Apply(store::Transaction& tx, RolloutRecord& r,
                                         const Transition& t, int64_t now_ms) {
  const bool shadowing = t.shadowing.value_or(r.shadowing);
  ASSIGN_OR_RETURN(
      int64_t changed,
      tx.Execute("UPDATE rollouts SET state = $3, wave = $4, wave_started_ms = $5, "
                 "bake_started_ms = $6, message = $7, gates = $8, revision = revision + 1, "
                 "updated_at_ms = $9, shadow = $10 WHERE id = $1 AND revision = $2",
                 {r.id, r.revision, t.to_state, int64_t{t.wave}, t.wave_started_ms,
                  t.bake_started_ms, t.reason.substr(0, 2000), GatesJson(t.gates), now_ms,
                  shadowing ? PrintProtoJson(r.spec.shadow()) : std::string()}));
  if (changed == 0) return false;
  RETURN_IF_ERROR(InsertEvent(tx, r.id, now_ms, r.state, t.to_state, t.wave, t.reason, t.gates,
                              t.actor, shadowing));
  r.shadowing = shadowing;
  r.state = t.to_state;
  r.wave = t.wave;
  r.wave_started_ms = t.wave_started_ms;
  r.bake_started_ms = t.bake_started_ms;
  r.message = t.reason;
  r.gates = t.gates;
  r.revision += 1;
  r.updated_at_ms = now_ms;
  return true;
}

absl::StatusOr<bool> RolloutStore::Bump(store::Transaction& tx, RolloutRecord& r, int64_t now_ms) {
  ASSIGN_OR_RETURN(int64_t changed,
                   tx.Execute("UPDATE rollouts SET revision = revision + 1, updated_at_ms = $3 "
                              "WHERE id = $1 AND revision = $2",
                              {r.id, r.revision, now_ms}));
  if (changed == 0) return false;
  r.revision += 1;
  r.updated_at_ms = now_ms;
  return true;
}

absl::Status RolloutStore::SaveGates(store::Transaction& tx, int64_t id,
                                     const std::vector<v1::GateResult>& gates, int64_t now_ms) {
  return tx
      .Execute("UPDATE rollouts SET gates = $2, updated_at_ms = $3 WHERE id = $1",
               {id, GatesJson(gates), now_ms})
      .status();
}

absl::Status RolloutStore::SaveObserved(store::Transaction& tx, int64_t id,
                                        const v1::Rollout& observed, int64_t now_ms) {
  return tx
      .Execute("UPDATE rollouts SET observed = $2, observed_at_ms = $3 WHERE id = $1",
               {id, PrintProtoJson(observed), now_ms})
      .status();
}

absl::Status RolloutStore::MarkSuperseded(store::Transaction& tx, int64_t id, int64_t by) {
  return tx.Execute("UPDATE rollouts SET superseded_by = $2 WHERE id = $1", {id, by}).status();
}

absl::StatusOr<std::map<std::string, ReleasedDevice>> RolloutStore::Devices(store::Reader& db,
                                                                            int64_t rollout_id) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT device_id, wave, released_ms, activated_ms FROM "
                                       "rollout_devices WHERE rollout_id = $1",
                                       {rollout_id}));
  std::map<std::string, ReleasedDevice> out;
  for (const store::Row& row : rows) {
    out[row.Text("device_id")] = {static_cast<int>(row.Int("wave")), row.Int("released_ms"),
                                  row.Int("activated_ms")};
  }
  return out;
}

absl::Status RolloutStore::Release(store::Transaction& tx, int64_t rollout_id, int wave,
                                   const std::vector<std::string>& devices, int64_t now_ms) {
  std::vector<std::vector<store::Value>> rows;
  rows.reserve(devices.size());
  for (const std::string& id : devices) {
    rows.push_back({rollout_id, id, int64_t{wave}, now_ms, int64_t{0}});
  }
  if (rows.empty()) return absl::OkStatus();
  return tx
      .BulkInsert("rollout_devices",
                  {"rollout_id", "device_id", "wave", "released_ms", "activated_ms"}, rows,
                  "ON CONFLICT DO NOTHING")
      .status();
}

absl::Status RolloutStore::MarkActivated(store::Transaction& tx, int64_t rollout_id,
                                         const std::vector<std::string>& devices, int64_t now_ms) {
  for (const std::string& id : devices) {
    RETURN_IF_ERROR(tx.Execute("UPDATE rollout_devices SET activated_ms = $3 WHERE rollout_id = "
                               "$1 AND device_id = $2 AND activated_ms = 0",
                               {rollout_id, id, now_ms})
                        .status());
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RolloutStore::ReleasedSince(store::Reader& db, int64_t rollout_id,
                                                    int64_t since_ms) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT COUNT(*) AS n FROM rollout_devices WHERE "
                                       "rollout_id = $1 AND released_ms > $2",
                                       {rollout_id, since_ms}));
  return rows[0].Int("n");
}

absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>> RolloutStore::Candidates(
    store::Reader& db) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT DISTINCT model_id, version FROM rollouts WHERE "
                                       "state IN ('PENDING', 'IN_PROGRESS', 'BAKING', 'PAUSED', "
                                       "'COMPLETED') ORDER BY model_id, version"));
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const store::Row& row : rows) out.emplace_back(row.Int("model_id"), row.Int("version"));
  return out;
}

absl::StatusOr<std::map<std::string, int64_t>> RolloutStore::CountByState(store::Reader& db) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT state, COUNT(*) AS n FROM rollouts GROUP BY state"));
  std::map<std::string, int64_t> out;
  for (const store::Row& row : rows) out[row.Text("state")] = row.Int("n");
  return out;
}

absl::StatusOr<std::vector<v1::RolloutEvent>> RolloutStore::Events(store::Reader& db,
                                                                   int64_t rollout_id,
                                                                   int64_t after, int limit) {
  ASSIGN_OR_RETURN(Rows rows,
                   db.Query("SELECT id, at_ms, from_state, to_state, wave, reason, gates, actor, "
                            "shadowing FROM rollout_events WHERE rollout_id = $1 AND id > $2 ORDER BY id "
                            "LIMIT $3",
                            {rollout_id, after, int64_t{limit}}));
  std::vector<v1::RolloutEvent> out;
  for (const store::Row& row : rows) {
    v1::RolloutEvent& e = out.emplace_back();
    e.set_id(row.Int("id"));
    e.set_rollout_id(rollout_id);
    *e.mutable_time() = TimeUtil::MillisecondsToTimestamp(row.Int("at_ms"));
    e.set_from_state(row.Text("from_state"));
    e.set_to_state(row.Text("to_state"));
    e.set_wave(static_cast<int32_t>(row.Int("wave")));
    e.set_reason(row.Text("reason"));
    ASSIGN_OR_RETURN(std::vector<v1::GateResult> gates, ParseGates(row.Text("gates")));
    for (v1::GateResult& g : gates) *e.add_gates() = std::move(g);
    e.set_actor(row.Text("actor"));
    e.set_shadowing(row.Int("shadowing") != 0);
  }
  return out;
}

absl::StatusOr<std::vector<RolloutStore::InForce>> RolloutStore::InForceFor(
    store::Reader& db, const std::string& device_id) {
  ASSIGN_OR_RETURN(
      Rows rows,
      db.Query("SELECT r.model_id, r.version, r.created_at_ms, '' AS selector, 0 AS by_selector, "
               "CASE WHEN d.wave = r.wave THEN r.shadow ELSE '' END AS shadow "
               "FROM rollout_devices "
               "d JOIN rollouts r ON r.id = d.rollout_id WHERE d.device_id = $1 AND "
               "r.state IN ('IN_PROGRESS', 'BAKING', 'PAUSED') UNION ALL "
               "SELECT model_id, version, created_at_ms, selector, 1 AS by_selector, '' AS shadow "
               "FROM rollouts WHERE state = 'COMPLETED'",
               {device_id}));
  std::vector<InForce> out;
  for (const store::Row& row : rows) {
    InForce& f = out.emplace_back(InForce{row.Int("model_id"), row.Int("version"),
                                          row.Int("created_at_ms"), row.Text("selector"),
                                          row.Int("by_selector") != 0, std::nullopt});
    if (!row.Text("shadow").empty()) {
      RETURN_IF_ERROR(ParseProtoJson(row.Text("shadow"), &f.shadow.emplace(), true));
    }
  }
  return out;
}

}  // namespace edgeloop::rollout
