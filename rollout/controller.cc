#include "rollout/controller.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/hardware.h"
#include "common/logging.h"
#include "common/paging.h"
#include "common/sha256.h"
#include "common/status.h"
#include "fleet/device_registry.h"
#include "google/protobuf/util/time_util.h"
#include "registry/registry.h"
#include "rollout/gates.h"
#include "rollout/maintenance_window.h"
#include "rollout/wave_plan.h"

namespace edgeloop::rollout {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kMaxGates = 16;

// Where a released device is with the candidate.
enum class Step {
  kPending,
  kDownloading,
  kActive,
  kFailed,
  kRolledBack,
  kIncompatible,
  kOffline,
  kShadowing
};

bool Undoing(const std::string& state) {
  return state == "ROLLING_BACK" || state == "ROLLED_BACK" || state == "ABORTED";
}

// A device's place in the rollout's order: a stable hash of (rollout id, device id), so waves
// are a fair sample that does not change from pass to pass.
uint64_t WaveOrder(int64_t rollout_id, const std::string& device_id) {
  const std::string digest = DigestFromHex(Sha256Hex(absl::StrCat(rollout_id, "/", device_id)));
  uint64_t v = 0;
  for (int i = 0; i < 8 && i < static_cast<int>(digest.size()); ++i) {
    v = (v << 8) | static_cast<uint8_t>(digest[i]);
  }
  return v;
}

void Add(v1::WaveCounts& c, Step step) {
  switch (step) {
    case Step::kPending:
      c.set_pending(c.pending() + 1);
      break;
    case Step::kDownloading:
      c.set_downloading(c.downloading() + 1);
      break;
    case Step::kActive:
      c.set_active(c.active() + 1);
      break;
    case Step::kFailed:
      c.set_failed(c.failed() + 1);
      break;
    case Step::kRolledBack:
      c.set_rolled_back(c.rolled_back() + 1);
      break;
    case Step::kIncompatible:
      c.set_incompatible(c.incompatible() + 1);
      break;
    case Step::kOffline:
      c.set_offline(c.offline() + 1);
      break;
    case Step::kShadowing:
      c.set_shadowing(c.shadowing() + 1);
      break;
  }
}

std::string Describe(const v1::GateResult& g) {
  return absl::StrFormat("%s %s %g (value %g, %d samples)", g.metric(), g.op(), g.threshold(),
                         g.value(), g.samples());
}

absl::Status CheckSpec(v1::RolloutSpec& spec) {
  if (spec.model().empty()) return absl::InvalidArgumentError("model is required");
  if ((spec.version() != 0) == !spec.alias().empty()) {
    return absl::InvalidArgumentError("give exactly one of version and alias");
  }
  if (spec.version() < 0) return absl::InvalidArgumentError("version must be positive");
  RETURN_IF_ERROR(fleet::Selector::Parse(spec.selector()).status());
  if (!spec.canary_selector().empty()) {
    RETURN_IF_ERROR(fleet::Selector::Parse(spec.canary_selector()).status());
  }
  RETURN_IF_ERROR(WavePlan::FromSpec(spec).status());
  if (spec.gates_size() > kMaxGates) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxGates, " gates"));
  }
  for (v1::RolloutGate& gate : *spec.mutable_gates()) RETURN_IF_ERROR(NormalizeGate(gate));
  if (spec.on_failure().empty()) spec.set_on_failure("pause");
  if (spec.on_failure() != "pause" && spec.on_failure() != "rollback") {
    return absl::InvalidArgumentError(
        absl::StrCat("onFailure must be \"pause\" or \"rollback\", not \"",
                     spec.on_failure().substr(0, 32), "\""));
  }
  constexpr int64_t kMonth = 31LL * 24 * 3600;
  if (spec.bake_seconds() < 0 || spec.bake_seconds() > kMonth) {
    return absl::InvalidArgumentError("bakeSeconds must be from 0 to 31 days");
  }
  if (spec.max_concurrent() < 0)
    return absl::InvalidArgumentError("maxConcurrent must not be negative");
  if (spec.offline_deadline_seconds() < 0 || spec.offline_deadline_seconds() > kMonth) {
    return absl::InvalidArgumentError("offlineDeadlineSeconds must be from 0 to 31 days");
  }
  if (spec.inconclusive_seconds() < 0 || spec.inconclusive_seconds() > kMonth) {
    return absl::InvalidArgumentError("inconclusiveSeconds must be from 0 to 31 days");
  }
  RETURN_IF_ERROR(MaintenanceWindowCheck::Create(spec.maintenance_window()).status());
  if (spec.has_shadow()) {
    v1::ShadowStage& shadow = *spec.mutable_shadow();
    if (shadow.sample_ratio() == 0) shadow.set_sample_ratio(0.1);
    if (shadow.cpu_budget() == 0) shadow.set_cpu_budget(0.1);
    if (!(shadow.sample_ratio() > 0 && shadow.sample_ratio() <= 1)) {
      return absl::InvalidArgumentError("shadow.sampleRatio must be above 0 and at most 1");
    }
    if (!(shadow.cpu_budget() > 0 && shadow.cpu_budget() <= 1)) {
      return absl::InvalidArgumentError("shadow.cpuBudget must be above 0 and at most 1");
    }
    if (!(shadow.tolerance() >= 0) || !std::isfinite(shadow.tolerance())) {
      return absl::InvalidArgumentError("shadow.tolerance must be a number, 0 or more");
    }
    if (shadow.seconds() < 0 || shadow.seconds() > kMonth) {
      return absl::InvalidArgumentError("shadow.seconds must be from 0 to 31 days");
    }
  }
  for (const v1::RolloutGate& gate : spec.gates()) {
    if (gate.metric() == "shadow_agreement" && !spec.has_shadow()) {
      return absl::InvalidArgumentError(
          "the shadow_agreement gate needs a shadow stage (shadow: {seconds, sampleRatio, ...})");
    }
  }
  if (spec.description().size() > 1000) {
    return absl::InvalidArgumentError("description is longer than 1000 bytes");
  }
  return absl::OkStatus();
}

}  // namespace

