// The registry's interface for the other components (fleet, the CI stage): lookups by id and
// the writes the CI stage makes inside its job transactions. Nothing outside the registry
// names its tables.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "registry/event_log.h"
#include "registry/registry.h"

namespace edgeloop::registry {
namespace {

using google::protobuf::util::TimeUtil;
using store::Rows;

constexpr char kArtifactColumns[] =
    "model_id, version, target, backend, module_digest, module_size, manifest, signature, "
    "validation, compile_seconds, created_at_ms, reason";

ArtifactRecord ArtifactFromRow(const store::Row& row) {
  ArtifactRecord a;
  a.model_id = row.Int("model_id");
  a.version = row.Int("version");
  a.target = row.Text("target");
  a.backend = row.Text("backend");
  a.module_digest = row.Text("module_digest");
  a.module_size = row.Int("module_size");
  a.manifest = row.Text("manifest");
  a.signature = row.Text("signature");
  a.validation = row.Text("validation");
  a.compile_seconds = row.Real("compile_seconds");
  a.created_at_ms = row.Int("created_at_ms");
  a.reason = row.Text("reason");
  return a;
}

absl::StatusOr<std::string> ModelName(store::Reader& db, int64_t model_id) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT name FROM models WHERE id = $1", {model_id}));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat("no model with id ", model_id));
  return rows[0].Text("name");
}

}  // namespace

absl::StatusOr<std::optional<int64_t>> Registry::FindModelId(store::Reader& db,
                                                             const std::string& name) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT id FROM models WHERE name = $1", {name}));
  if (rows.empty()) return std::nullopt;
  return rows[0].Int("id");
}

absl::StatusOr<std::map<int64_t, std::string>> Registry::ModelNames(
    store::Reader& db, const std::set<int64_t>& ids) {
  std::map<int64_t, std::string> names;
  if (ids.empty()) return names;
  std::vector<store::Value> params;
  std::vector<std::string> placeholders;
  for (int64_t id : ids) {
    params.emplace_back(id);
    placeholders.push_back(absl::StrCat("$", params.size()));
  }
  ASSIGN_OR_RETURN(Rows rows, db.Query(absl::StrCat("SELECT id, name FROM models WHERE id IN (",
                                                    absl::StrJoin(placeholders, ", "), ")"),
                                       params));
  for (const store::Row& row : rows) names[row.Int("id")] = row.Text("name");
  return names;
}

absl::StatusOr<bool> Registry::HasVersion(store::Reader& db, int64_t model_id, int64_t version) {
  ASSIGN_OR_RETURN(Rows rows,
                   db.Query("SELECT 1 AS found FROM model_versions WHERE model_id = $1 AND "
                            "version = $2",
                            {model_id, version}));
  return !rows.empty();
}

absl::StatusOr<std::optional<int64_t>> Registry::AliasTarget(store::Reader& db, int64_t model_id,
                                                             const std::string& alias) {
  ASSIGN_OR_RETURN(Rows rows,
                   db.Query("SELECT version FROM aliases WHERE model_id = $1 AND alias = $2",
                            {model_id, alias}));
  if (rows.empty()) return std::nullopt;
  return rows[0].Int("version");
}

absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>> Registry::AliasedVersions(
    store::Reader& db) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT DISTINCT model_id, version FROM aliases "
                                       "ORDER BY model_id, version"));
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const store::Row& row : rows) out.emplace_back(row.Int("model_id"), row.Int("version"));
  return out;
}

absl::StatusOr<VersionSource> Registry::FindVersion(store::Reader& db, int64_t model_id,
                                                    int64_t version) {
  ASSIGN_OR_RETURN(Rows rows,
                   db.Query("SELECT m.name, v.onnx_digest, v.status, v.details FROM "
                            "model_versions v JOIN models m ON m.id = v.model_id "
                            "WHERE v.model_id = $1 AND v.version = $2",
                            {model_id, version}));
  if (rows.empty()) {
    return absl::NotFoundError(absl::StrCat("model id ", model_id, " has no version ", version));
  }
  const store::Row& row = rows[0];
  v1::ModelVersion details;
  RETURN_IF_ERROR(ParseProtoJson(row.Text("details"), &details, /*ignore_unknown_fields=*/true));
  VersionSource source;
  source.model_id = model_id;
  source.model = row.Text("name");
  source.version = version;
  source.onnx_digest = row.Text("onnx_digest");
  source.validation_digest = details.validation_digest();
  source.monitored_features.assign(details.monitored_features().begin(),
                                   details.monitored_features().end());
  v1::VersionStatus_Parse(row.Text("status"), &source.status);
  return source;
}

