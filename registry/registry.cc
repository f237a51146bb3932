#include "registry/registry.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/monitored_feature.h"
#include "common/names.h"
#include "common/paging.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "registry/event_log.h"
#include "registry/onnx_inspector.h"

namespace edgeloop::registry {
namespace {

using google::protobuf::util::TimeUtil;
using store::Rows;
using store::Transaction;
using store::Value;

// Descriptive fields are stored as JSON; records written by a newer release may carry
// fields this one does not know, which it ignores rather than refusing to read.
absl::Status FromJson(const std::string& json, google::protobuf::Message* message) {
  absl::Status status = ParseProtoJson(json, message, /*ignore_unknown_fields=*/true);
  if (!status.ok())
    return absl::DataLossError(absl::StrCat("stored record is corrupt: ", status.message()));
  return absl::OkStatus();
}

absl::Status NoSuchModel(absl::string_view name) {
  return absl::NotFoundError(absl::StrCat("model \"", name, "\" not found"));
}

absl::Status ValidateVersionRequest(const v1::CreateVersionRequest& r) {
  RETURN_IF_ERROR(ValidateModelName(r.model()));
  RETURN_IF_ERROR(CheckDigest("onnxDigest", r.onnx_digest()));
  if (!r.validation_digest().empty())
    RETURN_IF_ERROR(CheckDigest("validationDigest", r.validation_digest()));
  if (!r.calibration_digest().empty())
    RETURN_IF_ERROR(CheckDigest("calibrationDigest", r.calibration_digest()));
  if (r.metrics().size() > 256) return absl::InvalidArgumentError("too many metrics (at most 256)");
  for (const auto& [name, value] : r.metrics()) {
    if (name.empty() || name.size() > 128) {
      return absl::InvalidArgumentError("metric names must have 1-128 characters");
    }
    if (!std::isfinite(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric \"", name, "\" is not a finite number"));
    }
  }
  RETURN_IF_ERROR(ValidateLabels(r.labels()));
  const v1::Lineage& lineage = r.lineage();
  if (lineage.parent_version() < 0)
    return absl::InvalidArgumentError("lineage.parentVersion is negative");
  if (!lineage.dataset_digest().empty()) {
    RETURN_IF_ERROR(CheckDigest("lineage.datasetDigest", lineage.dataset_digest()));
  }
  if (lineage.training_run_id().size() > 256)
    return absl::InvalidArgumentError("lineage.trainingRunId is too long");
  if (lineage.source().size() > 4096)
    return absl::InvalidArgumentError("lineage.source is too long (4096)");
  return absl::OkStatus();
}

// The push's features, checked against the model's inputs, or the defaults for its float
// inputs (the only ones devices compute features of), on the shapes modules are built for.
absl::StatusOr<google::protobuf::RepeatedPtrField<v1::MonitoredFeature>> MonitoredFeatures(
    const v1::CreateVersionRequest& request, const OnnxSummary& summary) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> inputs;
  for (const v1::TensorSpec& spec : summary.inputs) {
    if (spec.dtype() != "float32") continue;
    std::vector<int64_t> shape(spec.shape().begin(), spec.shape().end());
    // A symbolic first dimension is the batch, which modules are compiled for as 1.
    if (!shape.empty() && shape[0] < 0) shape[0] = 1;
    inputs.emplace_back(spec.name(), std::move(shape));
  }
  std::vector<v1::MonitoredFeature> features;
  for (const v1::MonitoredFeature& f : request.monitored_features()) {
    // A feature may be given by its name alone ("input.mean", "input[3]").
    if (f.kind() == v1::MonitoredFeature::KIND_UNSPECIFIED) {
      ASSIGN_OR_RETURN(features.emplace_back(), ParseMonitoredFeature(f.name()));
    } else {
      features.push_back(f);
    }
  }
  if (features.empty()) {
    features = DefaultMonitoredFeatures(inputs);
  } else {
    RETURN_IF_ERROR(CheckMonitoredFeatures(features, inputs));
  }
  return google::protobuf::RepeatedPtrField<v1::MonitoredFeature>(features.begin(), features.end());
}

constexpr char kVersionColumns[] =
    "v.version, v.onnx_digest, v.onnx_size, v.status, v.status_message, v.details, "
    "v.created_at_ms, "
    "v.created_by";