// What one pass sees of a rollout: its devices and where each is.
struct Controller::Observation {
  std::vector<fleet::FleetMember> members;                  // active devices its selector matches
  std::map<std::string, const fleet::FleetMember*> device;  // every active device, by id
  std::vector<fleet::FleetMember> all;
  std::map<std::string, ReleasedDevice> released;
  std::map<std::string, Step> steps;  // of the released devices
  std::vector<std::string> newly_active;
  std::set<std::string> local_rollbacks;
  std::vector<int64_t> cumulative;     // the plan for the devices matching now
  std::vector<v1::WaveCounts> counts;  // per wave
  std::vector<int64_t> wave_devices;   // released per wave
};

Controller::Controller(const ControllerOptions& options) : options_(options) {}

Controller::~Controller() { Shutdown(); }

void Controller::Notify() {
  if (options_.on_desired_change) options_.on_desired_change();
}

absl::StatusOr<Controller::Observation> Controller::Observe(const RolloutRecord& r) {
  Observation o;
  store::Database& db = *options_.database;
  ASSIGN_OR_RETURN(fleet::Selector selector, fleet::Selector::Parse(r.spec.selector()));
  ASSIGN_OR_RETURN(o.all, fleet::DeviceRegistry::Members(db, fleet::Selector(), &members_));
  for (const fleet::FleetMember& m : o.all) {
    o.device[m.id] = &m;
    if (selector.Matches(m.attributes)) o.members.push_back(m);
  }
  ASSIGN_OR_RETURN(o.released, RolloutStore::Devices(db, r.id));
  int64_t matching = static_cast<int64_t>(o.members.size());
  for (const auto& [id, d] : o.released) {
    if (!o.device.count(id) || !selector.Matches(o.device.at(id)->attributes)) ++matching;
  }
  ASSIGN_OR_RETURN(WavePlan plan, WavePlan::FromSpec(r.spec));
  o.cumulative = plan.Cumulative(matching);
  o.counts.resize(o.cumulative.size());
  o.wave_devices.resize(o.cumulative.size());

  // A device is incompatible while the candidate has no module its class runs: the CI stage
  // may still build one for a class that joined later, and then it installs.
  ASSIGN_OR_RETURN(std::vector<registry::ArtifactRecord> artifacts,
                   registry::Registry::Artifacts(db, r.model_id, r.version));
  auto compatible = [&](const fleet::FleetMember* m) {
    for (const registry::ArtifactRecord& a : artifacts) {
      if (m != nullptr && TargetRunsOn(a.target, m->target)) return true;
    }
    return false;
  };
  const int64_t now_ms = absl::ToUnixMillis(options_.clock->Now());
  const int64_t deadline_ms = r.spec.offline_deadline_seconds() > 0
                                  ? r.spec.offline_deadline_seconds() * 1000
                                  : absl::ToInt64Milliseconds(options_.offline_deadline);
  for (const auto& [id, d] : o.released) {
    Step step = Step::kPending;
    auto it = o.device.find(id);
    const fleet::FleetMember* m = it == o.device.end() ? nullptr : it->second;
    // What the agent reports of the candidate: "running"; "failed" (download, verification
    // or self-test); "rolled back" (it served, then the agent swapped the previous module
    // back on its own).
    bool running = false, failed = false, went_back = false, shadowing = false;
    if (m != nullptr) {
      for (const v1::ModuleStatus& s : m->state.modules()) {
        if (s.module().model() != r.model || s.module().version() != r.version) continue;
        if (s.state() == "running") running = true;
        if (s.state() == "failed") failed = true;
        if (s.state() == "rolled back") went_back = true;
        if (s.state() == "shadowing") shadowing = true;
      }
    }
    if (m != nullptr && !running && !compatible(m)) {
      step = Step::kIncompatible;
    } else if (Undoing(r.state)) {
      step = running ? Step::kActive : d.activated_ms > 0 ? Step::kRolledBack : Step::kPending;
    } else if (running) {
      step = Step::kActive;
      if (d.activated_ms == 0) o.newly_active.push_back(id);
    } else if (m == nullptr || now_ms - m->last_seen_ms > deadline_ms) {
      step = Step::kOffline;
    } else if (failed) {
      step = Step::kFailed;
    } else if (went_back || d.activated_ms > 0) {
      step = Step::kFailed;  // it ran the candidate and went back on its own
      o.local_rollbacks.insert(id);
    } else if (shadowing) {
      // In the wave's shadow stage; after it, on its way to serving the candidate.
      step = r.shadowing && d.wave == r.wave ? Step::kShadowing : Step::kDownloading;
    }
    o.steps[id] = step;
    if (d.wave >= 0 && d.wave < static_cast<int>(o.counts.size())) {
      Add(o.counts[d.wave], step);
      ++o.wave_devices[d.wave];
    }
  }
  return o;
}

