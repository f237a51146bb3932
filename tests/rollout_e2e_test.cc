// Staged rollouts end to end: a real server (SQLite or PostgreSQL), three real agents each with
// an application calling Predict and sending Feedback, and the operator's CLI. A candidate as
// good as the version it replaces goes through every wave; a less accurate one is rolled back
// from the canary device, and the others never run it.
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "agent/client/local_client.h"
#include "compiler/testing/onnx_models.h"
#include "edgeloop/v1/rollout.pb.h"
#include "edgeloop/v1/telemetry.pb.h"
#include "tests/testing/serving_fixture.h"

namespace edgeloop::tests {
namespace {

constexpr int kInputs = 64;

class RolloutTest : public ServingTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--sync-interval-seconds", "1",  "--telemetry-window-seconds", "2",
            "--rollout-interval-ms",   "200"};
  }

  void TearDown() override {
    StopApplications();
    agents_.clear();
    ServingTest::TearDown();
  }

  // Three agents at sites a, b and c, serving kws v1 (assigned to every device); the inputs'
  // true labels are what v1 predicts.
  void StartFleet() {
    ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
    v1_ = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
    ASSERT_GT(v1_, 0);
    for (const char* site : {"a", "b", "c"}) {
      agents_[site] = StartAgent({"--telemetry-spread-seconds", "0", "--max-backoff-seconds", "1"},
                                 absl::StrCat(R"({"site":")", site, "\"}"));
    }
    HttpResponse assigned =
        Call("POST", "/v1/assignments",
             absl::StrCat(R"({"model":"kws","selector":"hw.cores>=1","version":")", v1_, "\"}"));
    ASSERT_EQ(assigned.status, 201) << assigned.body;
    for (auto& [site, agent] : agents_) {
      ASSERT_TRUE(WaitServing(client::LocalClient(agent->state_dir() + "/agent.sock"), "kws", v1_))
          << agent->log();
    }
    client::LocalClient a(agents_["a"]->state_dir() + "/agent.sock");
    for (int k = 0; k < kInputs; ++k) {
      inputs_.push_back(Input(16, 0.05f * static_cast<float>(k + 1)));
      auto p = a.Predict("kws", {{"input", {1, 16}, inputs_.back()}});
      ASSERT_TRUE(p.ok()) << p.status();
      const std::vector<float>& scores = p->outputs[0].values;
      labels_.push_back(std::max_element(scores.begin(), scores.end()) - scores.begin());
    }
  }

  // Each device's application: predicts, then tells the agent the true label, until stopped;
  // remembers which versions answered it.
  void StartApplications() {
    for (auto& [site, agent] : agents_) {
      applications_.emplace_back([this, site = site, socket = agent->state_dir() + "/agent.sock"] {
        client::LocalClient client(socket);
        for (int k = 0; !stop_; k = (k + 1) % kInputs) {
          auto p = client.Predict("kws", {{"input", {1, 16}, inputs_[k]}});
          if (p.ok()) {
            {
              std::lock_guard lock(mu_);
              served_[site].insert(p->model_version);
            }
            client.Feedback(p->request_id, labels_[k]).IgnoreError();
          }
          // About 200 calls a second per device: data for the gates without a busy machine.
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      });
    }
  }
  void StopApplications() {
    stop_ = true;
    for (std::thread& t : applications_) t.join();
    applications_.clear();
  }
  std::set<int64_t> Served(const std::string& site) {
    std::lock_guard lock(mu_);
    return served_[site];
  }

  CommandResult Cli(std::vector<std::string> words) {
    std::vector<std::string> argv = {BinaryPath("edgeloop"), "--server", server_->grpc_address(),
                                     "--token-file", options_.data_dir + "/admin.token"};
    argv.insert(argv.end(), words.begin(), words.end());
    return RunCommand(argv);
  }
  v1::Rollout GetRollout(int64_t id) {
    v1::Rollout r;
    ParseProtoJson(Call("GET", absl::StrCat("/v1/rollouts/", id)).body, &r).IgnoreError();
    return r;
  }
  // Waits (up to `timeout`) for the rollout to reach `state`.
  bool WaitState(int64_t id, const std::string& state, absl::Duration timeout) {
    return Eventually([&] { return GetRollout(id).state() == state; }, timeout);
  }
  std::vector<v1::RolloutEvent> Events(int64_t id) {
    v1::ListRolloutEventsResponse events;
    ParseProtoJson(Call("GET", absl::StrCat("/v1/rollouts/", id, "/events")).body, &events)
        .IgnoreError();
    return {events.events().begin(), events.events().end()};
  }

  int64_t v1_ = 0;
  std::map<std::string, std::unique_ptr<AgentProcess>> agents_;
  std::vector<std::vector<float>> inputs_;
  std::vector<int64_t> labels_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> applications_;
  std::mutex mu_;
  std::map<std::string, std::set<int64_t>> served_;
};

