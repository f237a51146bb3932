// Several edgeloop-server replicas on one PostgreSQL: one leads (runs the rollout controller),
// and when it is killed mid-rollout another takes over and finishes the rollout, every
// transition exactly once. SQLite serves one node and says so to a second server.
#include <signal.h>

#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/client/local_client.h"
#include "compiler/testing/onnx_models.h"
#include "edgeloop/v1/rollout.pb.h"
#include "tests/testing/serving_fixture.h"

namespace edgeloop::tests {
namespace {

namespace fs = std::filesystem;

// The first replica is the fixture's server; it leads, having started first.
class ReplicaTest : public ServingTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--sync-interval-seconds", "1", "--rollout-interval-ms", "200"};
  }
  void TearDown() override {
    agents_.clear();
    if (HasFailure() && second_) {
      const std::string log = second_->log();
      std::cerr << "--- second replica log (last 8 KiB) ---\n"
                << log.substr(log.size() > 8192 ? log.size() - 8192 : 0) << "\n";
    }
    second_.reset();
    ServingTest::TearDown();
  }

  // A second replica on the same database, with the first one's CA and module signing key
  // (replicas share them, as a Helm secret would hand them out).
  std::unique_ptr<ServerProcess> SecondReplica(std::vector<std::string> more_flags = {}) {
    ServerProcess::Options o = options_;
    o.extra_flags.insert(o.extra_flags.end(), more_flags.begin(), more_flags.end());
    o.data_dir = NewTempDir("edgeloop-replica");
    fs::copy(options_.data_dir + "/ca", o.data_dir + "/ca", fs::copy_options::recursive);
    for (const char* file : {"signing.key", "signing.key.pub", "admin.token"}) {
      if (fs::exists(options_.data_dir + "/" + file)) {
        fs::copy_file(options_.data_dir + "/" + file, o.data_dir + "/" + file);
      }
    }
    auto replica = std::make_unique<ServerProcess>(o);
    absl::Status started = replica->Start();
    EXPECT_TRUE(started.ok()) << started << replica->log();
    return replica;
  }

  // REST on one replica as the admin.
  HttpResponse CallOn(ServerProcess& s, const std::string& method, const std::string& target,
                      const std::string& body = "") {
    auto r = HttpClient(s.http_port())
                 .Request(method, target, body, {{"Authorization", Bearer(admin_)}});
    return r.ok() ? *r : HttpResponse{};
  }
  v1::Rollout RolloutOn(ServerProcess& s, int64_t id) {
    v1::Rollout r;
    ParseProtoJson(CallOn(s, "GET", absl::StrCat("/v1/rollouts/", id)).body, &r).IgnoreError();
    return r;
  }
  static bool Leads(ServerProcess& s) { return absl::StrContains(s.log(), "\"msg\":\"leading"); }

  std::unique_ptr<ServerProcess> second_;
  std::vector<std::unique_ptr<AgentProcess>> agents_;
};