v1::Rollout Controller::Observed(const RolloutRecord& r, const Observation& o, int64_t now_ms) {
  v1::Rollout out;
  const int64_t matching = o.cumulative.empty() ? 0 : o.cumulative.back();
  out.set_matching_devices(matching);
  out.set_wave_total(static_cast<int32_t>(o.cumulative.size()));
  *out.mutable_observe_time() = TimeUtil::MillisecondsToTimestamp(now_ms);
  std::map<int, int64_t> first_release;
  for (const auto& [id, d] : o.released) {
    auto [it, fresh] = first_release.emplace(d.wave, d.released_ms);
    if (!fresh) it->second = std::min(it->second, d.released_ms);
  }
  absl::StatusOr<WavePlan> plan = WavePlan::FromSpec(r.spec);  // checked at create
  for (size_t i = 0; i < o.cumulative.size(); ++i) {
    v1::WaveStatus* w = out.add_waves();
    w->set_index(static_cast<int32_t>(i));
    if (plan.ok()) w->set_target(plan->Label(static_cast<int>(i), matching));
    w->set_devices(o.wave_devices[i]);
    *w->mutable_counts() = o.counts[i];
    if (auto it = first_release.find(static_cast<int>(i)); it != first_release.end()) {
      *w->mutable_start_time() = TimeUtil::MillisecondsToTimestamp(it->second);
    }
  }
  return out;
}

absl::StatusOr<v1::Rollout> Controller::ToProto(const RolloutRecord& r, bool live) {
  v1::Rollout out;
  if (live || r.observed_at_ms == 0) {
    ASSIGN_OR_RETURN(Observation o, Observe(r));
    out = Observed(r, o, absl::ToUnixMillis(options_.clock->Now()));
  } else {
    out = r.observed;
  }
  out.set_id(r.id);
  *out.mutable_spec() = r.spec;
  out.set_version(r.version);
  out.set_replaced_version(r.replaced_version);
  out.set_state(r.state);
  out.set_current_wave(r.wave);
  out.set_shadowing(r.shadowing && Unfinished(r.state));
  out.set_message(r.message);
  out.set_created_by(r.created_by);
  out.set_superseded_by(r.superseded_by);
  *out.mutable_create_time() = TimeUtil::MillisecondsToTimestamp(r.created_at_ms);
  *out.mutable_update_time() = TimeUtil::MillisecondsToTimestamp(r.updated_at_ms);
  if (r.wave_started_ms > 0) {
    *out.mutable_wave_start_time() = TimeUtil::MillisecondsToTimestamp(r.wave_started_ms);
  }
  out.clear_gates();
  for (const v1::GateResult& g : r.gates) *out.add_gates() = g;
  return out;
}

absl::StatusOr<v1::Rollout> Controller::Create(const v1::RolloutSpec& request,
                                               const std::string& actor) {
  v1::RolloutSpec spec = request;
  RETURN_IF_ERROR(CheckSpec(spec));
  ASSIGN_OR_RETURN(fleet::Selector selector, fleet::Selector::Parse(spec.selector()));
  const int64_t now_ms = absl::ToUnixMillis(options_.clock->Now());
  RolloutRecord record;
  bool superseded = false;
  RETURN_IF_ERROR(
      store::RunInTransaction(*options_.database, [&](store::Transaction& tx) -> absl::Status {
        superseded = false;
        ASSIGN_OR_RETURN(std::optional<int64_t> model_id,
                         registry::Registry::FindModelId(tx, spec.model()));
        if (!model_id) {
          return absl::NotFoundError(
              absl::StrCat("model \"", spec.model().substr(0, 128), "\" not found"));
        }
        // Creates of one model take turns from here (see the schema).
        RETURN_IF_ERROR(
            tx.Execute("INSERT INTO rollout_model_locks (model_id, creates) VALUES ($1, 1) "
                       "ON CONFLICT (model_id) DO UPDATE SET creates = "
                       "rollout_model_locks.creates + 1",
                       {*model_id})
                .status());
        int64_t version = spec.version();
        if (!spec.alias().empty()) {
          ASSIGN_OR_RETURN(std::optional<int64_t> target,
                           registry::Registry::AliasTarget(tx, *model_id, spec.alias()));
          if (!target) {
            return absl::NotFoundError(absl::StrCat("model \"", spec.model(), "\" has no alias \"",
                                                    spec.alias().substr(0, 128), "\""));
          }
          version = *target;
        }
        ASSIGN_OR_RETURN(registry::VersionSource source,
                         registry::Registry::FindVersion(tx, *model_id, version));
        if (source.status != v1::READY) {
          return absl::FailedPreconditionError(
              absl::StrCat("version ", version, " of \"", spec.model(), "\" is ",
                           v1::VersionStatus_Name(source.status), ", not READY"));
        }
        ASSIGN_OR_RETURN(std::vector<fleet::FleetMember> members,
                         fleet::DeviceRegistry::Members(tx, selector));
        // One unfinished rollout per model and device.
        ASSIGN_OR_RETURN(std::vector<RolloutRecord> others,
                         RolloutStore::LoadUnfinished(tx, *model_id));
        bool supersedes_found = spec.supersedes() == 0;
        for (RolloutRecord& other : others) {
          ASSIGN_OR_RETURN(fleet::Selector theirs, fleet::Selector::Parse(other.spec.selector()));
          ASSIGN_OR_RETURN(auto released, RolloutStore::Devices(tx, other.id));
          int64_t shared = 0;
          for (const fleet::FleetMember& m : members) {
            if (released.count(m.id) || theirs.Matches(m.attributes)) ++shared;
          }
          if (other.id == spec.supersedes()) {
            supersedes_found = true;
            ASSIGN_OR_RETURN(
                bool applied,
                RolloutStore::Apply(
                    tx, other,
                    {"ABORTED", other.wave, other.wave_started_ms, other.bake_started_ms,
                     absl::StrCat("superseded by a new rollout (", actor, ")"), other.gates, actor},
                    now_ms));
            if (!applied) return absl::AbortedError("the superseded rollout changed; try again");
            superseded = true;
            continue;
          }
          if (shared > 0 || (members.empty() && other.spec.selector() == spec.selector())) {
            return absl::AlreadyExistsError(absl::StrCat(
                "rollout ", other.id, " of \"", spec.model(), "\" is ", other.state, " for ",
                shared, " of these devices; finish or abort it, or set supersedes: ", other.id));
          }
        }
        if (!supersedes_found) {
          return absl::InvalidArgumentError(absl::StrCat("supersedes: no unfinished rollout ",
                                                         spec.supersedes(), " of \"", spec.model(),
                                                         "\""));
        }
        // The version most of these devices run now is the one the gates compare against.
        std::map<int64_t, int64_t> running;
        for (const fleet::FleetMember& m : members) {
          for (const v1::ModuleStatus& s : m.state.modules()) {
            if (s.module().model() == spec.model() && s.state() == "running" &&
                s.module().version() != version) {
              ++running[s.module().version()];
            }
          }
        }
        int64_t replaced = 0, most = 0;
        for (const auto& [v, n] : running) {
          if (n > most) std::tie(replaced, most) = std::make_pair(v, n);
        }
        record = {};
        record.model_id = *model_id;
        record.model = spec.model();
        record.version = version;
        record.replaced_version = replaced;
        record.spec = spec;
        record.state = "PENDING";
        record.message = absl::StrCat("created by ", actor);
        record.created_by = actor;
        record.created_at_ms = now_ms;
        RETURN_IF_ERROR(RolloutStore::Insert(tx, record));
        for (RolloutRecord& other : others) {
          if (other.id == spec.supersedes()) {
            RETURN_IF_ERROR(RolloutStore::MarkSuperseded(tx, other.id, record.id));
          }
        }
        if (superseded) RETURN_IF_ERROR(fleet::Assignments::Touch(tx));
        return absl::OkStatus();
      }));
  if (superseded) Notify();
  Log(LogLevel::kInfo, "rollout created",
      {{"rollout", record.id},
       {"model", record.model},
       {"version", record.version},
       {"selector", record.spec.selector()}});
  return ToProto(record);
}