TEST_P(RolloutTest, AGoodCandidatePassesEveryWaveThroughTheCli) {
  StartFleet();
  ASSERT_FALSE(HasFailure());
  StartApplications();
  // The same weights as v1: as accurate, as fast.
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  ASSERT_GT(v2, 0);
  CommandResult created = Cli({"-o",           "json",
                               "rollout",      "create",
                               "--model",      "kws",
                               "--version",    std::to_string(v2),
                               "--waves",      "33%,100%",
                               "--bake",       "3s",
                               "--on-failure", "rollback",
                               "--gate",       "install_success_ratio>=1",
                               "--gate",       "failed_installs<=0",
                               "--gate",       "error_rate<=0.01:min=50",
                               "--gate",       "accuracy_delta>=-5:min=100"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  v1::Rollout rollout;
  ASSERT_TRUE(ParseProtoJson(created.out, &rollout).ok()) << created.out;
  EXPECT_EQ(rollout.replaced_version(), v1_);
  EXPECT_EQ(rollout.matching_devices(), 3);

  ASSERT_TRUE(WaitState(rollout.id(), "COMPLETED", absl::Seconds(120)))
      << GetRollout(rollout.id()).DebugString();
  for (auto& [site, agent] : agents_) {
    EXPECT_TRUE(WaitServing(client::LocalClient(agent->state_dir() + "/agent.sock"), "kws", v2))
        << site;
  }
  // The waves in order, each held for its bake time with its gates passing.
  std::vector<std::string> path;
  for (const v1::RolloutEvent& e : Events(rollout.id())) {
    path.push_back(absl::StrCat(e.to_state(), "@", e.wave()));
  }
  EXPECT_EQ(path, (std::vector<std::string>{"PENDING@0", "IN_PROGRESS@0", "BAKING@0",
                                            "IN_PROGRESS@1", "BAKING@1", "COMPLETED@1"}));
  const v1::Rollout done = GetRollout(rollout.id());
  EXPECT_EQ(done.waves(0).devices(), 1);
  EXPECT_EQ(done.waves(1).devices(), 2);
  for (const v1::GateResult& g : done.gates()) EXPECT_EQ(g.verdict(), "PASS") << g.DebugString();

  // What the operator reads.
  CommandResult shown = Cli({"rollout", "show", std::to_string(rollout.id())});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_TRUE(absl::StrContains(shown.out, "state COMPLETED")) << shown.out;
  EXPECT_TRUE(absl::StrContains(shown.out, "accuracy_delta >= -5")) << shown.out;
  CommandResult events = Cli({"rollout", "events", std::to_string(rollout.id())});
  ASSERT_EQ(events.exit_code, 0) << events.err;
  EXPECT_TRUE(absl::StrContains(events.out, "wave 1 passed")) << events.out;
  CommandResult listed = Cli({"rollout", "list", "--model", "kws"});
  EXPECT_TRUE(absl::StrContains(listed.out, "COMPLETED")) << listed.out;
  // A finished rollout cannot be promoted; pausing it is refused the same way.
  CommandResult promote = Cli({"rollout", "promote", std::to_string(rollout.id())});
  EXPECT_NE(promote.exit_code, 0);
  HttpResponse again = Call("POST", absl::StrCat("/v1/rollouts/", rollout.id(), ":promote"));
  EXPECT_EQ(again.status, 409) << again.body;
}

TEST_P(RolloutTest, ALessAccurateCandidateIsRolledBackFromTheCanaryAndNoOtherDeviceRunsIt) {
  StartFleet();
  ASSERT_FALSE(HasFailure());
  StartApplications();
  // Other weights: its answers disagree with the labels most of the time.
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 7));
  ASSERT_GT(v2, 0);
  HttpResponse created =
      Call("POST", "/v1/rollouts",
           absl::StrCat(R"({"model":"kws","version":")", v2,
                        R"(","waveCounts":[1],"canarySelector":"site=a","bakeSeconds":"600",)",
                        R"("onFailure":"rollback","gates":[{"metric":"accuracy_delta",)",
                        R"("threshold":-5,"minSamples":"100"},{"metric":"failed_installs"}]})"));
  ASSERT_EQ(created.status, 201) << created.body;
  v1::Rollout rollout;
  ASSERT_TRUE(ParseProtoJson(created.body, &rollout).ok());

  // The canary runs it, is judged worse on what its application labels, and goes back.
  ASSERT_TRUE(WaitState(rollout.id(), "ROLLED_BACK", absl::Seconds(120)))
      << GetRollout(rollout.id()).DebugString();
  EXPECT_TRUE(
      WaitServing(client::LocalClient(agents_["a"]->state_dir() + "/agent.sock"), "kws", v1_));
  EXPECT_TRUE(Served("a").count(v2)) << "the canary never served the candidate";
  StopApplications();
  EXPECT_EQ(Served("b"), std::set<int64_t>{v1_});
  EXPECT_EQ(Served("c"), std::set<int64_t>{v1_});

  const std::vector<v1::RolloutEvent> events = Events(rollout.id());
  ASSERT_GE(events.size(), 2u);
  const v1::RolloutEvent& rollback = events[events.size() - 2];
  EXPECT_EQ(rollback.to_state(), "ROLLING_BACK");
  bool judged = false;
  for (const v1::GateResult& g : rollback.gates()) {
    if (g.metric() != "accuracy_delta") continue;
    judged = true;
    EXPECT_EQ(g.verdict(), "FAIL");
    EXPECT_LT(g.high(), -5) << g.DebugString();  // the whole interval says worse
    EXPECT_GE(g.samples(), 100);
  }
  EXPECT_TRUE(judged) << rollback.DebugString();
  const v1::Rollout done = GetRollout(rollout.id());
  EXPECT_EQ(done.waves(0).devices(), 1);
  EXPECT_EQ(done.waves(0).counts().rolled_back(), 1);
  EXPECT_EQ(done.waves(1).devices(), 0);
}