absl::StatusOr<v1::ModelVersion> VersionFromRow(absl::string_view model, const store::Row& row) {
  v1::ModelVersion version;
  RETURN_IF_ERROR(FromJson(row.Text("details"), &version));
  version.set_model(std::string(model));
  version.set_version(row.Int("version"));
  version.set_onnx_digest(row.Text("onnx_digest"));
  version.set_onnx_size(row.Int("onnx_size"));
  v1::VersionStatus status = v1::VERSION_STATUS_UNSPECIFIED;
  v1::VersionStatus_Parse(row.Text("status"), &status);
  version.set_status(status);
  version.set_status_message(row.Text("status_message"));
  *version.mutable_create_time() = TimeUtil::MillisecondsToTimestamp(row.Int("created_at_ms"));
  version.set_created_by(row.Text("created_by"));
  return version;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Registry>> Registry::Create(const RegistryOptions& options) {
  if (options.database == nullptr || options.blobs == nullptr || options.clock == nullptr) {
    return absl::InvalidArgumentError("registry needs a database, a blob store and a clock");
  }
  return std::unique_ptr<Registry>(new Registry(options));
}

absl::StatusOr<v1::Model> Registry::CreateModel(const v1::CreateModelRequest& request,
                                                absl::string_view actor) {
  RETURN_IF_ERROR(ValidateModelName(request.name()));
  RETURN_IF_ERROR(ValidateLabels(request.labels()));
  if (request.description().size() > 4096) {
    return absl::InvalidArgumentError("description is longer than 4096 characters");
  }
  v1::Model labels_only;
  *labels_only.mutable_labels() = request.labels();
  const int64_t now = absl::ToUnixMillis(options_.clock->Now());
  absl::Status status =
      store::RunInTransaction(*options_.database, [&](Transaction& tx) -> absl::Status {
        RETURN_IF_ERROR(
            tx.Execute(
                  "INSERT INTO models (name, description, labels, next_version, created_at_ms, "
                  "created_by) VALUES ($1, $2, $3, 1, $4, $5)",
                  {request.name(), request.description(), PrintProtoJson(labels_only), now,
                   std::string(actor)})
                .status());
        return AppendEvent(tx, "model.created", request.name(), 0, "", actor, now);
      });
  if (status.code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(absl::StrCat("model \"", request.name(), "\" already exists"));
  }
  RETURN_IF_ERROR(status);
  v1::GetModelRequest get;
  get.set_model(request.name());
  return GetModel(get);
}

absl::StatusOr<v1::Model> Registry::GetModel(const v1::GetModelRequest& request) {
  RETURN_IF_ERROR(ValidateModelName(request.model()));
  ASSIGN_OR_RETURN(
      Rows rows,
      options_.database->Query(
          "SELECT id, name, description, labels, next_version, created_at_ms, created_by "
          "FROM models WHERE name = $1",
          {request.model()}));
  if (rows.empty()) return NoSuchModel(request.model());
  const store::Row& row = rows[0];
  v1::Model model;
  RETURN_IF_ERROR(FromJson(row.Text("labels"), &model));
  model.set_name(row.Text("name"));
  model.set_description(row.Text("description"));
  model.set_latest_version(row.Int("next_version") - 1);
  *model.mutable_create_time() = TimeUtil::MillisecondsToTimestamp(row.Int("created_at_ms"));
  model.set_created_by(row.Text("created_by"));
  ASSIGN_OR_RETURN(Rows aliases,
                   options_.database->Query(
                       "SELECT alias, version FROM aliases WHERE model_id = $1", {row.Int("id")}));
  for (const store::Row& a : aliases) (*model.mutable_aliases())[a.Text("alias")] = a.Int("version");
  return model;
}

absl::StatusOr<v1::ListModelsResponse> Registry::ListModels(const v1::ListModelsRequest& request) {
  if (!request.page_token().empty()) RETURN_IF_ERROR(ValidateModelName(request.page_token()));
  int page = PageSize(request.page_size());
  ASSIGN_OR_RETURN(Rows rows, options_.database->Query(
                                  "SELECT name FROM models WHERE name > $1 ORDER BY name LIMIT $2",
                                  {request.page_token(), int64_t{page} + 1}));
  v1::ListModelsResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_next_page_token(),
      TakePage(
          rows, page,
          [&](const store::Row& row) -> absl::Status {
            v1::GetModelRequest get;
            get.set_model(row.Text("name"));
            ASSIGN_OR_RETURN(*response.add_models(), GetModel(get));
            return absl::OkStatus();
          },
          [](const store::Row& row) { return row.Text("name"); }));
  return response;
}