absl::StatusOr<std::vector<v1::RegistryEvent>> Registry::EventsAfter(store::Reader& db,
                                                                     int64_t after_sequence,
                                                                     int limit) {
  ASSIGN_OR_RETURN(
      Rows rows,
      db.Query("SELECT sequence, type, model, version, alias, actor, at_ms FROM registry_events "
               "WHERE sequence > $1 ORDER BY sequence LIMIT $2",
               {after_sequence, int64_t{limit}}));
  std::vector<v1::RegistryEvent> events;
  for (const store::Row& row : rows) {
    v1::RegistryEvent& event = events.emplace_back();
    event.set_sequence(row.Int("sequence"));
    event.set_type(row.Text("type"));
    event.set_model(row.Text("model"));
    event.set_version(row.Int("version"));
    event.set_alias(row.Text("alias"));
    event.set_actor(row.Text("actor"));
    *event.mutable_time() = TimeUtil::MillisecondsToTimestamp(row.Int("at_ms"));
  }
  return events;
}

absl::StatusOr<std::vector<ArtifactRecord>> Registry::Artifacts(store::Reader& db,
                                                                int64_t model_id,
                                                                int64_t version) {
  ASSIGN_OR_RETURN(Rows rows, db.Query(absl::StrCat("SELECT ", kArtifactColumns,
                                                    " FROM artifacts WHERE model_id = $1 AND "
                                                    "version = $2 ORDER BY target"),
                                       {model_id, version}));
  std::vector<ArtifactRecord> artifacts;
  for (const store::Row& row : rows) artifacts.push_back(ArtifactFromRow(row));
  return artifacts;
}

absl::StatusOr<bool> Registry::IsModule(store::Reader& db, const std::string& digest) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT 1 AS found FROM artifacts WHERE module_digest = $1 "
                                       "LIMIT 1",
                                       {digest}));
  return !rows.empty();
}

absl::Status Registry::MarkCompiling(store::Transaction& tx, int64_t model_id, int64_t version) {
  return tx
      .Execute("UPDATE model_versions SET status = 'COMPILING' WHERE model_id = $1 AND "
               "version = $2 AND status = 'REGISTERED'",
               {model_id, version})
      .status();
}

absl::StatusOr<ArtifactOutcome> Registry::RecordArtifact(store::Transaction& tx,
                                                         const ArtifactRecord& a,
                                                         bool last_of_version) {
  RETURN_IF_ERROR(
      tx.Execute(absl::StrCat("INSERT INTO artifacts (", kArtifactColumns,
                              ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                              "ON CONFLICT DO NOTHING"),
                 {a.model_id, a.version, a.target, a.backend, a.module_digest, a.module_size,
                  a.manifest, a.signature, a.validation, a.compile_seconds, a.created_at_ms,
                  a.reason})
          .status());
  if (a.reference.has_value()) {
    RETURN_IF_ERROR(SetReference(tx, a.model_id, a.version, *a.reference, a.created_at_ms).status());
  }
  ASSIGN_OR_RETURN(Rows status,
                   tx.Query("SELECT status FROM model_versions WHERE model_id = $1 AND "
                            "version = $2",
                            {a.model_id, a.version}));
  if (!status.empty() && status[0].Text("status") == "READY") {
    return ArtifactOutcome::kReadyVersionGainedModule;
  }
  if (!last_of_version) return ArtifactOutcome::kRecorded;
  ASSIGN_OR_RETURN(
      int64_t changed,
      tx.Execute("UPDATE model_versions SET status = 'READY', status_message = '' WHERE "
                 "model_id = $1 AND version = $2 AND status NOT IN ('FAILED', 'READY')",
                 {a.model_id, a.version}));
  if (changed != 1) return ArtifactOutcome::kRecorded;
  // Rollouts wait for this event rather than polling versions.
  ASSIGN_OR_RETURN(std::string model, ModelName(tx, a.model_id));
  RETURN_IF_ERROR(AppendEvent(tx, "version.ready", model, a.version, "", "ci", a.created_at_ms));
  return ArtifactOutcome::kVersionReady;
}

