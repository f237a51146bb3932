// Rollouts on fleets of hundreds: a real server and edgeloop-fleetsim's virtual devices (in
// this process), speaking the real device protocol over mTLS. The simulator shifts the
// candidate's accuracy on one cohort, or fails its installs, and the gates must see it.
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "compiler/testing/onnx_models.h"
#include "edgeloop/v1/rollout.pb.h"
#include "sim/fleet_simulator.h"
#include "tests/testing/serving_fixture.h"

namespace edgeloop::tests {
namespace {

constexpr int kDevices = 200;

class FleetsimTest : public ServingTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--sync-interval-seconds", "2",  "--telemetry-window-seconds", "2",
            "--rollout-interval-ms",   "200"};
  }
  void TearDown() override {
    if (sim_) sim_->Stop();
    sim_.reset();
    ServingTest::TearDown();
  }

  // Half the fleet on this host's kind of CPU at site a (real modules), half aarch64 boards at
  // site b (emulated); `more` adds behaviours and faults to the scenario.
  void StartFleet(const std::string& more) {
    ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
    v1_ = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
    v2_ = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 2));
    ASSERT_GT(v2_, 0);
    v1::CreateEnrollmentTokenResponse token;
    ASSERT_TRUE(ParseProtoJson(Call("POST", "/v1/enrollment-tokens",
                                    absl::StrCat(R"({"maxUses":)", kDevices, "}"))
                                   .body,
                               &token)
                    .ok());
    auto rules = sim::ScenarioRules::FromJson(absl::StrCat(
        R"({"groups":[{"weight":1,"target":"x86_64-v2","labels":{"site":"a"}},)",
        R"({"weight":1,"target":"aarch64-v8","labels":{"site":"b"}}],)",
        R"("callsPerSecond":20,"behaviours":[{"accuracy":0.9,"latencyUs":900})", more, "}"));
    ASSERT_TRUE(rules.ok()) << rules.status();
    sim::SimulatorOptions o;
    o.server = server_->device_address();
    o.enroll_token = token.secret();
    o.devices = kDevices;
    o.ramp_up = absl::Seconds(2);
    o.work_dir = NewTempDir("edgeloop-fleetsim");
    auto sim = sim::FleetSimulator::Create(o, *std::move(rules));
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    sim_->Start();
    ASSERT_TRUE(Eventually([&] { return sim_->counts().enrolled == kDevices; }, absl::Seconds(60)))
        << sim_->Summary();
    ASSERT_EQ(Call("POST", "/v1/assignments",
                   absl::StrCat(R"({"model":"kws","selector":"fleetsim","version":")", v1_, "\"}"))
                  .status,
              201);
    ASSERT_TRUE(Eventually([&] { return Running(v1_) == kDevices; }, absl::Seconds(60)))
        << sim_->Summary();
    // The boards' class joined after version 2 was built: an alias makes the CI stage build it
    // for them too, before the rollout (else they would start out incompatible).
    ASSERT_EQ(Call("PUT", "/v1/models/kws/aliases/candidate",
                   absl::StrCat(R"({"version":")", v2_, R"("})"))
                  .status,
              200);
    ASSERT_TRUE(Eventually(
        [&] {
          return absl::StrContains(
              Call("GET", absl::StrCat("/v1/models/kws/versions/", v2_, "/artifacts")).body,
              "\"aarch64-v8\"");
        },
        absl::Seconds(90)));
  }
  int64_t Running(int64_t version) {
    const auto running = sim_->Running();
    auto it = running.find(absl::StrCat("kws v", version));
    return it == running.end() ? 0 : it->second;
  }
  v1::Rollout Rollout(int64_t id) {
    v1::Rollout r;
    ParseProtoJson(Call("GET", absl::StrCat("/v1/rollouts/", id)).body, &r).IgnoreError();
    return r;
  }
  int64_t Create(const std::string& gates, const std::string& policy) {
    HttpResponse created = Call(
        "POST", "/v1/rollouts",
        absl::StrCat(R"({"model":"kws","version":")", v2_,
                     R"(","selector":"fleetsim","waves":[10,100],"bakeSeconds":"20","onFailure":")",
                     policy, R"(","gates":[)", gates, "]}"));
    EXPECT_EQ(created.status, 201) << created.body;
    v1::Rollout r;
    EXPECT_TRUE(ParseProtoJson(created.body, &r).ok());
    return r.id();
  }

  int64_t v1_ = 0, v2_ = 0;
  std::unique_ptr<sim::FleetSimulator> sim_;
};