absl::StatusOr<v1::Rollout> Controller::Get(int64_t id) {
  ASSIGN_OR_RETURN(std::optional<RolloutRecord> r, RolloutStore::Load(*options_.database, id));
  if (!r) return absl::NotFoundError(absl::StrCat("rollout ", id, " not found"));
  // The controller no longer passes over a finished rollout: its devices are counted now
  // (an aborted rollout's devices going back, late joiners of a completed one).
  return ToProto(*r, !Unfinished(r->state));
}

absl::StatusOr<v1::ListRolloutsResponse> Controller::List(const v1::ListRolloutsRequest& request) {
  ASSIGN_OR_RETURN(const int64_t before,
                   IntPageToken(request.page_token(), std::numeric_limits<int64_t>::max()));
  const int page = std::min(PageSize(request.page_size()), 100);
  int64_t model_id = 0;
  if (!request.model().empty()) {
    ASSIGN_OR_RETURN(std::optional<int64_t> id,
                     registry::Registry::FindModelId(*options_.database, request.model()));
    if (!id) return v1::ListRolloutsResponse();
    model_id = *id;
  }
  ASSIGN_OR_RETURN(
      std::vector<RolloutRecord> records,
      RolloutStore::List(*options_.database, model_id, request.active_only(), before, page + 1));
  v1::ListRolloutsResponse out;
  for (size_t i = 0; i < records.size() && static_cast<int>(i) < page; ++i) {
    ASSIGN_OR_RETURN(*out.add_rollouts(), ToProto(records[i]));
  }
  if (static_cast<int>(records.size()) > page) {
    out.set_next_page_token(std::to_string(records[page - 1].id));
  }
  return out;
}

absl::StatusOr<v1::ListRolloutEventsResponse> Controller::Events(
    const v1::ListRolloutEventsRequest& request) {
  ASSIGN_OR_RETURN(std::optional<RolloutRecord> r,
                   RolloutStore::Load(*options_.database, request.id()));
  if (!r) return absl::NotFoundError(absl::StrCat("rollout ", request.id(), " not found"));
  ASSIGN_OR_RETURN(std::vector<v1::RolloutEvent> events,
                   RolloutStore::Events(*options_.database, request.id(), request.after(),
                                        PageSize(request.page_size())));
  v1::ListRolloutEventsResponse out;
  for (v1::RolloutEvent& e : events) *out.add_events() = std::move(e);
  return out;
}

absl::StatusOr<bool> Controller::Write(RolloutRecord& r, const Transition& t) {
  const int64_t now_ms = absl::ToUnixMillis(options_.clock->Now());
  // What devices run changes when a rollout starts or stops applying to them.
  const bool in_force_before = r.state == "IN_PROGRESS" || r.state == "BAKING" ||
                               r.state == "PAUSED" || r.state == "COMPLETED";
  const bool in_force_after = t.to_state == "IN_PROGRESS" || t.to_state == "BAKING" ||
                              t.to_state == "PAUSED" || t.to_state == "COMPLETED";
  // A rollout that has not started has released no one: starting or aborting it changes
  // nothing a device runs. One that stops applying before it completed (rolled back,
  // aborted) changes only what its released devices run; completing applies it to every
  // device its selector matches, the ones that join later too.
  const bool changes = r.state != "PENDING" && in_force_before != in_force_after;
  const bool fleet_wide = t.to_state == "COMPLETED";
  // A wave leaving its shadow stage while the rollout stays in force: its devices switch to
  // serving the candidate, and only their desired state changes.
  const bool unshadow = !changes && in_force_after && r.shadowing && t.shadowing == false;
  std::vector<std::string> moved;  // the devices whose desired state this changes
  bool applied = false;
  RolloutRecord updated;
  RETURN_IF_ERROR(
      store::RunInTransaction(*options_.database, [&](store::Transaction& tx) -> absl::Status {
        updated = r;
        moved.clear();
        ASSIGN_OR_RETURN(applied, RolloutStore::Apply(tx, updated, t, now_ms));
        if (!applied) return absl::OkStatus();
        if (fleet_wide) return fleet::Assignments::Touch(tx);
        if (!changes && !unshadow) return absl::OkStatus();
        ASSIGN_OR_RETURN(auto released, RolloutStore::Devices(tx, r.id));
        for (const auto& [id, d] : released) {
          if (changes || d.wave == r.wave) moved.push_back(id);
        }
        return fleet::DeviceRegistry::TouchDevices(tx, moved);
      }));
  if (!applied) return false;
  Log(LogLevel::kInfo, "rollout transition",
      {{"rollout", r.id},
       {"from", r.state},
       {"to", t.to_state},
       {"wave", t.wave},
       {"reason", t.reason}});
  r = std::move(updated);
  {
    std::lock_guard lock(counts_mu_);
    ++transitions_[t.to_state];
  }
  if (fleet_wide) Notify();
  if (!moved.empty()) {
    if (options_.on_devices_change) {
      options_.on_devices_change(moved);
    } else {
      Notify();
    }
  }
  return true;
}