TEST_P(ReplicaTest, TheOtherReplicaFinishesARolloutWhenTheLeaderIsKilled) {
  if (GetParam() != "postgres") GTEST_SKIP() << "replicas run on PostgreSQL";
  ServerProcess& first = *server_;
  ASSERT_TRUE(Eventually([&] { return Leads(first); })) << first.log();
  second_ = SecondReplica();
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(second_->log(), "\"msg\":\"following"); }))
      << second_->log();

  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 2));
  ASSERT_GT(v2, 0);
  // The devices talk to the replica that survives; the leader writes what they should run.
  for (int i = 0; i < 3; ++i) {
    v1::CreateEnrollmentTokenResponse token;
    ASSERT_TRUE(
        ParseProtoJson(Call("POST", "/v1/enrollment-tokens", R"({"maxUses":1})").body, &token)
            .ok());
    AgentProcess::Options o;
    o.server = second_->device_address();
    o.state_dir = absl::StrCat(options_.data_dir, "/agent-", i);
    o.enroll_token = token.secret();
    o.extra_flags = {"--max-backoff-seconds", "1"};
    agents_.push_back(std::make_unique<AgentProcess>(o));
    agents_.back()->Start();
    ASSERT_TRUE(agents_.back()->WaitEnrolled()) << agents_.back()->log();
  }
  ASSERT_EQ(Call("POST", "/v1/assignments",
                 absl::StrCat(R"({"model":"kws","selector":"hw.cores>=1","version":")", v1, "\"}"))
                .status,
            201);
  for (auto& agent : agents_) {
    ASSERT_TRUE(WaitServing(client::LocalClient(agent->state_dir() + "/agent.sock"), "kws", v1))
        << agent->log();
  }

  // Waves of one device, then the rest, each baking 5 s; created on the follower.
  HttpResponse created = CallOn(
      *second_, "POST", "/v1/rollouts",
      absl::StrCat(
          R"({"model":"kws","version":")", v2,
          R"(","waveCounts":[1],"bakeSeconds":"5","gates":[{"metric":"failed_installs"}]})"));
  ASSERT_EQ(created.status, 201) << created.body;
  v1::Rollout rollout;
  ASSERT_TRUE(ParseProtoJson(created.body, &rollout).ok());
  // The leader starts it; kill it while the first wave bakes.
  ASSERT_TRUE(Eventually([&] { return RolloutOn(*second_, rollout.id()).state() == "BAKING"; },
                         absl::Seconds(60)))
      << RolloutOn(*second_, rollout.id()).DebugString() << first.log();
  const absl::Time killed = absl::Now();
  ASSERT_TRUE(first.Stop(SIGKILL).ok());

  ASSERT_TRUE(Eventually([&] { return Leads(*second_); }, absl::Seconds(30))) << second_->log();
  const absl::Duration takeover = absl::Now() - killed;
  EXPECT_LT(takeover, absl::Seconds(10));
  std::cerr << "takeover after " << absl::FormatDuration(takeover) << "\n";
  ASSERT_TRUE(Eventually([&] { return RolloutOn(*second_, rollout.id()).state() == "COMPLETED"; },
                         absl::Seconds(90)))
      << RolloutOn(*second_, rollout.id()).DebugString();
  for (auto& agent : agents_) {
    EXPECT_TRUE(WaitServing(client::LocalClient(agent->state_dir() + "/agent.sock"), "kws", v2))
        << agent->log();
  }
  // Exactly once each, in order, across the two controllers.
  v1::ListRolloutEventsResponse events;
  ASSERT_TRUE(
      ParseProtoJson(
          CallOn(*second_, "GET", absl::StrCat("/v1/rollouts/", rollout.id(), "/events")).body,
          &events)
          .ok());
  std::vector<std::string> path;
  for (const v1::RolloutEvent& e : events.events()) {
    path.push_back(absl::StrCat(e.to_state(), "@", e.wave()));
  }
  EXPECT_EQ(path, (std::vector<std::string>{"PENDING@0", "IN_PROGRESS@0", "BAKING@0",
                                            "IN_PROGRESS@1", "BAKING@1", "COMPLETED@1"}));
  const v1::Rollout done = RolloutOn(*second_, rollout.id());
  EXPECT_EQ(done.waves(0).devices(), 1);
  EXPECT_EQ(done.waves(1).devices(), 2);
  HttpResponse metrics = CallOn(*second_, "GET", "/metrics");
  EXPECT_TRUE(absl::StrContains(metrics.body, "edgeloop_leader 1")) << metrics.body.substr(0, 500);
}

// A device watching through one replica hears of a change made through another at once:
// the change feed (NOTIFY) carries it. The second replica's own safety nets — its streams'
// poll and its devices' periodic sync — are an hour here, so only the feed can deliver it.
TEST_P(ReplicaTest, AWatchOnOneReplicaHearsAChangeMadeThroughAnother) {
  if (GetParam() != "postgres") GTEST_SKIP() << "replicas run on PostgreSQL";
  second_ = SecondReplica({"--watch-poll-seconds", "3600", "--sync-interval-seconds", "3600"});
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 2));
  ASSERT_GT(v2, 0);
  v1::CreateEnrollmentTokenResponse token;
  ASSERT_TRUE(
      ParseProtoJson(Call("POST", "/v1/enrollment-tokens", R"({"maxUses":1})").body, &token).ok());
  AgentProcess::Options o;
  o.server = second_->device_address();
  o.state_dir = options_.data_dir + "/agent-watching";
  o.enroll_token = token.secret();
  agents_.push_back(std::make_unique<AgentProcess>(o));
  AgentProcess& agent = *agents_.back();
  agent.Start();
  ASSERT_TRUE(agent.WaitEnrolled()) << agent.log();
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(agent.log(), "\"from\":\"sync\""); }))
      << agent.log();  // its first sync is done: what follows can only come by Watch
  client::LocalClient client(agent.state_dir() + "/agent.sock");
  // Both changes are made through the first replica: an assignment to every device (the
  // fleet-wide generation), then one for this device alone (its own generation).
  ASSERT_EQ(Call("POST", "/v1/assignments",
                 absl::StrCat(R"({"model":"kws","selector":"hw.cores>=1","version":")", v1, "\"}"))
                .status,
            201);
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent.log();
  Assign("kws", v2, agent.device_id());
  ASSERT_TRUE(WaitServing(client, "kws", v2)) << agent.log();
  EXPECT_TRUE(absl::StrContains(agent.log(), "\"from\":\"watch\"")) << agent.log();
}

TEST_P(ReplicaTest, ASecondServerOnOneSqliteDatabaseIsRefused) {
  if (GetParam() != "sqlite") GTEST_SKIP() << "SQLite only";
  ServerProcess::Options o = options_;
  o.data_dir = NewTempDir("edgeloop-replica");
  o.db = "sqlite://" + options_.data_dir + "/edgeloop.db";
  ServerProcess second(o);
  EXPECT_FALSE(second.Start(absl::Seconds(10)).ok());
  EXPECT_TRUE(absl::StrContains(second.log(), "SQLite serves one node")) << second.log();
  EXPECT_TRUE(absl::StrContains(server_->log(), "\"msg\":\"leading")) << server_->log();
}

INSTANTIATE_TEST_SUITE_P(Storage, ReplicaTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