TEST_P(FleetsimTest, ACandidateLessAccurateOnOneCohortIsRolledBackFromTheCanaryWave) {
  // Version 2 is right on 60 % of site b's labels, against 90 % everywhere for version 1.
  StartFleet(R"(,{"version":"2","cohort":"b","accuracy":0.6}])");
  ASSERT_FALSE(HasFailure());
  const int64_t id = Create(
      R"({"metric":"install_success_ratio","threshold":1},{"metric":"accuracy_delta","threshold":-5,"minSamples":"300"})",
      "rollback");
  ASSERT_TRUE(Eventually([&] { return Rollout(id).state() == "ROLLED_BACK"; }, absl::Seconds(120)))
      << Rollout(id).DebugString() << sim_->Summary();
  // Every device runs version 1 again; the second wave was never released.
  EXPECT_TRUE(Eventually([&] { return Running(v1_) == kDevices; }, absl::Seconds(60)))
      << sim_->Summary();
  const v1::Rollout r = Rollout(id);
  EXPECT_EQ(r.waves(0).devices(), kDevices / 10);
  EXPECT_EQ(r.waves(1).devices(), 0);
  EXPECT_EQ(r.waves(0).counts().rolled_back(), kDevices / 10);
  bool failed = false;
  for (const auto& g : r.gates()) {
    if (g.metric() == "accuracy_delta") failed = g.verdict() == "FAIL" && g.high() < -5;
  }
  EXPECT_TRUE(failed) << r.DebugString();
}

TEST_P(FleetsimTest, FailingInstallsPauseTheRolloutAndTheRestNeverSwitch) {
  // A third of the devices cannot install version 2.
  StartFleet(R"(],"faults":[{"kind":"fail_install","share":0.34,"version":"2"}])");
  ASSERT_FALSE(HasFailure());
  const int64_t id =
      Create(R"({"metric":"install_success_ratio","threshold":0.95,"minSamples":"10"})", "pause");
  ASSERT_TRUE(Eventually([&] { return Rollout(id).state() == "PAUSED"; }, absl::Seconds(120)))
      << Rollout(id).DebugString() << sim_->Summary();
  // Pausing releases no one new, but the canary devices already released finish their
  // installs. Once they have: those that took it keep it; the failed ones and the rest run v1.
  // (One snapshot of the simulator each time, so a device switching between two reads is not
  // counted twice.)
  v1::Rollout r;
  std::map<std::string, int64_t> running;
  auto settled = [&] {
    r = Rollout(id);
    running = sim_->Running();
    const auto& c = r.waves(0).counts();
    return c.active() + c.failed() == r.waves(0).devices() &&
           running[absl::StrCat("kws v", v2_)] == c.active();
  };
  ASSERT_TRUE(Eventually(settled, absl::Seconds(60))) << r.DebugString() << sim_->Summary();
  EXPECT_EQ(r.state(), "PAUSED");
  EXPECT_EQ(r.waves(1).devices(), 0);
  EXPECT_GT(r.waves(0).counts().failed(), 0);
  EXPECT_EQ(running[absl::StrCat("kws v", v1_)] + running[absl::StrCat("kws v", v2_)], kDevices)
      << sim_->Summary();
  EXPECT_GT(sim_->counts().installs_failed, 0);
}

TEST_P(FleetsimTest, ACandidateThatDisagreesOnOneCohortInTheShadowNeverServes) {
  // Beside version 1, version 2 agrees on half of site b's calls (98 % elsewhere). The canary
  // wave is site b: a wave drawn from both sites may, by the draw and by whose windows come in
  // first, have too few of site b's calls to fail the gate.
  StartFleet(R"(,{"version":"2","cohort":"b","agreement":0.5}])");
  ASSERT_FALSE(HasFailure());
  HttpResponse created = Call(
      "POST", "/v1/rollouts",
      absl::StrCat(R"({"model":"kws","version":")", v2_,
                   R"(","selector":"fleetsim","waves":[10,100],"canarySelector":"site=b",)",
                   R"("bakeSeconds":"20",)",
                   R"("onFailure":"rollback","shadow":{"seconds":"5","sampleRatio":0.5},)",
                   R"("gates":[{"metric":"shadow_agreement","threshold":0.9,"minSamples":"200"}]})"));
  ASSERT_EQ(created.status, 201) << created.body;
  v1::Rollout r;
  ASSERT_TRUE(ParseProtoJson(created.body, &r).ok());
  const int64_t id = r.id();
  ASSERT_TRUE(Eventually([&] { return Rollout(id).waves(0).counts().shadowing() > 0; },
                         absl::Seconds(60)))
      << Rollout(id).DebugString() << sim_->Summary();
  EXPECT_EQ(Running(v2_), 0);
  ASSERT_TRUE(Eventually([&] { return Rollout(id).state() == "ROLLED_BACK"; }, absl::Seconds(120)))
      << Rollout(id).DebugString() << sim_->Summary();
  r = Rollout(id);
  EXPECT_EQ(r.waves(0).devices(), kDevices / 2);
  EXPECT_EQ(r.waves(1).devices(), 0);
  EXPECT_EQ(r.waves(0).counts().active() + r.waves(0).counts().rolled_back(), 0);
  bool failed = false;
  for (const auto& g : r.gates()) {
    if (g.metric() == "shadow_agreement") failed = g.verdict() == "FAIL" && g.value() < 0.9;
  }
  EXPECT_TRUE(failed) << r.DebugString();
  EXPECT_EQ(Running(v1_), kDevices) << sim_->Summary();
  EXPECT_GE(sim_->counts().shadows, kDevices / 2);
}

INSTANTIATE_TEST_SUITE_P(Storage, FleetsimTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
