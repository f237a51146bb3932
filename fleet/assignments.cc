#include "fleet/assignments.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/hardware.h"
#include "common/paging.h"
#include "common/status.h"
#include "fleet/desired_change.h"
#include "google/protobuf/util/time_util.h"
#include "registry/registry.h"

namespace edgeloop::fleet {
namespace {

using google::protobuf::util::TimeUtil;
using store::Rows;
using store::Transaction;

constexpr char kColumns[] =
    "id, model_id, selector, device_id, version, alias, created_by, created_at_ms";

// `model` is the name of the row's model_id (the registry's).
v1::Assignment FromRow(const store::Row& row, const std::string& model) {
  v1::Assignment a;
  a.set_id(row.Int("id"));
  a.set_model(model);
  a.set_selector(row.Text("selector"));
  a.set_device_id(row.Text("device_id"));
  a.set_version(row.Int("version"));
  a.set_alias(row.Text("alias"));
  a.set_created_by(row.Text("created_by"));
  *a.mutable_create_time() = TimeUtil::MillisecondsToTimestamp(row.Int("created_at_ms"));
  return a;
}

// The names of the models the rows name.
absl::StatusOr<std::map<int64_t, std::string>> ModelNamesOf(store::Reader& db, const Rows& rows) {
  std::set<int64_t> ids;
  for (const store::Row& row : rows) ids.insert(row.Int("model_id"));
  return registry::Registry::ModelNames(db, ids);
}

}  // namespace

absl::StatusOr<v1::Assignment> Assignments::Assign(const v1::AssignModelRequest& request,
                                                   const std::string& actor) {
  if (request.selector().empty() == request.device_id().empty()) {
    return absl::InvalidArgumentError("give exactly one of selector and deviceId");
  }
  if ((request.version() != 0) == !request.alias().empty()) {
    return absl::InvalidArgumentError("give exactly one of version and alias");
  }
  if (request.version() < 0) return absl::InvalidArgumentError("version must be positive");
  if (!request.selector().empty()) RETURN_IF_ERROR(Selector::Parse(request.selector()).status());
  const int64_t now = absl::ToUnixMillis(clock_->Now());
  v1::Assignment assignment;
  RETURN_IF_ERROR(store::RunInTransaction(*database_, [&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<int64_t> model,
                     registry::Registry::FindModelId(tx, request.model()));
    if (!model) {
      return absl::NotFoundError(
          absl::StrCat("model \"", request.model().substr(0, 128), "\" not found"));
    }
    const int64_t model_id = *model;
    if (request.version() != 0) {
      ASSIGN_OR_RETURN(bool exists,
                       registry::Registry::HasVersion(tx, model_id, request.version()));
      if (!exists) {
        return absl::NotFoundError(
            absl::StrCat("model \"", request.model(), "\" has no version ", request.version()));
      }
    } else {
      ASSIGN_OR_RETURN(std::optional<int64_t> target,
                       registry::Registry::AliasTarget(tx, model_id, request.alias()));
      if (!target) {
        return absl::NotFoundError(absl::StrCat("model \"", request.model(), "\" has no alias \"",
                                                request.alias().substr(0, 128), "\""));
      }
    }
    if (!request.device_id().empty()) {
      ASSIGN_OR_RETURN(Rows d,
                       tx.Query("SELECT status FROM devices WHERE id = $1", {request.device_id()}));
      if (d.empty()) {
        return absl::NotFoundError(
            absl::StrCat("device \"", request.device_id().substr(0, 64), "\" not found"));
      }
    }
    ASSIGN_OR_RETURN(
        Rows inserted,
        tx.Query("INSERT INTO assignments (model_id, selector, device_id, version, alias, "
                 "created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                 {model_id, request.selector(), request.device_id(), request.version(),
                  request.alias(), actor, now}));
    RETURN_IF_ERROR(Touch(tx));
    assignment.set_id(inserted[0].Int("id"));
    return absl::OkStatus();
  }));
  assignment.set_model(request.model());
  assignment.set_selector(request.selector());
  assignment.set_device_id(request.device_id());
  assignment.set_version(request.version());
  assignment.set_alias(request.alias());
  assignment.set_created_by(actor);
  *assignment.mutable_create_time() = TimeUtil::MillisecondsToTimestamp(now);
  return assignment;
}