absl::StatusOr<std::map<std::string, int64_t>> Controller::StateCounts() {
  return RolloutStore::CountByState(*options_.database);
}

absl::StatusOr<std::vector<v1::Rollout>> Controller::Current(absl::Duration recent) {
  ASSIGN_OR_RETURN(
      std::vector<RolloutRecord> records,
      RolloutStore::List(*options_.database, 0, false, std::numeric_limits<int64_t>::max(), 100));
  const int64_t since_ms = absl::ToUnixMillis(options_.clock->Now() - recent);
  std::vector<v1::Rollout> out;
  for (const RolloutRecord& r : records) {
    if (!Unfinished(r.state) && r.updated_at_ms < since_ms) continue;
    ASSIGN_OR_RETURN(out.emplace_back(), ToProto(r));
  }
  return out;
}

std::map<std::string, int64_t> Controller::TransitionsWritten() {
  std::lock_guard lock(counts_mu_);
  return transitions_;
}

absl::StatusOr<v1::Rollout> Controller::Act(
    int64_t id,
    const std::function<absl::StatusOr<std::optional<Transition>>(const RolloutRecord&)>& decide) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    ASSIGN_OR_RETURN(std::optional<RolloutRecord> r, RolloutStore::Load(*options_.database, id));
    if (!r) return absl::NotFoundError(absl::StrCat("rollout ", id, " not found"));
    ASSIGN_OR_RETURN(std::optional<Transition> t, decide(*r));
    if (!t) return ToProto(*r);
    ASSIGN_OR_RETURN(bool applied, Write(*r, *t));
    if (applied) return ToProto(*r);
  }
  return absl::AbortedError(absl::StrCat("rollout ", id, " keeps changing; try again"));
}

absl::StatusOr<v1::Rollout> Controller::Pause(const v1::RolloutActionRequest& request,
                                              const std::string& actor) {
  return Act(
      request.id(), [&](const RolloutRecord& r) -> absl::StatusOr<std::optional<Transition>> {
        if (r.state == "PAUSED") return std::nullopt;
        if (r.state != "PENDING" && r.state != "IN_PROGRESS" && r.state != "BAKING") {
          return absl::AbortedError(
              absl::StrCat("rollout ", r.id, " is ", r.state, "; only a running rollout pauses"));
        }
        return Transition{"PAUSED",
                          r.wave,
                          r.wave_started_ms,
                          0,
                          absl::StrCat("paused by ", actor, request.reason().empty() ? "" : ": ",
                                       request.reason().substr(0, 500)),
                          r.gates,
                          actor};
      });
}

absl::StatusOr<v1::Rollout> Controller::Resume(const v1::RolloutActionRequest& request,
                                               const std::string& actor) {
  return Act(
      request.id(), [&](const RolloutRecord& r) -> absl::StatusOr<std::optional<Transition>> {
        if (r.state == "PENDING" || r.state == "IN_PROGRESS" || r.state == "BAKING")
          return std::nullopt;
        if (r.state != "PAUSED") {
          return absl::AbortedError(
              absl::StrCat("rollout ", r.id, " is ", r.state, "; only a paused rollout resumes"));
        }
        // The wave starts over: its bake time and gates count from now.
        const int64_t now_ms = absl::ToUnixMillis(options_.clock->Now());
        return Transition{"IN_PROGRESS",
                          r.wave,
                          now_ms,
                          0,
                          absl::StrCat("resumed by ", actor, request.reason().empty() ? "" : ": ",
                                       request.reason().substr(0, 500)),
                          {},
                          actor};
      });
}

absl::StatusOr<v1::Rollout> Controller::Abort(const v1::RolloutActionRequest& request,
                                              const std::string& actor) {
  return Act(
      request.id(), [&](const RolloutRecord& r) -> absl::StatusOr<std::optional<Transition>> {
        if (r.state == "ABORTED") return std::nullopt;
        if (!Unfinished(r.state)) {
          return absl::AbortedError(absl::StrCat("rollout ", r.id, " is already ", r.state));
        }
        return Transition{"ABORTED",
                          r.wave,
                          r.wave_started_ms,
                          r.bake_started_ms,
                          absl::StrCat("aborted by ", actor, request.reason().empty() ? "" : ": ",
                                       request.reason().substr(0, 500)),
                          r.gates,
                          actor};
      });
}