// With a shadow stage the canary runs the candidate beside v1 on half of its application's
// calls: one that disagrees is rolled back without ever answering a call; one that agrees
// goes on to serve.
TEST_P(RolloutTest, TheShadowStageJudgesACandidateBeforeItAnswersAnyCall) {
  StartFleet();
  ASSERT_FALSE(HasFailure());
  StartApplications();
  auto create = [&](int64_t version) {
    CommandResult created = Cli({"-o", "json", "rollout", "create", "--model", "kws",
                                 "--version", std::to_string(version), "--waves", "1",
                                 "--canary", "site=a", "--bake", "1s", "--on-failure",
                                 "rollback", "--shadow", "3s", "--shadow-sample", "0.5",
                                 "--gate", "shadow_agreement>=0.9:min=50", "--gate",
                                 "failed_installs<=0"});
    EXPECT_EQ(created.exit_code, 0) << created.err;
    v1::Rollout rollout;
    EXPECT_TRUE(ParseProtoJson(created.out, &rollout).ok()) << created.out;
    return rollout.id();
  };
  // Other weights: the candidate's argmax differs from v1's on most inputs.
  const int64_t worse = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 7));
  ASSERT_GT(worse, 0);
  const int64_t first = create(worse);
  ASSERT_GT(first, 0);
  ASSERT_TRUE(Eventually(
      [&] {
        const v1::Rollout r = GetRollout(first);
        return r.waves_size() > 0 && r.waves(0).counts().shadowing() == 1;
      },
      absl::Seconds(60)))
      << GetRollout(first).DebugString();
  CommandResult shown = Cli({"rollout", "show", std::to_string(first)});
  EXPECT_TRUE(absl::StrContains(shown.out, "SHADOWING")) << shown.out;
  ASSERT_TRUE(WaitState(first, "ROLLED_BACK", absl::Seconds(120)))
      << GetRollout(first).DebugString();
  const std::vector<v1::RolloutEvent> events = Events(first);
  ASSERT_GE(events.size(), 2u);
  const v1::RolloutEvent& rollback = events[events.size() - 2];
  EXPECT_EQ(rollback.to_state(), "ROLLING_BACK");
  EXPECT_TRUE(rollback.shadowing());
  ASSERT_EQ(rollback.gates_size(), 1) << rollback.DebugString();
  EXPECT_EQ(rollback.gates(0).metric(), "shadow_agreement");
  EXPECT_EQ(rollback.gates(0).verdict(), "FAIL");
  EXPECT_LT(rollback.gates(0).value(), 0.9);
  EXPECT_GE(rollback.gates(0).samples(), 50);
  // The canary's telemetry of v1 shows the candidate it ran beside.
  v1::ModelTelemetry telemetry;
  ASSERT_TRUE(ParseProtoJson(Call("GET", absl::StrCat("/v1/models/kws/telemetry?version=", v1_)).body,
                             &telemetry)
                  .ok());
  ASSERT_EQ(telemetry.versions_size(), 1);
  bool shadowed = false;
  for (const v1::ShadowSummary& sh : telemetry.versions(0).total().shadows()) {
    if (sh.version() != worse) continue;
    shadowed = true;
    EXPECT_GE(sh.requests(), 50);
    EXPECT_GT(sh.latency_p95_us(), 0);
    EXPECT_LT(sh.agreement().value(), 0.9);
  }
  EXPECT_TRUE(shadowed) << telemetry.DebugString();

  // The same weights as v1: it agrees on every call, and then serves.
  const int64_t same = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  ASSERT_GT(same, 0);
  const int64_t second = create(same);
  ASSERT_GT(second, 0);
  ASSERT_TRUE(WaitState(second, "COMPLETED", absl::Seconds(120)))
      << GetRollout(second).DebugString();
  for (auto& [site, agent] : agents_) {
    EXPECT_TRUE(WaitServing(client::LocalClient(agent->state_dir() + "/agent.sock"), "kws", same))
        << site;
  }
  StopApplications();
  // No application was ever answered by the candidate that disagreed.
  for (const char* site : {"a", "b", "c"}) EXPECT_FALSE(Served(site).count(worse)) << site;
  std::vector<std::string> path;
  for (const v1::RolloutEvent& e : Events(second)) {
    path.push_back(absl::StrCat(e.to_state(), "@", e.wave(), e.shadowing() ? "/shadow" : ""));
  }
  EXPECT_EQ(path, (std::vector<std::string>{"PENDING@0", "IN_PROGRESS@0/shadow",
                                            "BAKING@0/shadow", "IN_PROGRESS@0", "BAKING@0",
                                            "IN_PROGRESS@1/shadow", "BAKING@1/shadow",
                                            "IN_PROGRESS@1", "BAKING@1", "COMPLETED@1"}));
}