absl::StatusOr<v1::ModelVersion> Registry::CreateVersion(const v1::CreateVersionRequest& request,
                                                         absl::string_view actor) {
  RETURN_IF_ERROR(ValidateVersionRequest(request));
  // Cheap checks first: a push to a missing model should not read a large file.
  ASSIGN_OR_RETURN(Rows exists, options_.database->Query("SELECT 1 FROM models WHERE name = $1",
                                                         {request.model()}));
  if (exists.empty()) return NoSuchModel(request.model());

  auto onnx = options_.blobs->Open(request.onnx_digest());
  if (absl::IsNotFound(onnx.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ONNX blob ", request.onnx_digest(), " has not been uploaded; POST it to /v1/blobs first"));
  }
  RETURN_IF_ERROR(onnx.status());
  if (!inspections_.try_acquire_for(absl::ToChronoMilliseconds(options_.inspection_wait))) {
    return absl::UnavailableError(absl::StrCat(
        "the server is busy inspecting ", options_.max_concurrent_inspections,
        " other pushed models; retry this push"));
  }
  absl::StatusOr<OnnxSummary> inspected = InspectOnnx(**onnx);
  inspections_.release();
  ASSIGN_OR_RETURN(OnnxSummary summary, std::move(inspected));
  for (const auto& [field, digest] : {std::pair<const char*, const std::string*>{
                                          "validationDigest", &request.validation_digest()},
                                      {"calibrationDigest", &request.calibration_digest()}}) {
    if (digest->empty()) continue;
    auto info = options_.blobs->Stat(*digest);
    if (absl::IsNotFound(info.status())) {
      return absl::FailedPreconditionError(
          absl::StrCat(field, " blob ", *digest, " has not been uploaded"));
    }
    RETURN_IF_ERROR(info.status());
  }

  v1::ModelVersion details;  // the descriptive part, stored as JSON
  details.set_validation_digest(request.validation_digest());
  details.set_calibration_digest(request.calibration_digest());
  *details.mutable_metrics() = request.metrics();
  *details.mutable_labels() = request.labels();
  if (request.has_lineage()) *details.mutable_lineage() = request.lineage();
  for (auto& spec : summary.inputs) *details.add_inputs() = spec;
  for (auto& spec : summary.outputs) *details.add_outputs() = spec;
  details.set_opset(summary.opset);
  details.set_producer(summary.producer);
  ASSIGN_OR_RETURN(*details.mutable_monitored_features(), MonitoredFeatures(request, summary));
  const std::string details_json = PrintProtoJson(details);
  const int64_t now = absl::ToUnixMillis(options_.clock->Now());
  const int64_t onnx_size = (*onnx)->size();

  int64_t number = 0;
  RETURN_IF_ERROR(store::RunInTransaction(*options_.database, [&](Transaction& tx) -> absl::Status {
    // The row lock taken by this UPDATE serialises version allocation per model.
    ASSIGN_OR_RETURN(Rows rows,
                     tx.Query("UPDATE models SET next_version = next_version + 1 WHERE name = $1 "
                              "RETURNING id, next_version - 1 AS version",
                              {request.model()}));
    if (rows.empty()) return NoSuchModel(request.model());
    const int64_t model_id = rows[0].Int("id");
    number = rows[0].Int("version");
    const int64_t parent = request.lineage().parent_version();
    if (parent > 0) {
      ASSIGN_OR_RETURN(Rows p,
                       tx.Query("SELECT 1 FROM model_versions WHERE model_id = $1 AND version = $2",
                                {model_id, parent}));
      if (p.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("lineage.parentVersion ", parent,
                                                       " is not a version of model \"",
                                                       request.model(), "\""));
      }
    }
    RETURN_IF_ERROR(
        tx.Execute("INSERT INTO model_versions (model_id, version, onnx_digest, onnx_size, status, "
                   "status_message, details, created_at_ms, created_by) "
                   "VALUES ($1, $2, $3, $4, $5, '', $6, $7, $8)",
                   {model_id, number, request.onnx_digest(), onnx_size,
                    v1::VersionStatus_Name(v1::REGISTERED), details_json, now, std::string(actor)})
            .status());
    return AppendEvent(tx, "version.created", request.model(), number, "", actor, now);
  }));
  v1::GetVersionRequest get;
  get.set_model(request.model());
  get.set_version(number);
  return GetVersion(get);
}

