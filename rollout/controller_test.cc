#include "rollout/controller.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "common/testing/fake_clock.h"
#include "compiler/testing/onnx_models.h"
#include "fleet/testing/profiles.h"
#include "fleet/testing/test_fleet.h"
#include "gtest/gtest.h"
#include "common/latency_buckets.h"
#include "registry/registry.h"
#include "rollout/schema.h"
#include "telemetry/schema.h"
#include "telemetry/window_store.h"

namespace edgeloop::rollout {
namespace {

namespace fs = std::filesystem;

const v1::HardwareProfile& X86() {
  static const auto* p = new v1::HardwareProfile(fleet::testing::Profile(
      "x86_64", {"cmov", "cx8", "fpu", "fxsr", "mmx", "sse", "sse2"}, 4096));
  return *p;
}

/// The controller on a test fleet, on SQLite and on PostgreSQL, with a fake clock: devices
/// "install" by syncing the state an agent would report.
class ControllerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "edgeloop-rollout-", RandomHex(6));
    fs::create_directories(dir_);
    auto fleet = fleet::testing::TestFleet::Create(
        {.driver = GetParam(),
         .dir = dir_,
         .clock = &clock_,
         .more_components = {&telemetry::Migrations(), &Migrations()},
         .assignments = true,
         .overrides = [this](const std::string& id, const fleet::Attributes& a) {
           return Controller::Overrides(*fleet_->db, id, a);
         }});
    ASSERT_TRUE(fleet.ok()) << fleet.status();
    fleet_ = std::move(*fleet);
    telemetry::TelemetryQueryOptions queries;
    queries.database = fleet_->db.get();
    queries.clock = &clock_;
    queries_ = std::make_unique<telemetry::TelemetryQueries>(queries);
    controller_ = std::make_unique<Controller>(
        ControllerOptions{.database = fleet_->db.get(),
                          .clock = &clock_,
                          .telemetry = queries_.get(),
                          .on_desired_change = [this] { ++notified_; },
                          .on_devices_change =
                              [this](const std::vector<std::string>& ids) {
                                told_.insert(ids.begin(), ids.end());
                              }});
    // Version 1 runs everywhere; version 2 was built for x86-64 only.
    auto id = fleet_->AddModel("m", compiler::testing::MlpOnnx(4, 4, 2),
                               {{1, {"x86_64-v1", "aarch64-v8"}}, {2, {"x86_64-v1"}}});
    ASSERT_TRUE(id.ok()) << id.status();
  }
  void TearDown() override {
    controller_.reset();
    queries_.reset();
    fleet_.reset();
    fs::remove_all(dir_);
  }

  std::string Enroll(const v1::HardwareProfile& profile,
                     std::map<std::string, std::string> labels = {}) {
    auto id = fleet_->EnrollDevice(profile, labels);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  }
  void AssignAll(int64_t version) {
    v1::AssignModelRequest a;
    a.set_model("m");
    a.set_selector("hw.cores>=0");
    a.set_version(version);
    ASSERT_TRUE(fleet_->assignments->Assign(a, "test").ok());
  }
  // The version the device is told to run (0: none).
  int64_t Desired(const std::string& device) {
    auto state = fleet_->devices->DesiredState(device);
    EXPECT_TRUE(state.ok()) << state.status();
    for (const auto& m : state->desired_modules()) {
      if (m.model() == "m") return m.version();
    }
    return 0;
  }
  // The device reports what an agent reports: running what it was told, or failing it.
  void Sync(const std::string& device, bool fail = false) {
    const int64_t want = Desired(device);
    v1::SyncRequest sync;
    if (want > 0) {
      v1::ModuleStatus* s = sync.mutable_state()->add_modules();
      s->mutable_module()->set_model("m");
      s->mutable_module()->set_version(want);
      s->set_state(fail ? "failed" : "running");
      if (fail && running_.count(device)) {
        v1::ModuleStatus* old = sync.mutable_state()->add_modules();
        old->mutable_module()->set_model("m");
        old->mutable_module()->set_version(running_[device]);
        old->set_state("running");
      }
    }
    if (!fail) running_[device] = want;
    for (const auto& shadow : ShadowsOf(device)) {
      v1::ModuleStatus* s = sync.mutable_state()->add_modules();
      s->mutable_module()->set_model("m");
      s->mutable_module()->set_version(shadow);
      s->set_state("shadowing");
    }
    ASSERT_TRUE(fleet_->devices->Sync(device, sync).ok());
  }
  // The versions the device is told to run beside the one it serves.
  std::vector<int64_t> ShadowsOf(const std::string& device) {
    auto state = fleet_->devices->DesiredState(device);
    EXPECT_TRUE(state.ok()) << state.status();
    std::vector<int64_t> out;
    for (const auto& s : state->shadow_modules()) out.push_back(s.module().version());
    return out;
  }
  // A minute's window of version `served` from `device`, in which `shadowed` of its calls also
  // ran on version `candidate` and `agreed` of them agreed.
  void ReportShadow(const std::string& device, int64_t served, int64_t candidate,
                    int64_t shadowed, int64_t agreed) {
    auto model_id = registry::Registry::FindModelId(*fleet_->db, "m");
    ASSERT_TRUE(model_id.ok() && model_id->has_value());
    telemetry::IncomingWindow in;
    in.device_id = device;
    in.model_id = **model_id;
    in.target = "x86_64-v1";
    v1::TelemetryWindow& w = in.window;
    const int64_t start = (absl::ToUnixMillis(clock_.Now()) - 60'000) / 1000 * 1000;
    w.set_id(absl::StrCat("m/", served, "/", start));
    w.set_model("m");
    w.set_version(served);
    w.set_start_ms(start);
    w.set_end_ms(start + 60'000);
    w.set_requests(shadowed * 2);
    v1::TelemetryWindow::Shadow* sh = w.add_shadows();
    sh->set_version(candidate);
    sh->set_requests(shadowed);
    sh->set_agreed(agreed);
    for (size_t b = 0; b < kLatencyBuckets; ++b) sh->add_latency_counts(b == 8 ? shadowed : 0);
    ASSERT_TRUE(store::RunInTransaction(*fleet_->db, [&](store::Transaction& tx) {
                  return telemetry::WindowStore::Store(tx, fleet_->db->dialect(), {in},
                                                       absl::Minutes(1),
                                                       absl::ToUnixMillis(clock_.Now()))
                      .status();
                }).ok());
  }
  // A sync that reports what the device ran before, without installing anything new.
  void Heartbeat(const std::string& device) {
    v1::SyncRequest sync;
    if (running_.count(device)) {
      v1::ModuleStatus* s = sync.mutable_state()->add_modules();
      s->mutable_module()->set_model("m");
      s->mutable_module()->set_version(running_[device]);
      s->set_state("running");
    }
    ASSERT_TRUE(fleet_->devices->Sync(device, sync).ok());
  }
  void SyncAll(const std::vector<std::string>& devices, const std::set<std::string>& failing = {}) {
    for (const std::string& d : devices) Sync(d, failing.count(d) > 0);
  }
  void Reconcile() { ASSERT_TRUE(controller_->ReconcileAll().ok()); }
  v1::Rollout Get(int64_t id) {
    auto r = controller_->Get(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::Rollout();
  }
  std::vector<std::string> Transitions(int64_t id) {
    auto events = controller_->Events({});
    v1::ListRolloutEventsRequest request;
    request.set_id(id);
    auto listed = controller_->Events(request);
    EXPECT_TRUE(listed.ok()) << listed.status();
    std::vector<std::string> out;
    for (const auto& e : listed->events()) {
      out.push_back(absl::StrCat(e.to_state(), "@", e.wave(), e.shadowing() ? "/shadow" : ""));
    }
    return out;
  }
  static v1::RolloutSpec Spec(std::vector<double> waves, int64_t bake_seconds,
                              const std::string& on_failure = "pause") {
    v1::RolloutSpec spec;
    spec.set_model("m");
    spec.set_version(2);
    for (double w : waves) spec.add_waves(w);
    spec.set_bake_seconds(bake_seconds);
    spec.set_on_failure(on_failure);
    v1::RolloutGate* g = spec.add_gates();
    g->set_metric("install_success_ratio");
    g->set_threshold(1);
    g = spec.add_gates();
    g->set_metric("failed_installs");
    g->set_threshold(0);
    return spec;
  }
  // Waves of 20 % and 100 % with a shadow stage of `seconds`, whose agreement must be 90 %
  // over at least 50 calls; rolled back otherwise.
  static v1::RolloutSpec ShadowSpec(int64_t seconds) {
    v1::RolloutSpec spec = Spec({20, 100}, 60, "rollback");
    spec.mutable_shadow()->set_seconds(seconds);
    v1::RolloutGate* g = spec.add_gates();
    g->set_metric("shadow_agreement");
    g->set_threshold(0.9);
    g->set_min_samples(50);
    return spec;
  }
  int64_t Create(const v1::RolloutSpec& spec) {
    auto r = controller_->Create(spec, "alice");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->id() : 0;
  }
  // Devices told to run version 2.
  std::set<std::string> OnCandidate(const std::vector<std::string>& devices) {
    std::set<std::string> out;
    for (const std::string& d : devices) {
      if (Desired(d) == 2) out.insert(d);
    }
    return out;
  }

  std::string dir_;
  edgeloop::testing::FakeClock clock_;
  std::unique_ptr<fleet::testing::TestFleet> fleet_;
  std::unique_ptr<telemetry::TelemetryQueries> queries_;
  std::unique_ptr<Controller> controller_;
  std::map<std::string, int64_t> running_;
  int notified_ = 0;          // fleet-wide wake-ups
  std::set<std::string> told_;  // devices woken one by one
};

TEST_P(ControllerTest, CleanRolloutPassesEveryWaveAfterItsBakeTime) {
  std::vector<std::string> devices;
  for (int i = 0; i < 20; ++i) devices.push_back(Enroll(X86()));
  const std::string pi = Enroll(fleet::testing::Pi4());
  AssignAll(1);
  SyncAll(devices);
  Sync(pi);
  const int64_t id = Create(Spec({10, 50, 100}, 600));
  EXPECT_EQ(Get(id).state(), "PENDING");
  EXPECT_EQ(Get(id).replaced_version(), 1);

  Reconcile();
  // Wave 1: 10 % of 21 devices, rounded up.
  v1::Rollout r = Get(id);
  EXPECT_EQ(r.state(), "IN_PROGRESS");
  EXPECT_EQ(r.waves(0).devices(), 3);
  std::set<std::string> first = OnCandidate(devices);
  EXPECT_LE(first.size(), 3u);
  // Releasing wakes the watchers of the released devices only.
  EXPECT_EQ(notified_, 0);
  EXPECT_EQ(told_.size(), 3u);
  for (const std::string& d : first) EXPECT_TRUE(told_.count(d)) << d;
  SyncAll(devices);
  Sync(pi);
  Reconcile();
  r = Get(id);
  EXPECT_EQ(r.state(), "BAKING") << r.message();
  EXPECT_EQ(r.waves(0).counts().active() + r.waves(0).counts().incompatible(), 3);

  // Not before the bake time.
  clock_.Advance(absl::Seconds(599));
  Reconcile();
  EXPECT_EQ(Get(id).state(), "BAKING");
  clock_.Advance(absl::Seconds(1));
  Reconcile();
  r = Get(id);
  EXPECT_EQ(r.state(), "IN_PROGRESS");
  EXPECT_EQ(r.current_wave(), 1);
  EXPECT_EQ(r.waves(1).devices(), 8);  // 11 by the end of wave 2
  // Earlier waves keep their devices; the wave order is stable.
  std::set<std::string> second = OnCandidate(devices);
  for (const std::string& d : first) EXPECT_TRUE(second.count(d)) << d;

  for (int wave = 1; wave < 3; ++wave) {
    SyncAll(devices);
    Sync(pi);
    Reconcile();
    EXPECT_EQ(Get(id).state(), "BAKING");
    clock_.Advance(absl::Seconds(600));
    Reconcile();
  }
  r = Get(id);
  EXPECT_EQ(r.state(), "COMPLETED") << r.message();
  EXPECT_EQ(OnCandidate(devices).size(), devices.size());
  // The Raspberry Pi has no module of version 2: incompatible, kept on version 1.
  EXPECT_EQ(Desired(pi), 1);
  int64_t incompatible = 0;
  for (const auto& w : r.waves()) incompatible += w.counts().incompatible();
  EXPECT_EQ(incompatible, 1);
  EXPECT_EQ(Transitions(id),
            (std::vector<std::string>{"PENDING@0", "IN_PROGRESS@0", "BAKING@0", "IN_PROGRESS@1",
                                      "BAKING@1", "IN_PROGRESS@2", "BAKING@2", "COMPLETED@2"}));

  // A device that joins later and matches receives it.
  const std::string late = Enroll(X86());
  EXPECT_EQ(Desired(late), 2);
}

TEST_P(ControllerTest, FailedInstallsRollBackOnlyTheWaveThatTookIt) {
  std::vector<std::string> devices;
  for (int i = 0; i < 20; ++i) devices.push_back(Enroll(X86()));
  AssignAll(1);
  SyncAll(devices);
  const int64_t id = Create(Spec({10, 100}, 600, "rollback"));
  Reconcile();
  const std::set<std::string> canary = OnCandidate(devices);
  ASSERT_EQ(canary.size(), 2u);
  // One canary device fails its install.
  SyncAll(devices, {*canary.begin()});
  told_.clear();
  const int fleet_wide = notified_;
  Reconcile();
  v1::Rollout r = Get(id);
  EXPECT_EQ(r.state(), "ROLLING_BACK") << r.message();
  // Only the devices it released are woken to go back, not every watcher.
  EXPECT_EQ(told_, canary);
  EXPECT_EQ(notified_, fleet_wide);
  EXPECT_NE(r.message().find("failed_installs"), std::string::npos) << r.message();
  // Every device is told to run version 1 again; none outside the canary ever got 2.
  EXPECT_TRUE(OnCandidate(devices).empty());
  SyncAll(devices);
  Reconcile();
  r = Get(id);
  EXPECT_EQ(r.state(), "ROLLED_BACK") << r.message();
  EXPECT_EQ(r.waves(0).counts().rolled_back(), 1);  // the one that had switched
  EXPECT_EQ(r.waves(1).devices(), 0);
  EXPECT_EQ(Transitions(id).back(), "ROLLED_BACK@0");
  // The event that rolled it back carries the gate values.
  v1::ListRolloutEventsRequest request;
  request.set_id(id);
  auto events = controller_->Events(request);
  ASSERT_TRUE(events.ok());
  const v1::RolloutEvent& rollback = events->events(events->events_size() - 2);
  EXPECT_EQ(rollback.to_state(), "ROLLING_BACK");
  bool failed_gate = false;
  for (const auto& g : rollback.gates()) {
    if (g.metric() == "failed_installs") {
      failed_gate = true;
      EXPECT_EQ(g.verdict(), "FAIL");
      EXPECT_EQ(g.value(), 1);
    }
  }
  EXPECT_TRUE(failed_gate);
}

TEST_P(ControllerTest, PausePolicyStopsAndOperatorActionsAreIdempotent) {
  std::vector<std::string> devices;
  for (int i = 0; i < 10; ++i) devices.push_back(Enroll(X86()));
  AssignAll(1);
  SyncAll(devices);
  const int64_t id = Create(Spec({20, 100}, 60, "pause"));
  Reconcile();
  const std::set<std::string> canary = OnCandidate(devices);
  SyncAll(devices, {*canary.begin()});
  Reconcile();
  EXPECT_EQ(Get(id).state(), "PAUSED");
  // Paused keeps what the wave has: the canary stays on the candidate.
  EXPECT_EQ(OnCandidate(devices).size(), canary.size());

  v1::RolloutActionRequest action;
  action.set_id(id);
  EXPECT_EQ(controller_->Pause(action, "bob")->state(), "PAUSED");  // again: fine
  // Promote passes the wave over the failing gate.
  EXPECT_EQ(controller_->Promote(action, "bob")->state(), "IN_PROGRESS");
  Reconcile();
  EXPECT_EQ(OnCandidate(devices).size(), devices.size());
  EXPECT_EQ(controller_->Abort(action, "bob")->state(), "ABORTED");
  EXPECT_EQ(controller_->Abort(action, "bob")->state(), "ABORTED");  // idempotent
  EXPECT_TRUE(OnCandidate(devices).empty());                         // abort undoes it
  EXPECT_EQ(controller_->Promote(action, "bob").status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(controller_->Resume(action, "bob").status().code(), absl::StatusCode::kAborted);
  action.set_id(999);
  EXPECT_EQ(controller_->Pause(action, "bob").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(ControllerTest, APausedRolloutKeepsCountingItsReleasedDevices) {
  std::vector<std::string> devices;
  for (int i = 0; i < 10; ++i) devices.push_back(Enroll(X86()));
  AssignAll(1);
  SyncAll(devices);
  const int64_t id = Create(Spec({30, 100}, 60, "pause"));
  Reconcile();
  const std::set<std::string> canary = OnCandidate(devices);
  ASSERT_EQ(canary.size(), 3u);
  // The operator pauses before the canary devices report.
  v1::RolloutActionRequest action;
  action.set_id(id);
  ASSERT_EQ(controller_->Pause(action, "bob")->state(), "PAUSED");
  const v1::Rollout before = Get(id);
  EXPECT_EQ(before.waves(0).counts().pending(), 3);
  // They install anyway (they were told before the pause); the next pass counts them, and
  // reading the rollout shows what that pass stored.
  SyncAll(devices);
  clock_.Advance(absl::Seconds(1));
  Reconcile();
  const v1::Rollout after = Get(id);
  EXPECT_EQ(after.state(), "PAUSED");
  EXPECT_EQ(after.waves(0).counts().active(), 3);
  EXPECT_EQ(after.waves(1).devices(), 0);
  EXPECT_GT(after.observe_time().seconds() * 1000 + after.observe_time().nanos() / 1'000'000,
            before.observe_time().seconds() * 1000 + before.observe_time().nanos() / 1'000'000);
  EXPECT_EQ(OnCandidate(devices), canary);
}

TEST_P(ControllerTest, InconclusiveGateWaitsThenActs) {
  std::vector<std::string> devices;
  for (int i = 0; i < 4; ++i) devices.push_back(Enroll(X86()));
  AssignAll(1);
  SyncAll(devices);
  v1::RolloutSpec spec = Spec({50, 100}, 60);
  v1::RolloutGate* g = spec.add_gates();
  g->set_metric("error_rate");
  g->set_threshold(0.01);
  g->set_min_samples(1000);  // no device reports telemetry here
  spec.set_inconclusive_seconds(300);
  const int64_t id = Create(spec);
  Reconcile();
  SyncAll(devices);
  Reconcile();
  clock_.Advance(absl::Seconds(60));
  Reconcile();
  v1::Rollout r = Get(id);
  EXPECT_EQ(r.state(), "BAKING");  // never passes by default
  bool waiting = false;
  for (const auto& gate : r.gates()) waiting |= gate.verdict() == "INCONCLUSIVE";
  EXPECT_TRUE(waiting);
  clock_.Advance(absl::Seconds(299));
  Reconcile();
  EXPECT_EQ(Get(id).state(), "BAKING");
  clock_.Advance(absl::Seconds(1));
  Reconcile();
  r = Get(id);
  EXPECT_EQ(r.state(), "PAUSED");
  EXPECT_NE(r.message().find("inconclusive"), std::string::npos) << r.message();
}

TEST_P(ControllerTest, OfflineDevicesAndTheMaintenanceWindow) {
  std::vector<std::string> devices;
  for (int i = 0; i < 4; ++i) devices.push_back(Enroll(X86()));
  AssignAll(1);
  SyncAll(devices);
  // The fake clock starts at 2023-11-14 22:13 UTC; the window opens at 23:00 for an hour.
  v1::RolloutSpec spec = Spec({100}, 0);
  spec.mutable_maintenance_window()->set_cron("0 23 * * *");
  spec.mutable_maintenance_window()->set_duration_seconds(3600);
  spec.set_offline_deadline_seconds(600);
  const int64_t id = Create(spec);
  Reconcile();
  EXPECT_TRUE(OnCandidate(devices).empty());  // outside the window: the devices wait
  EXPECT_EQ(Get(id).waves(0).devices(), 0);
  clock_.Advance(absl::Minutes(47));
  for (const std::string& d : devices) Heartbeat(d);
  Reconcile();
  EXPECT_EQ(OnCandidate(devices).size(), 4u);
  // Three install; the fourth goes silent: pending until the deadline, then offline, not
  // failed.
  SyncAll({devices[0], devices[1], devices[2]});
  Reconcile();
  EXPECT_EQ(Get(id).state(), "IN_PROGRESS");
  EXPECT_EQ(Get(id).waves(0).counts().pending(), 1);
  clock_.Advance(absl::Seconds(601));
  SyncAll({devices[0], devices[1], devices[2]});
  Reconcile();
  v1::Rollout r = Get(id);
  EXPECT_EQ(r.state(), "COMPLETED") << r.message();
  EXPECT_EQ(r.waves(0).counts().offline(), 1);
  EXPECT_EQ(r.waves(0).counts().failed(), 0);
  EXPECT_EQ(r.waves(0).counts().active(), 3);
}

TEST_P(ControllerTest, RefusesBadSpecsAndOverlappingRollouts) {
  const std::string d = Enroll(X86(), {{"site", "a"}});
  AssignAll(1);
  auto code = [&](const v1::RolloutSpec& spec) {
    return controller_->Create(spec, "a").status().code();
  };
  v1::RolloutSpec spec = Spec({10, 100}, 0);
  spec.set_selector("site in (a");
  EXPECT_EQ(code(spec), absl::StatusCode::kInvalidArgument);
  spec = Spec({50, 10}, 0);
  EXPECT_EQ(code(spec), absl::StatusCode::kInvalidArgument);
  spec = Spec({10, 120}, 0);
  EXPECT_EQ(code(spec), absl::StatusCode::kInvalidArgument);
  spec = Spec({100}, 0);
  spec.add_gates()->set_metric("happiness");
  EXPECT_EQ(code(spec), absl::StatusCode::kInvalidArgument);
  spec = Spec({100}, 0);
  spec.mutable_maintenance_window()->set_cron("61 * * * *");
  spec.mutable_maintenance_window()->set_duration_seconds(60);
  EXPECT_EQ(code(spec), absl::StatusCode::kInvalidArgument);
  spec = Spec({100}, 0);
  spec.set_on_failure("pray");
  EXPECT_EQ(code(spec), absl::StatusCode::kInvalidArgument);
  spec = Spec({100}, 0);
  spec.set_version(7);
  EXPECT_EQ(code(spec), absl::StatusCode::kNotFound);
  spec = Spec({100}, 0);
  spec.set_model("nope");
  EXPECT_EQ(code(spec), absl::StatusCode::kNotFound);
  // A version still compiling is not READY.
  v1::CreateVersionRequest push;
  push.set_model("m");
  auto v1 = fleet_->models->GetVersion([] {
    v1::GetVersionRequest g;
    g.set_model("m");
    g.set_version(1);
    return g;
  }());
  ASSERT_TRUE(v1.ok());
  push.set_onnx_digest(v1->onnx_digest());
  ASSERT_TRUE(fleet_->models->CreateVersion(push, "test").ok());
  spec = Spec({100}, 0);
  spec.set_version(3);
  EXPECT_EQ(code(spec), absl::StatusCode::kFailedPrecondition);
  auto listed = controller_->List({});
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->rollouts_size(), 0);  // nothing created by any of these

  // A second rollout for the same devices: 409 unless it supersedes the first.
  spec = Spec({100}, 0);
  spec.set_selector("site=a");
  const int64_t first = Create(spec);
  EXPECT_EQ(code(spec), absl::StatusCode::kAlreadyExists);
  v1::RolloutSpec other = Spec({100}, 0);
  other.set_selector("site=b");  // no shared device: fine
  EXPECT_GT(Create(other), 0);
  spec.set_supersedes(first);
  const int64_t second = Create(spec);
  EXPECT_EQ(Get(first).state(), "ABORTED");
  EXPECT_EQ(Get(first).superseded_by(), second);
  (void)d;
}

// With a shadow stage each wave first runs the candidate beside the served module; the wave's
// devices switch to it only once its agreement gate passes.
TEST_P(ControllerTest, EachWaveShadowsTheCandidateBeforeItServes) {
  std::vector<std::string> devices;
  for (int i = 0; i < 10; ++i) devices.push_back(Enroll(X86()));
  AssignAll(1);
  SyncAll(devices);
  v1::RolloutSpec spec = ShadowSpec(120);
  spec.mutable_shadow()->set_sample_ratio(0.5);
  const int64_t id = Create(spec);
  EXPECT_EQ(Get(id).spec().shadow().cpu_budget(), 0.1);  // the default, stored with the spec
  Reconcile();
  v1::Rollout r = Get(id);
  EXPECT_EQ(r.state(), "IN_PROGRESS");
  EXPECT_TRUE(r.shadowing());
  // Nobody serves the candidate yet; the wave's two devices run it beside version 1.
  EXPECT_TRUE(OnCandidate(devices).empty());
  std::vector<std::string> wave;
  for (const std::string& d : devices) {
    if (!ShadowsOf(d).empty()) wave.push_back(d);
  }
  ASSERT_EQ(wave.size(), 2u);
  EXPECT_EQ(ShadowsOf(wave[0]), std::vector<int64_t>{2});
  auto desired = fleet_->devices->DesiredState(wave[0]);
  ASSERT_TRUE(desired.ok());
  EXPECT_EQ(desired->shadow_modules(0).sample_ratio(), 0.5);
  EXPECT_EQ(desired->shadow_modules(0).cpu_budget(), 0.1);

  SyncAll(devices);
  Reconcile();
  r = Get(id);
  EXPECT_EQ(r.state(), "BAKING") << r.message();
  EXPECT_EQ(r.waves(0).counts().shadowing(), 2);
  EXPECT_EQ(r.waves(0).counts().active(), 0);
  // The shadow stage's time is over, but without shadowed calls the gate cannot judge.
  clock_.Advance(absl::Seconds(120));
  Reconcile();
  r = Get(id);
  EXPECT_EQ(r.state(), "BAKING");
  ASSERT_EQ(r.gates_size(), 1);  // in the shadow stage only its gate is judged
  EXPECT_EQ(r.gates(0).verdict(), "INCONCLUSIVE");
  // 78 of 80 shadowed calls agree: the wave's devices switch to serving version 2.
  told_.clear();
  for (const std::string& d : wave) ReportShadow(d, 1, 2, 40, 39);
  Reconcile();
  r = Get(id);
  EXPECT_EQ(r.state(), "IN_PROGRESS") << r.message();
  EXPECT_FALSE(r.shadowing());
  EXPECT_EQ(OnCandidate(devices), std::set<std::string>(wave.begin(), wave.end()));
  EXPECT_EQ(told_, std::set<std::string>(wave.begin(), wave.end()));  // only they are woken
  for (const std::string& d : wave) EXPECT_TRUE(ShadowsOf(d).empty());
  SyncAll(devices);
  Reconcile();
  r = Get(id);
  EXPECT_EQ(r.state(), "BAKING");
  EXPECT_EQ(r.waves(0).counts().active(), 2);
  // Serving, the other gates are judged and the agreement gate is not.
  for (const auto& gate : r.gates()) EXPECT_NE(gate.metric(), "shadow_agreement");
  clock_.Advance(absl::Seconds(60));
  Reconcile();
  // Wave 2 shadows in its turn while wave 1 goes on serving.
  r = Get(id);
  EXPECT_EQ(r.current_wave(), 1);
  EXPECT_TRUE(r.shadowing());
  EXPECT_EQ(OnCandidate(devices).size(), 2u);
  SyncAll(devices);
  Reconcile();
  clock_.Advance(absl::Seconds(120));
  for (const std::string& d : devices) {
    if (!ShadowsOf(d).empty()) ReportShadow(d, 1, 2, 10, 10);
  }
  Reconcile();
  SyncAll(devices);
  Reconcile();
  clock_.Advance(absl::Seconds(60));
  Reconcile();
  r = Get(id);
  EXPECT_EQ(r.state(), "COMPLETED") << r.message();
  EXPECT_EQ(OnCandidate(devices).size(), devices.size());
  EXPECT_EQ(Transitions(id),
            (std::vector<std::string>{"PENDING@0", "IN_PROGRESS@0/shadow", "BAKING@0/shadow",
                                      "IN_PROGRESS@0", "BAKING@0", "IN_PROGRESS@1/shadow",
                                      "BAKING@1/shadow", "IN_PROGRESS@1", "BAKING@1",
                                      "COMPLETED@1"}));
}

TEST_P(ControllerTest, ACandidateThatDisagreesInTheShadowIsRolledBackUnserved) {
  std::vector<std::string> devices;
  for (int i = 0; i < 10; ++i) devices.push_back(Enroll(X86()));
  AssignAll(1);
  SyncAll(devices);
  const int64_t id = Create(ShadowSpec(60));
  Reconcile();
  SyncAll(devices);
  Reconcile();
  clock_.Advance(absl::Seconds(60));
  for (const std::string& d : devices) {
    if (!ShadowsOf(d).empty()) ReportShadow(d, 1, 2, 40, 20);
  }
  Reconcile();
  v1::Rollout r = Get(id);
  EXPECT_EQ(r.state(), "ROLLING_BACK") << r.message();
  EXPECT_NE(r.message().find("shadow_agreement"), std::string::npos) << r.message();
  ASSERT_EQ(r.gates_size(), 1);
  EXPECT_EQ(r.gates(0).verdict(), "FAIL");
  EXPECT_DOUBLE_EQ(r.gates(0).value(), 0.5);
  // Nobody ever served it, and nobody shadows it any more.
  for (const std::string& d : devices) {
    EXPECT_EQ(Desired(d), 1);
    EXPECT_TRUE(ShadowsOf(d).empty());
  }
  SyncAll(devices);
  Reconcile();
  r = Get(id);
  EXPECT_EQ(r.state(), "ROLLED_BACK") << r.message();
  EXPECT_EQ(r.waves(0).counts().rolled_back(), 0);
}

TEST_P(ControllerTest, PromotingAShadowStageMakesTheWaveServe) {
  std::vector<std::string> devices;
  for (int i = 0; i < 4; ++i) devices.push_back(Enroll(X86()));
  AssignAll(1);
  SyncAll(devices);
  v1::RolloutSpec spec = Spec({50, 100}, 60);
  spec.mutable_shadow()->set_seconds(3600);
  const int64_t id = Create(spec);
  Reconcile();
  SyncAll(devices);
  Reconcile();
  // Paused and resumed, the wave is still in its shadow stage.
  v1::RolloutActionRequest action;
  action.set_id(id);
  ASSERT_TRUE(controller_->Pause(action, "bob").ok());
  EXPECT_TRUE(Get(id).shadowing());
  ASSERT_TRUE(controller_->Resume(action, "bob").ok());
  EXPECT_TRUE(Get(id).shadowing());
  EXPECT_TRUE(OnCandidate(devices).empty());
  auto promoted = controller_->Promote(action, "bob");
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  EXPECT_EQ(promoted->state(), "IN_PROGRESS");
  EXPECT_FALSE(promoted->shadowing());
  EXPECT_EQ(promoted->current_wave(), 0);
  EXPECT_EQ(OnCandidate(devices).size(), 2u);
}

TEST_P(ControllerTest, RefusesBadShadowStages) {
  Enroll(X86());
  AssignAll(1);
  auto code = [&](const v1::RolloutSpec& spec) {
    return controller_->Create(spec, "a").status().code();
  };
  v1::RolloutSpec spec = Spec({100}, 0);
  spec.add_gates()->set_metric("shadow_agreement");  // without a shadow stage
  EXPECT_EQ(code(spec), absl::StatusCode::kInvalidArgument);
  for (auto bad : std::vector<std::function<void(v1::ShadowStage&)>>{
           [](v1::ShadowStage& s) { s.set_sample_ratio(1.5); },
           [](v1::ShadowStage& s) { s.set_cpu_budget(-0.1); },
           [](v1::ShadowStage& s) { s.set_tolerance(NAN); },
           [](v1::ShadowStage& s) { s.set_seconds(-1); }}) {
    spec = Spec({100}, 0);
    bad(*spec.mutable_shadow());
    EXPECT_EQ(code(spec), absl::StatusCode::kInvalidArgument);
  }
  auto listed = controller_->List({});
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->rollouts_size(), 0);
}

INSTANTIATE_TEST_SUITE_P(Drivers, ControllerTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::rollout