absl::StatusOr<v1::Rollout> Controller::Promote(const v1::RolloutActionRequest& request,
                                                const std::string& actor) {
  return Act(
      request.id(), [&](const RolloutRecord& r) -> absl::StatusOr<std::optional<Transition>> {
        if (r.state != "PENDING" && r.state != "IN_PROGRESS" && r.state != "BAKING" &&
            r.state != "PAUSED") {
          return absl::AbortedError(
              absl::StrCat("rollout ", r.id, " is ", r.state, "; nothing to promote"));
        }
        ASSIGN_OR_RETURN(Observation o, Observe(r));
        const int64_t now_ms = absl::ToUnixMillis(options_.clock->Now());
        const std::string why =
            absl::StrCat("wave ", r.wave + 1, " promoted by ", actor,
                         request.reason().empty() ? "" : ": ", request.reason().substr(0, 500));
        if (r.state != "PENDING" && r.wave + 1 >= static_cast<int>(o.cumulative.size())) {
          return Transition{"COMPLETED", r.wave, r.wave_started_ms, r.bake_started_ms, why,
                            r.gates,     actor};
        }
        if (r.state != "PENDING" && r.shadowing) {
          // The shadow stage is what is passed: the wave's devices serve the candidate now.
          return Transition{"IN_PROGRESS",
                            r.wave,
                            now_ms,
                            0,
                            absl::StrCat("wave ", r.wave + 1, " shadow stage promoted by ", actor,
                                         request.reason().empty() ? "" : ": ",
                                         request.reason().substr(0, 500)),
                            r.gates,
                            actor,
                            false};
        }
        const int next = r.state == "PENDING" ? 0 : r.wave + 1;
        return Transition{"IN_PROGRESS", next, now_ms, 0, why, r.gates, actor,
                          r.spec.has_shadow()};
      });
}

absl::Status Controller::ReconcileAll() {
  ASSIGN_OR_RETURN(std::vector<RolloutRecord> rollouts,
                   RolloutStore::LoadUnfinished(*options_.database, 0));
  absl::Status first;
  for (RolloutRecord& r : rollouts) {
    absl::Status s = Reconcile(r);
    if (!s.ok()) {
      Log(LogLevel::kWarning, "rollout pass failed", {{"rollout", r.id}, {"error", s.ToString()}});
      if (first.ok()) first = s;
    }
  }
  return first;
}

