#include "fleet/assignments.h"

#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/hardware.h"
#include "common/paging.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"

namespace edgeloop::fleet {
namespace {

using google::protobuf::util::TimeUtil;
using store::Rows;
using store::Transaction;

constexpr char kColumns[] =
    "a.id, m.name, a.selector, a.device_id, a.version, a.alias, a.created_by, a.created_at_ms, "
    "a.model_id";

v1::Assignment FromRow(const store::Row& row) {
  v1::Assignment a;
  a.set_id(row.Int(0));
  a.set_model(row.Text(1));
  a.set_selector(row.Text(2));
  a.set_device_id(row.Text(3));
  a.set_version(row.Int(4));
  a.set_alias(row.Text(5));
  a.set_created_by(row.Text(6));
  *a.mutable_create_time() = TimeUtil::MillisecondsToTimestamp(row.Int(7));
  return a;
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
    ASSIGN_OR_RETURN(Rows model,
                     tx.Query("SELECT id FROM models WHERE name = $1", {request.model()}));
    if (model.empty()) {
      return absl::NotFoundError(
          absl::StrCat("model \"", request.model().substr(0, 128), "\" not found"));
    }
    const int64_t model_id = model[0].Int(0);
    if (request.version() != 0) {
      ASSIGN_OR_RETURN(Rows v, tx.Query("SELECT 1 FROM model_versions WHERE model_id = $1 AND "
                                        "version = $2",
                                        {model_id, request.version()}));
      if (v.empty()) {
        return absl::NotFoundError(
            absl::StrCat("model \"", request.model(), "\" has no version ", request.version()));
      }
    } else {
      ASSIGN_OR_RETURN(Rows a, tx.Query("SELECT 1 FROM aliases WHERE model_id = $1 AND alias = $2",
                                        {model_id, request.alias()}));
      if (a.empty()) {
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
    assignment.set_id(inserted[0].Int(0));
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
  ASSIGN_OR_RETURN(
      Rows rows,
      database_->Query(absl::StrCat("SELECT ", kColumns,
                                    " FROM assignments a JOIN models m ON m.id = a.model_id "
                                    "WHERE ($1 = '' OR m.name = $1) AND a.id < $2 "
                                    "ORDER BY a.id DESC LIMIT $3"),
                       {request.model(), before, int64_t{page} + 1}));
  v1::ListAssignmentsResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_next_page_token(),
      TakePage(
          rows, page,
          [&](const store::Row& row) {
            *response.add_assignments() = FromRow(row);
            return absl::OkStatus();
          },
          [](const store::Row& row) { return std::to_string(row.Int(0)); }));
  return response;
}

absl::StatusOr<std::vector<v1::ModuleRef>> Assignments::DesiredFor(
    const std::string& device_id, const Attributes& attributes, const std::string& device_target) {
  // The assignments that may apply (this device's own and every selector's), newest first;
  // the first that applies wins its model. Both halves are indexed: other devices' own
  // assignments, which grow with the fleet, are never read.
  // (A UNION, not an OR: SQLite's planner would scan the table for the OR.)
  const std::string from =
      absl::StrCat("SELECT ", kColumns, " FROM assignments a JOIN models m ON m.id = a.model_id");
  ASSIGN_OR_RETURN(Rows rows,
                   database_->Query(absl::StrCat(from, " WHERE a.device_id = $1 UNION ALL ", from,
                                                 " WHERE a.selector <> '' ORDER BY 1 DESC"),
                                    {device_id}));
  std::vector<v1::ModuleRef> desired;
  std::set<int64_t> decided;
  for (const store::Row& row : rows) {
    const int64_t model_id = row.Int(8);
    if (decided.count(model_id)) continue;
    const v1::Assignment a = FromRow(row);
    bool applies = a.device_id() == device_id;
    if (!a.selector().empty()) {
      absl::StatusOr<Selector> selector = Selector::Parse(a.selector());
      applies = selector.ok() && selector->Matches(attributes);
    }
    if (!applies) continue;
    decided.insert(model_id);
    int64_t version = a.version();
    if (!a.alias().empty()) {
      ASSIGN_OR_RETURN(Rows alias,
                       database_->Query("SELECT version FROM aliases WHERE model_id = $1 AND "
                                        "alias = $2",
                                        {model_id, a.alias()}));
      if (alias.empty()) continue;
      version = alias[0].Int(0);
    }
    ASSIGN_OR_RETURN(Rows artifacts,
                     database_->Query("SELECT target, module_digest, module_size, manifest, "
                                      "signature FROM artifacts WHERE model_id = $1 AND "
                                      "version = $2 ORDER BY target",
                                      {model_id, version}));
    // Within a family, class names sort by level (x86_64-v1 < … < v4, aarch64-v8 <
    // aarch64-v8.2-dotprod): the last one the device runs is the best.
    const store::Row* best = nullptr;
    for (const store::Row& artifact : artifacts) {
      if (TargetRunsOn(artifact.Text(0), device_target)) best = &artifact;
    }
    if (best == nullptr) continue;
    v1::ModuleRef ref;
    ref.set_model(a.model());
    ref.set_version(version);
    ref.set_target(best->Text(0));
    ref.set_digest(best->Text(1));
    ref.set_size(best->Int(2));
    ref.set_manifest(best->Text(3));
    ref.set_signature(best->Text(4));
    desired.push_back(std::move(ref));
  }
  return desired;
}

absl::StatusOr<bool> Assignments::IsModule(const std::string& digest) {
  ASSIGN_OR_RETURN(
      Rows rows,
      database_->Query("SELECT 1 FROM artifacts WHERE module_digest = $1 LIMIT 1", {digest}));
  return !rows.empty();
}

absl::StatusOr<int64_t> Assignments::Generation() {
  ASSIGN_OR_RETURN(Rows rows,
                   database_->Query("SELECT generation FROM desired_state WHERE id = 1", {}));
  if (rows.empty()) return absl::InternalError("desired_state row is missing");
  return rows[0].Int(0);
}

absl::Status Assignments::Touch() {
  return store::RunInTransaction(*database_, [](Transaction& tx) { return Touch(tx); });
}

absl::Status Assignments::Touch(Transaction& tx) {
  return tx.Execute("UPDATE desired_state SET generation = generation + 1 WHERE id = 1").status();
}

}  // namespace edgeloop::fleet