absl::StatusOr<v1::ListAssignmentsResponse> Assignments::List(
    const v1::ListAssignmentsRequest& request) {
  ASSIGN_OR_RETURN(const int64_t before,
                   IntPageToken(request.page_token(), std::numeric_limits<int64_t>::max()));
  const int page = PageSize(request.page_size());
  // Of one model: its id, or an empty page when there is no such model.
  int64_t model_id = 0;
  if (!request.model().empty()) {
    ASSIGN_OR_RETURN(std::optional<int64_t> id,
                     registry::Registry::FindModelId(*database_, request.model()));
    if (!id) return v1::ListAssignmentsResponse();
    model_id = *id;
  }
  ASSIGN_OR_RETURN(Rows rows,
                   database_->Query(absl::StrCat("SELECT ", kColumns,
                                                 " FROM assignments WHERE ($1 = 0 OR model_id = "
                                                 "$1) AND id < $2 ORDER BY id DESC LIMIT $3"),
                                    {model_id, before, int64_t{page} + 1}));
  ASSIGN_OR_RETURN(const auto names, ModelNamesOf(*database_, rows));
  v1::ListAssignmentsResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_next_page_token(),
      TakePage(
          rows, page,
          [&](const store::Row& row) {
            *response.add_assignments() = FromRow(row, names.count(row.Int("model_id")) ? names.at(row.Int("model_id")) : "");
            return absl::OkStatus();
          },
          [](const store::Row& row) { return std::to_string(row.Int("id")); }));
  return response;
}