TEST_P(RolloutTest, BadSpecsAreRefusedWithNothingCreated) {
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  ASSERT_GT(v1, 0);
  const std::string version = absl::StrCat(R"("version":")", v1, "\"");
  for (const std::string& body : {
           absl::StrCat(R"({"model":"kws",)", version, R"(,"selector":"site in (a"})"),
           absl::StrCat(R"({"model":"kws",)", version, R"(,"waves":[50,10]})"),
           absl::StrCat(R"({"model":"kws",)", version, R"(,"waves":[10,150]})"),
           absl::StrCat(R"({"model":"kws",)", version, R"(,"gates":[{"metric":"luck"}]})"),
           absl::StrCat(R"({"model":"kws",)", version,
                        R"(,"maintenanceWindow":{"cron":"0 25 * * *","durationSeconds":"60"}})"),
           absl::StrCat(R"({"model":"kws",)", version, R"(,"onFailure":"shrug"})"),
           std::string(R"({"model":"kws"})"),
           std::string(R"({"model":"kws","version":"1","bakeSeconds":"x"})"),
           absl::StrCat(R"({"model":"kws",)", version,
                        R"(,"gates":[{"metric":"shadow_agreement","threshold":0.9}]})"),
           absl::StrCat(R"({"model":"kws",)", version, R"(,"shadow":{"sampleRatio":2}})"),
       }) {
    HttpResponse r = Call("POST", "/v1/rollouts", body);
    EXPECT_EQ(r.status, 400) << body << " → " << r.body;
  }
  EXPECT_EQ(Call("POST", "/v1/rollouts", R"({"model":"nope","version":"1"})").status, 404);
  HttpResponse listed = Call("GET", "/v1/rollouts");
  EXPECT_EQ(listed.status, 200);
  v1::ListRolloutsResponse none;
  ASSERT_TRUE(ParseProtoJson(listed.body, &none).ok()) << listed.body;
  EXPECT_EQ(none.rollouts_size(), 0);

  // One rollout per model and device: a second for the same devices is a conflict. It has a
  // device, and bakes for an hour: a rollout with no device to wait for completes at once,
  // before the pause below could reach it.
  auto device = StartAgent({"--max-backoff-seconds", "1"}, R"({"site":"a"})");
  ASSERT_TRUE(device->WaitEnrolled());  // its row exists before its certificate does
  const std::string spec = absl::StrCat(R"({"model":"kws",)", version,
                                        R"(,"selector":"site=a","bakeSeconds":"3600"})");
  ASSERT_EQ(Call("POST", "/v1/rollouts", spec).status, 201);
  EXPECT_EQ(Call("POST", "/v1/rollouts", spec).status, 409);
  EXPECT_EQ(Call("POST", "/v1/rollouts/1:pause").status, 200);
  EXPECT_EQ(Call("POST", "/v1/rollouts/1:pause").status, 200);  // idempotent
  EXPECT_EQ(Call("POST", "/v1/rollouts/1:abort").status, 200);
  EXPECT_EQ(Call("POST", "/v1/rollouts/1:abort").status, 200);
  EXPECT_EQ(Call("POST", "/v1/rollouts/1:resume").status, 409);
  EXPECT_EQ(Call("GET", "/v1/rollouts/77").status, 404);
  EXPECT_EQ(Call("GET", "/v1/rollouts/x").status, 400);
}

INSTANTIATE_TEST_SUITE_P(Storage, RolloutTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