absl::StatusOr<v1::ModelVersion> Registry::GetVersion(const v1::GetVersionRequest& request) {
  RETURN_IF_ERROR(ValidateModelName(request.model()));
  int64_t number = request.version();
  if (!request.alias().empty()) {
    v1::GetAliasRequest alias_request;
    alias_request.set_model(request.model());
    alias_request.set_alias(request.alias());
    ASSIGN_OR_RETURN(v1::Alias alias, GetAlias(alias_request));
    number = alias.version();
  } else if (number <= 0) {
    return absl::InvalidArgumentError("version must be a positive number (or give an alias)");
  }
  ASSIGN_OR_RETURN(Rows rows,
                   options_.database->Query(
                       absl::StrCat("SELECT v.model_id, ", kVersionColumns,
                                    " FROM model_versions v JOIN models m ON "
                                    "m.id = v.model_id WHERE m.name = $1 AND v.version = $2"),
                       {request.model(), number}));
  if (rows.empty()) {
    ASSIGN_OR_RETURN(Rows model, options_.database->Query("SELECT 1 FROM models WHERE name = $1",
                                                          {request.model()}));
    if (model.empty()) return NoSuchModel(request.model());
    return absl::NotFoundError(
        absl::StrCat("model \"", request.model(), "\" has no version ", number));
  }
  ASSIGN_OR_RETURN(v1::ModelVersion version, VersionFromRow(request.model(), rows[0]));
  ASSIGN_OR_RETURN(auto reference, Reference(*options_.database, rows[0].Int("model_id"), number));
  if (reference.has_value()) *version.mutable_reference() = *std::move(reference);
  return version;
}

absl::StatusOr<v1::ListVersionsResponse> Registry::ListVersions(
    const v1::ListVersionsRequest& request) {
  RETURN_IF_ERROR(ValidateModelName(request.model()));
  ASSIGN_OR_RETURN(const int64_t after, IntPageToken(request.page_token(), 0));
  ASSIGN_OR_RETURN(Rows model, options_.database->Query("SELECT id FROM models WHERE name = $1",
                                                        {request.model()}));
  if (model.empty()) return NoSuchModel(request.model());
  int page = PageSize(request.page_size());
  ASSIGN_OR_RETURN(
      Rows rows, options_.database->Query(
                     absl::StrCat("SELECT ", kVersionColumns,
                                  " FROM model_versions v WHERE "
                                  "v.model_id = $1 AND v.version > $2 ORDER BY v.version LIMIT $3"),
                     {model[0].Int("id"), after, int64_t{page} + 1}));
  v1::ListVersionsResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_next_page_token(),
      TakePage(
          rows, page,
          [&](const store::Row& row) -> absl::Status {
            ASSIGN_OR_RETURN(*response.add_versions(), VersionFromRow(request.model(), row));
            return absl::OkStatus();
          },
          [](const store::Row& row) { return std::to_string(row.Int("version")); }));
  return response;
}

absl::StatusOr<v1::Alias> Registry::SetAlias(const v1::SetAliasRequest& request,
                                             absl::string_view actor) {
  RETURN_IF_ERROR(ValidateModelName(request.model()));
  RETURN_IF_ERROR(ValidateAliasName(request.alias()));
  if (request.version() <= 0)
    return absl::InvalidArgumentError("version must be a positive number");
  const int64_t now = absl::ToUnixMillis(options_.clock->Now());
  const bool postgres = options_.database->dialect() == store::Dialect::kPostgres;
  RETURN_IF_ERROR(store::RunInTransaction(*options_.database, [&](Transaction& tx) -> absl::Status {
    // Lock the model so concurrent moves of its aliases record a consistent from → to chain
    // (SQLite's write lock already serialises transactions).
    ASSIGN_OR_RETURN(Rows model, tx.Query(absl::StrCat("SELECT id FROM models WHERE name = $1",
                                                       postgres ? " FOR UPDATE" : ""),
                                          {request.model()}));
    if (model.empty()) return NoSuchModel(request.model());
    const int64_t model_id = model[0].Int("id");
    ASSIGN_OR_RETURN(Rows version,
                     tx.Query("SELECT 1 FROM model_versions WHERE model_id = $1 AND version = $2",
                              {model_id, request.version()}));
    if (version.empty()) {
      return absl::NotFoundError(
          absl::StrCat("model \"", request.model(), "\" has no version ", request.version()));
    }
    ASSIGN_OR_RETURN(Rows current,
                     tx.Query("SELECT version FROM aliases WHERE model_id = $1 AND alias = $2",
                              {model_id, request.alias()}));
    const int64_t from = current.empty() ? 0 : current[0].Int("version");
    if (from == request.version()) return absl::OkStatus();
    if (current.empty()) {
      RETURN_IF_ERROR(
          tx.Execute("INSERT INTO aliases (model_id, alias, version, updated_at_ms, updated_by) "
                     "VALUES ($1, $2, $3, $4, $5)",
                     {model_id, request.alias(), request.version(), now, std::string(actor)})
              .status());
    } else {
      RETURN_IF_ERROR(
          tx.Execute("UPDATE aliases SET version = $3, updated_at_ms = $4, updated_by = $5 "
                     "WHERE model_id = $1 AND alias = $2",
                     {model_id, request.alias(), request.version(), now, std::string(actor)})
              .status());
    }
    RETURN_IF_ERROR(
        tx.Execute(
              "INSERT INTO alias_history (model_id, alias, from_version, to_version, actor, at_ms) "
              "VALUES ($1, $2, $3, $4, $5, $6)",
              {model_id, request.alias(), from, request.version(), std::string(actor), now})
            .status());
    return AppendEvent(tx, "alias.moved", request.model(), request.version(), request.alias(),
                       actor, now);
  }));
  v1::GetAliasRequest get;
  get.set_model(request.model());
  get.set_alias(request.alias());
  return GetAlias(get);
}