absl::StatusOr<std::optional<v1::ReferenceStatistics>> Registry::Reference(store::Reader& db,
                                                                           int64_t model_id,
                                                                           int64_t version) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT reference FROM version_references WHERE "
                                       "model_id = $1 AND version = $2",
                                       {model_id, version}));
  if (rows.empty()) return std::nullopt;
  v1::ReferenceStatistics reference;
  RETURN_IF_ERROR(ParseProtoJson(rows[0].Text("reference"), &reference,
                                 /*ignore_unknown_fields=*/true));
  return reference;
}

absl::StatusOr<bool> Registry::SetReference(store::Transaction& tx, int64_t model_id,
                                            int64_t version,
                                            const v1::ReferenceStatistics& reference,
                                            int64_t at_ms) {
  ASSIGN_OR_RETURN(
      int64_t inserted,
      tx.Execute("INSERT INTO version_references (model_id, version, source, reference, "
                 "created_at_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                 {model_id, version, v1::ReferenceStatistics::Source_Name(reference.source()),
                  PrintProtoJson(reference), at_ms}));
  return inserted == 1;
}

absl::StatusOr<bool> Registry::MarkFailed(store::Transaction& tx, int64_t model_id,
                                          int64_t version, const std::string& message,
                                          int64_t at_ms) {
  ASSIGN_OR_RETURN(
      int64_t changed,
      tx.Execute("UPDATE model_versions SET status = 'FAILED', status_message = $3 WHERE "
                 "model_id = $1 AND version = $2 AND status NOT IN ('FAILED', 'READY')",
                 {model_id, version, message}));
  if (changed != 1) return false;
  ASSIGN_OR_RETURN(std::string model, ModelName(tx, model_id));
  RETURN_IF_ERROR(AppendEvent(tx, "version.failed", model, version, "", "ci", at_ms));
  return true;
}

absl::Status Registry::ResignArtifacts(store::Database& database,
                                       const crypto::SigningKey& signer) {
  return store::RunInTransaction(database, [&](store::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Rows rows,
                     tx.Query("SELECT model_id, version, target, manifest FROM artifacts", {}));
    for (const store::Row& row : rows) {
      ASSIGN_OR_RETURN(std::string signature, signer.Sign(row.Text("manifest")));
      RETURN_IF_ERROR(tx.Execute("UPDATE artifacts SET signature = $4 WHERE model_id = $1 AND "
                                 "version = $2 AND target = $3",
                                 {row.Int("model_id"), row.Int("version"), row.Text("target"),
                                  signature})
                          .status());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::ListArtifactsResponse> Registry::ListArtifacts(
    const v1::ListArtifactsRequest& request) {
  v1::GetVersionRequest get;
  get.set_model(request.model());
  get.set_version(request.version());
  RETURN_IF_ERROR(GetVersion(get).status());
  ASSIGN_OR_RETURN(std::optional<int64_t> model_id,
                   FindModelId(*options_.database, request.model()));
  if (!model_id) return absl::NotFoundError(absl::StrCat("model \"", request.model(), "\" not found"));
  ASSIGN_OR_RETURN(std::vector<ArtifactRecord> artifacts,
                   Artifacts(*options_.database, *model_id, request.version()));
  v1::ListArtifactsResponse response;
  for (const ArtifactRecord& record : artifacts) {
    v1::Artifact* a = response.add_artifacts();
    a->set_model(request.model());
    a->set_version(request.version());
    a->set_target(record.target);
    a->set_backend(record.backend);
    a->set_module_digest(record.module_digest);
    a->set_module_size(record.module_size);
    a->set_manifest(record.manifest);
    a->set_signature(record.signature);
    a->set_validation(record.validation);
    a->set_compile_seconds(record.compile_seconds);
    *a->mutable_create_time() = TimeUtil::MillisecondsToTimestamp(record.created_at_ms);
    a->set_reason(record.reason);
  }
  if (options_.compile_jobs) {
    ASSIGN_OR_RETURN(std::vector<v1::CompileJob> jobs,
                     options_.compile_jobs(*model_id, request.version()));
    for (v1::CompileJob& job : jobs) *response.add_jobs() = std::move(job);
  }
  return response;
}

}  // namespace edgeloop::registry