absl::Status Controller::Reconcile(RolloutRecord& r) {
  store::Database& db = *options_.database;
  const absl::Time now = options_.clock->Now();
  const int64_t now_ms = absl::ToUnixMillis(now);
  if (r.state == "PENDING") {
    ASSIGN_OR_RETURN(bool applied, Write(r, {"IN_PROGRESS", 0, now_ms, 0, "started", {},
                                             "controller", r.spec.has_shadow()}));
    if (!applied) return absl::OkStatus();
  }
  if (!Unfinished(r.state)) return absl::OkStatus();
  // What this pass sees is stored with the rollout (so reading it does not read the fleet),
  // with the devices first seen running the candidate.
  auto record = [&](const Observation& seen) {
    return store::RunInTransaction(db, [&](store::Transaction& tx) -> absl::Status {
      if (!seen.newly_active.empty()) {
        RETURN_IF_ERROR(RolloutStore::MarkActivated(tx, r.id, seen.newly_active, now_ms));
      }
      return RolloutStore::SaveObserved(tx, r.id, Observed(r, seen, now_ms), now_ms);
    });
  };
  ASSIGN_OR_RETURN(Observation o, Observe(r));
  RETURN_IF_ERROR(record(o));
  // Paused: devices already released go on installing; nothing else moves.
  if (r.state == "PAUSED") return absl::OkStatus();

  const absl::Duration deadline = r.spec.offline_deadline_seconds() > 0
                                      ? absl::Seconds(r.spec.offline_deadline_seconds())
                                      : options_.offline_deadline;
  if (r.state == "ROLLING_BACK") {
    int64_t still = 0;
    for (const auto& [id, step] : o.steps) still += step == Step::kActive;
    if (still == 0 || now - absl::FromUnixMillis(r.bake_started_ms) > deadline) {
      RETURN_IF_ERROR(Write(r, {"ROLLED_BACK", r.wave, r.wave_started_ms, r.bake_started_ms,
                                still == 0 ? "every device is back on its previous module"
                                           : absl::StrCat(still,
                                                          " devices did not report back "
                                                          "before the offline deadline"),
                                r.gates, "controller"})
                          .status());
    }
    return absl::OkStatus();
  }

  const int waves = static_cast<int>(o.cumulative.size());
  if (r.wave >= waves) r.wave = waves - 1;  // the fleet shrank under a count-based plan

  // Release the devices the current wave still needs.
  if (r.state == "IN_PROGRESS") {
    ASSIGN_OR_RETURN(MaintenanceWindowCheck window,
                     MaintenanceWindowCheck::Create(r.spec.maintenance_window()));
    const int64_t target = o.cumulative[r.wave];
    int64_t need = target - static_cast<int64_t>(o.released.size());
    std::vector<const fleet::FleetMember*> candidates;
    std::optional<fleet::Selector> canary;
    if (!r.spec.canary_selector().empty()) {
      ASSIGN_OR_RETURN(canary, fleet::Selector::Parse(r.spec.canary_selector()));
    }
    for (const fleet::FleetMember& m : o.members) {
      if (o.released.count(m.id)) continue;
      if (r.wave == 0 && canary.has_value() && !canary->Matches(m.attributes)) continue;
      candidates.push_back(&m);
    }
    if (r.wave == 0 && canary.has_value()) need = static_cast<int64_t>(candidates.size());
    if (need > 0 && !candidates.empty() && window.Open(now)) {
      if (r.spec.max_concurrent() > 0) {
        int64_t underway = 0;
        for (const auto& [id, step] : o.steps) {
          underway += step == Step::kPending || step == Step::kDownloading;
        }
        need = std::min(need, std::max<int64_t>(0, r.spec.max_concurrent() - underway));
      }
      ASSIGN_OR_RETURN(WavePlan plan, WavePlan::FromSpec(r.spec));
      if (plan.max_per_minute() > 0) {
        ASSIGN_OR_RETURN(int64_t recent, RolloutStore::ReleasedSince(db, r.id, now_ms - 60'000));
        need = std::min(need, std::max<int64_t>(0, plan.max_per_minute() - recent));
      }
    }
    if (!window.Open(now)) need = 0;
    if (need > 0 && !candidates.empty()) {
      std::sort(candidates.begin(), candidates.end(),
                [&](const fleet::FleetMember* a, const fleet::FleetMember* b) {
                  return WaveOrder(r.id, a->id) < WaveOrder(r.id, b->id);
                });
      candidates.resize(std::min<size_t>(candidates.size(), need));
      std::vector<std::string> release;
      for (const fleet::FleetMember* m : candidates) release.push_back(m->id);
      bool applied = false;
      RETURN_IF_ERROR(store::RunInTransaction(db, [&](store::Transaction& tx) -> absl::Status {
        RolloutRecord copy = r;
        ASSIGN_OR_RETURN(applied, RolloutStore::Bump(tx, copy, now_ms));
        if (!applied) return absl::OkStatus();
        RETURN_IF_ERROR(RolloutStore::Release(tx, r.id, r.wave, release, now_ms));
        // Only the released devices' desired state changes: only their watchers look again.
        return fleet::DeviceRegistry::TouchDevices(tx, release);
      }));
      if (!applied) return absl::OkStatus();  // another controller acted; the next pass sees it
      r.revision += 1;
      if (options_.on_devices_change) {
        options_.on_devices_change(release);
      } else {
        Notify();
      }
      ASSIGN_OR_RETURN(o, Observe(r));
      RETURN_IF_ERROR(record(o));
    }
  }

  // Judge the current wave.
  std::set<std::string> wave_members;
  for (const auto& [id, d] : o.released) {
    if (d.wave == r.wave) wave_members.insert(id);
  }
  WaveMeasurements m;
  m.counts = o.counts[r.wave];
  for (const std::string& id : o.local_rollbacks) m.local_rollbacks += wave_members.count(id);
  std::vector<v1::GateResult> results;
  std::map<int64_t, std::pair<v1::TelemetrySummary, v1::TelemetrySummary>> by_window;
  for (const v1::RolloutGate& gate : r.spec.gates()) {
    // The shadow stage is judged by how the candidate agrees, the serving one by the rest.
    if ((gate.metric() == "shadow_agreement") != r.shadowing) continue;
    if (r.shadowing) {
      ASSIGN_OR_RETURN(results.emplace_back(), JudgeShadow(r, gate, wave_members, now_ms));
      continue;
    }
    const int64_t from_ms = gate.window_seconds() > 0
                                ? std::max(r.wave_started_ms, now_ms - gate.window_seconds() * 1000)
                                : r.wave_started_ms;
    auto it = by_window.find(from_ms);
    if (it == by_window.end() && options_.telemetry != nullptr) {
      std::pair<v1::TelemetrySummary, v1::TelemetrySummary> sums;
      ASSIGN_OR_RETURN(sums.first, options_.telemetry->DevicesSummary(
                                       r.model_id, r.version, &wave_members, from_ms, now_ms + 1));
      if (r.replaced_version > 0) {
        const int64_t lookback = std::min(
            from_ms, r.created_at_ms - absl::ToInt64Milliseconds(options_.replaced_lookback));
        ASSIGN_OR_RETURN(sums.second,
                         options_.telemetry->DevicesSummary(r.model_id, r.replaced_version, nullptr,
                                                            lookback, now_ms + 1));
      }
      it = by_window.emplace(from_ms, std::move(sums)).first;
    }
    if (it != by_window.end()) {
      m.candidate = it->second.first;
      m.replaced = it->second.second;
      m.has_replaced = r.replaced_version > 0;
    }
    results.push_back(JudgeGate(gate, m));
  }

  const std::string& policy = r.spec.on_failure();
  auto fail = [&](const std::string& why) -> absl::Status {
    if (policy == "rollback") {
      return Write(r,
                   {"ROLLING_BACK", r.wave, r.wave_started_ms, now_ms, why, results, "controller"})
          .status();
    }
    return Write(r, {"PAUSED", r.wave, r.wave_started_ms, 0, why, results, "controller"}).status();
  };
  std::string failed;
  for (const v1::GateResult& g : results) {
    if (g.verdict() == "FAIL") absl::StrAppend(&failed, failed.empty() ? "" : "; ", Describe(g));
  }
  if (!failed.empty()) return fail(absl::StrCat("wave ", r.wave + 1, ": gates failed: ", failed));

  const int64_t wave_size = static_cast<int64_t>(wave_members.size());
  const bool all_released = static_cast<int64_t>(o.released.size()) >= o.cumulative[r.wave] || [&] {
    for (const fleet::FleetMember& mm : o.members) {
      if (!o.released.count(mm.id)) return false;
    }
    return true;
  }();
  const bool settled = all_released && m.counts.pending() == 0 && m.counts.downloading() == 0;
  if (r.state == "IN_PROGRESS") {
    if (!settled) {
      RETURN_IF_ERROR(store::RunInTransaction(db, [&](store::Transaction& tx) {
        return RolloutStore::SaveGates(tx, r.id, results, now_ms);
      }));
      return absl::OkStatus();
    }
    const std::string why =
        r.shadowing ? absl::StrCat("wave ", r.wave + 1, ": ", m.counts.shadowing(),
                                   " devices run the candidate beside their module; shadowing")
                    : absl::StrCat("wave ", r.wave + 1, ": ", m.counts.active(),
                                   " devices run the candidate; baking");
    ASSIGN_OR_RETURN(bool applied, Write(r, {"BAKING", r.wave, r.wave_started_ms, now_ms, why,
                                             results, "controller"}));
    if (!applied) return absl::OkStatus();
  }

  // BAKING: pass once the bake time is over with every gate passing.
  const absl::Duration baked = now - absl::FromUnixMillis(r.bake_started_ms);
  bool all_pass = true;
  std::string waiting;
  for (const v1::GateResult& g : results) {
    if (g.verdict() != "PASS") {
      all_pass = false;
      if (waiting.empty()) waiting = absl::StrCat(g.metric(), ": ", g.detail());
    }
  }
  if (wave_size == 0) all_pass = true;  // a wave a small fleet leaves empty has nothing to judge
  const absl::Duration hold =
      absl::Seconds(r.shadowing ? r.spec.shadow().seconds() : r.spec.bake_seconds());
  if (baked >= hold && all_pass && r.shadowing) {
    // The wave's devices switch from shadowing the candidate to serving it; its bake time
    // and other gates count from now.
    return Write(r, {"IN_PROGRESS", r.wave, now_ms, 0,
                     absl::StrCat("wave ", r.wave + 1, ": the shadow stage passed; the candidate "
                                  "serves"),
                     results, "controller", false})
        .status();
  }
  if (baked >= hold && all_pass) {
    if (r.wave + 1 < waves) {
      ASSIGN_OR_RETURN(bool applied, Write(r, {"IN_PROGRESS", r.wave + 1, now_ms, 0,
                                               absl::StrCat("wave ", r.wave + 1, " passed"),
                                               results, "controller", r.spec.has_shadow()}));
      // The next wave's devices are released in this pass (at most once per wave, so the
      // recursion is bounded by the plan's length).
      return applied ? Reconcile(r) : absl::OkStatus();
    }
    return Write(r, {"COMPLETED", r.wave, r.wave_started_ms, r.bake_started_ms,
                     absl::StrCat("every wave passed; ", o.cumulative.back(), " devices"), results,
                     "controller"})
        .status();
  }
  const absl::Duration limit = r.spec.inconclusive_seconds() > 0
                                   ? absl::Seconds(r.spec.inconclusive_seconds())
                                   : options_.inconclusive_limit;
  if (!all_pass && baked >= hold + limit) {
    return fail(absl::StrCat("wave ", r.wave + 1, ": a gate stayed inconclusive for ",
                             absl::FormatDuration(limit), " after the bake time (", waiting, ")"));
  }
  return store::RunInTransaction(db, [&](store::Transaction& tx) {
    return RolloutStore::SaveGates(tx, r.id, results, now_ms);
  });
}

absl::StatusOr<v1::GateResult> Controller::JudgeShadow(const RolloutRecord& r,
                                                       const v1::RolloutGate& gate,
                                                       const std::set<std::string>& devices,
                                                       int64_t now_ms) {
  // A device counts the candidate it shadows in the windows of the version it serves: in the
  // shadow stage, the replaced one.
  WaveMeasurements m;
  if (options_.telemetry != nullptr && r.replaced_version > 0) {
    const int64_t from_ms = gate.window_seconds() > 0
                                ? std::max(r.wave_started_ms, now_ms - gate.window_seconds() * 1000)
                                : r.wave_started_ms;
    ASSIGN_OR_RETURN(v1::TelemetrySummary served,
                     options_.telemetry->DevicesSummary(r.model_id, r.replaced_version, &devices,
                                                        from_ms, now_ms + 1));
    for (const v1::ShadowSummary& shadow : served.shadows()) {
      if (shadow.version() != r.version) continue;
      m.shadow = shadow;
      m.has_shadow = true;
    }
  }
  return JudgeGate(gate, m);
}

absl::StatusOr<std::vector<fleet::DesiredOverride>> Controller::Overrides(
    store::Reader& db, const std::string& device_id, const fleet::Attributes& attributes) {
  ASSIGN_OR_RETURN(std::vector<RolloutStore::InForce> rows,
                   RolloutStore::InForceFor(db, device_id));
  // Per model the newest rollout that serves, and the newest one that shadows (when newer).
  std::map<int64_t, fleet::DesiredOverride> serving, shadowing;
  for (const RolloutStore::InForce& row : rows) {
    if (row.by_selector) {
      absl::StatusOr<fleet::Selector> selector = fleet::Selector::Parse(row.selector);
      if (!selector.ok() || !selector->Matches(attributes)) continue;
    }
    fleet::DesiredOverride& o = (row.shadow.has_value() ? shadowing : serving)[row.model_id];
    if (row.created_at_ms < o.ordered_at_ms) continue;
    o = {row.model_id, row.version, row.created_at_ms, std::nullopt};
    if (row.shadow.has_value()) {
      v1::ShadowModule& s = o.shadow.emplace();
      s.set_sample_ratio(row.shadow->sample_ratio());
      s.set_cpu_budget(row.shadow->cpu_budget());
      s.set_tolerance(row.shadow->tolerance());
    }
  }
  std::vector<fleet::DesiredOverride> out;
  for (auto& [model, o] : serving) out.push_back(o);
  for (auto& [model, o] : shadowing) {
    auto it = serving.find(model);
    if (it == serving.end() || o.ordered_at_ms >= it->second.ordered_at_ms) out.push_back(o);
  }
  return out;
}

void Controller::Start() {
  std::lock_guard lock(mu_);
  if (loop_.joinable()) return;
  stop_ = false;
  loop_ = std::thread([this] { Loop(); });
}

void Controller::Shutdown() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (loop_.joinable()) loop_.join();
}

void Controller::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    (void)ReconcileAll();  // logged per rollout; the next tick tries again
    lock.lock();
    wake_.wait_for(lock, absl::ToChronoNanoseconds(options_.tick), [this] { return stop_; });
  }
}

}  // namespace edgeloop::rollout