absl::StatusOr<v1::Alias> Registry::GetAlias(const v1::GetAliasRequest& request) {
  RETURN_IF_ERROR(ValidateModelName(request.model()));
  RETURN_IF_ERROR(ValidateAliasName(request.alias()));
  ASSIGN_OR_RETURN(
      Rows rows,
      options_.database->Query(
          "SELECT a.version, a.updated_at_ms, a.updated_by FROM aliases a JOIN models m ON "
          "m.id = a.model_id WHERE m.name = $1 AND a.alias = $2",
          {request.model(), request.alias()}));
  if (rows.empty()) {
    ASSIGN_OR_RETURN(Rows model, options_.database->Query("SELECT 1 FROM models WHERE name = $1",
                                                          {request.model()}));
    if (model.empty()) return NoSuchModel(request.model());
    return absl::NotFoundError(
        absl::StrCat("model \"", request.model(), "\" has no alias \"", request.alias(), "\""));
  }
  v1::Alias alias;
  alias.set_model(request.model());
  alias.set_alias(request.alias());
  alias.set_version(rows[0].Int("version"));
  *alias.mutable_update_time() = TimeUtil::MillisecondsToTimestamp(rows[0].Int("updated_at_ms"));
  alias.set_updated_by(rows[0].Text("updated_by"));
  return alias;
}

absl::StatusOr<v1::GetAliasHistoryResponse> Registry::GetAliasHistory(
    const v1::GetAliasHistoryRequest& request) {
  v1::GetAliasRequest get;
  get.set_model(request.model());
  get.set_alias(request.alias());
  RETURN_IF_ERROR(GetAlias(get).status());
  ASSIGN_OR_RETURN(const int64_t after, IntPageToken(request.page_token(), 0));
  const int page = PageSize(request.page_size());
  ASSIGN_OR_RETURN(
      Rows rows,
      options_.database->Query(
          "SELECT h.from_version, h.to_version, h.actor, h.at_ms, h.id FROM alias_history h JOIN "
          "models m ON m.id = h.model_id WHERE m.name = $1 AND h.alias = $2 AND h.id > $3 "
          "ORDER BY h.id LIMIT $4",
          {request.model(), request.alias(), after, int64_t{page} + 1}));
  v1::GetAliasHistoryResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_next_page_token(),
      TakePage(
          rows, page,
          [&](const store::Row& row) {
            v1::AliasMove* move = response.add_moves();
            move->set_model(request.model());
            move->set_alias(request.alias());
            move->set_from_version(row.Int("from_version"));
            move->set_to_version(row.Int("to_version"));
            move->set_actor(row.Text("actor"));
            *move->mutable_time() = TimeUtil::MillisecondsToTimestamp(row.Int("at_ms"));
            return absl::OkStatus();
          },
          [](const store::Row& row) { return std::to_string(row.Int("id")); }));
  return response;
}


absl::StatusOr<v1::ListEventsResponse> Registry::ListEvents(const v1::ListEventsRequest& request) {
  ASSIGN_OR_RETURN(std::vector<v1::RegistryEvent> events,
                   EventsAfter(*options_.database, request.after_sequence(),
                               PageSize(request.limit())));
  v1::ListEventsResponse response;
  for (v1::RegistryEvent& event : events) *response.add_events() = std::move(event);
  return response;
}

absl::StatusOr<RegistrySizes> Registry::Sizes() {
  ASSIGN_OR_RETURN(Rows rows, options_.database->Query(
                                  "SELECT (SELECT COUNT(*) FROM models) AS models, "
                                  "(SELECT COUNT(*) FROM model_versions) AS versions, "
                                  "(SELECT COUNT(*) FROM aliases) AS aliases",
                                  {}));
  return RegistrySizes{rows[0].Int("models"), rows[0].Int("versions"), rows[0].Int("aliases")};
}

}  // namespace edgeloop::registry