absl::Status Assignments::DesiredFor(const std::string& device_id, const Attributes& attributes,
                                     const std::string& device_target, v1::SyncResponse* out) {
  // The assignments that may apply (this device's own and every selector's), newest first;
  // the first that applies wins its model. Both halves are indexed: other devices' own
  // assignments, which grow with the fleet, are never read.
  // (A UNION, not an OR: SQLite's planner would scan the table for the OR.)
  const std::string from = absl::StrCat("SELECT ", kColumns, " FROM assignments");
  ASSIGN_OR_RETURN(Rows rows,
                   database_->Query(absl::StrCat(from, " WHERE device_id = $1 UNION ALL ", from,
                                                 " WHERE selector <> '' ORDER BY id DESC"),
                                    {device_id}));
  struct Choice {
    int64_t version = 0;      // 0: the alias, not resolved yet
    std::string alias;
    int64_t ordered_at_ms = 0;
    std::optional<int64_t> override_version;  // a newer rollout's, tried first
    int64_t override_at_ms = 0;
    std::optional<DesiredOverride> shadow;    // a newer rollout's, to run beside
  };
  std::map<int64_t, Choice> choices;  // by model id
  for (const store::Row& row : rows) {
    const int64_t model_id = row.Int("model_id");
    if (choices.count(model_id)) continue;
    bool applies = row.Text("device_id") == device_id;
    if (!row.Text("selector").empty()) {
      absl::StatusOr<Selector> selector = Selector::Parse(row.Text("selector"));
      applies = selector.ok() && selector->Matches(attributes);
    }
    if (!applies) continue;
    Choice& c = choices[model_id];
    c.version = row.Int("version");
    c.alias = row.Text("alias");
    c.ordered_at_ms = row.Int("created_at_ms");
  }
  if (overrides_) {
    ASSIGN_OR_RETURN(std::vector<DesiredOverride> overrides, overrides_(device_id, attributes));
    // Serving overrides first: a shadow is judged against what they leave.
    std::stable_partition(overrides.begin(), overrides.end(),
                          [](const DesiredOverride& o) { return !o.shadow.has_value(); });
    for (const DesiredOverride& o : overrides) {
      Choice& c = choices[o.model_id];
      const int64_t newest = std::max(c.ordered_at_ms, c.override_at_ms);
      if (o.ordered_at_ms < newest) continue;  // a tie goes to the rollout
      if (o.shadow.has_value()) {
        c.shadow = o;
      } else {
        c.override_version = o.version;
        c.override_at_ms = o.ordered_at_ms;
      }
    }
  }
  std::set<int64_t> ids;
  for (const auto& [model_id, choice] : choices) ids.insert(model_id);
  ASSIGN_OR_RETURN(const auto names, registry::Registry::ModelNames(*database_, ids));

  // The module of `version` for the highest class the device runs: within a family, class
  // names sort by level (x86_64-v1 < … < v4, aarch64-v8 < aarch64-v8.2-dotprod), so the last
  // one the device runs is the best.
  auto module_of = [&](int64_t model_id, int64_t version)
      -> absl::StatusOr<std::optional<v1::ModuleRef>> {
    ASSIGN_OR_RETURN(std::vector<registry::ArtifactRecord> artifacts,
                     registry::Registry::Artifacts(*database_, model_id, version));
    const registry::ArtifactRecord* best = nullptr;
    for (const registry::ArtifactRecord& artifact : artifacts) {
      if (TargetRunsOn(artifact.target, device_target)) best = &artifact;
    }
    if (best == nullptr) return std::nullopt;
    v1::ModuleRef ref;
    ref.set_model(names.at(model_id));
    ref.set_version(version);
    ref.set_target(best->target);
    ref.set_digest(best->module_digest);
    ref.set_size(best->module_size);
    ref.set_manifest(best->manifest);
    ref.set_signature(best->signature);
    return ref;
  };
  for (const auto& [model_id, choice] : choices) {
    if (!names.count(model_id)) continue;
    std::optional<v1::ModuleRef> active;
    if (choice.override_version.has_value()) {
      ASSIGN_OR_RETURN(active, module_of(model_id, *choice.override_version));
    }
    if (!active.has_value() && choice.ordered_at_ms > 0) {
      int64_t version = choice.version;
      if (!choice.alias.empty()) {
        ASSIGN_OR_RETURN(std::optional<int64_t> target,
                         registry::Registry::AliasTarget(*database_, model_id, choice.alias));
        if (!target) continue;
        version = *target;
      }
      ASSIGN_OR_RETURN(active, module_of(model_id, version));
    }
    std::optional<v1::ModuleRef> shadow;
    if (choice.shadow.has_value()) {
      ASSIGN_OR_RETURN(shadow, module_of(model_id, choice.shadow->version));
    }
    if (!active.has_value()) {
      active = std::move(shadow);  // nothing to shadow beside: it serves
      shadow.reset();
    }
    if (!active.has_value()) continue;
    if (monitoring_) RETURN_IF_ERROR(monitoring_(model_id, *active));
    if (shadow.has_value() && shadow->version() != active->version()) {
      v1::ShadowModule* s = out->add_shadow_modules();
      *s = *choice.shadow->shadow;
      *s->mutable_module() = *std::move(shadow);
    }
    *out->add_desired_modules() = *std::move(active);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Assignments::IsModule(const std::string& digest) {
  return registry::Registry::IsModule(*database_, digest);
}

absl::StatusOr<std::vector<std::pair<int64_t, int64_t>>> Assignments::PinnedVersions(
    store::Reader& db) {
  // The newest assignment of each (model, selector or device) is the one in force.
  ASSIGN_OR_RETURN(Rows rows,
                   db.Query("SELECT DISTINCT model_id, version FROM assignments WHERE version > 0 "
                            "AND id IN (SELECT MAX(id) FROM assignments GROUP BY model_id, "
                            "selector, device_id) ORDER BY model_id, version"));
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const store::Row& row : rows) out.emplace_back(row.Int("model_id"), row.Int("version"));
  return out;
}

absl::StatusOr<int64_t> Assignments::Generation() {
  ASSIGN_OR_RETURN(Rows rows,
                   database_->Query("SELECT generation FROM desired_state WHERE id = 1", {}));
  if (rows.empty()) return absl::InternalError("desired_state row is missing");
  return rows[0].Int("generation");
}

absl::Status Assignments::Touch() {
  return store::RunInTransaction(*database_, [](Transaction& tx) { return Touch(tx); });
}

absl::Status Assignments::Touch(Transaction& tx) {
  RETURN_IF_ERROR(
      tx.Execute("UPDATE desired_state SET generation = generation + 1 WHERE id = 1").status());
  return PublishDesiredChange(tx);  // every device's
}

}  // namespace edgeloop::fleet
