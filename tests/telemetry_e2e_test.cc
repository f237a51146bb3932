// Telemetry end to end, device side: the real server puts each version's signed monitoring
// spec beside its module, the real agent verifies it, counts what its calls and labels saw in
// windows and keeps the closed windows on disk, across a restart.
#include <signal.h>

#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "agent/client/local_client.h"
#include "common/file_util.h"
#include "compiler/testing/onnx_models.h"
#include "edgeloop/v1/telemetry.pb.h"
#include "tests/testing/serving_fixture.h"

namespace edgeloop::tests {
namespace {

class TelemetryTest : public ServingTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--sync-interval-seconds", "1", "--telemetry-window-seconds", "1"};
  }
};

// Every window the agent has kept, by id.
std::map<std::string, v1::TelemetryWindow> SpooledWindows(const std::string& state_dir) {
  std::map<std::string, v1::TelemetryWindow> windows;
  const std::string dir = state_dir + "/telemetry/windows";
  if (!std::filesystem::exists(dir)) return windows;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".window") continue;
    v1::TelemetryWindow w;
    auto bytes = ReadFile(e.path().string());
    if (bytes.ok() && w.ParseFromString(*bytes)) windows[w.id()] = w;
  }
  return windows;
}

struct Totals {
  int64_t requests = 0, labelled = 0, correct = 0, classes = 0, samples = 0;
  int64_t feature0 = 0;  // the first feature's binned calls
  int features = 0;
};
Totals Sum(const std::map<std::string, v1::TelemetryWindow>& windows, int64_t version) {
  Totals t;
  for (const auto& [id, w] : windows) {
    if (w.version() != version) continue;
    t.requests += w.requests();
    for (int64_t c : w.labelled()) t.labelled += c;
    for (int64_t c : w.correct()) t.correct += c;
    for (int64_t c : w.class_counts()) t.classes += c;
    t.features = w.features_size();
    if (w.features_size() > 0) {
      for (int64_t c : w.features(0).counts()) t.feature0 += c;
      t.samples += w.features(0).samples_size();
    }
  }
  return t;
}

TEST_P(TelemetryTest, AgentsCountWhatTheirModelsSeeInSignedWindowsKeptOnDisk) {
  auto agent = StartAgent();
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  // v1 with a validation set: its spec has the reference edges. v2 without: devices sample.
  std::vector<float> set;
  for (int k = 0; k < 8; ++k) {
    const std::vector<float> x = Input(16, 0.2f * static_cast<float>(k + 1));
    set.insert(set.end(), x.begin(), x.end());
  }
  const std::string validation =
      compiler::testing::ValidationSetOnnx("input", {8, 16}, set, {0, 1, 2, 3, 0, 1, 2, 3});
  const std::string onnx = compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1);
  const int64_t v1 =
      Push("kws", onnx, absl::StrCat(R"(,"validationDigest":")", Upload(validation), "\""));
  ASSERT_GT(v1, 0);
  Assign("kws", v1, agent->device_id());
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(agent->log(), "\"msg\":\"monitoring\""); }))
      << agent->log();

  constexpr int kCalls = 20;
  int labelled = 0;
  for (int k = 0; k < kCalls; ++k) {
    auto p = client.Predict("kws", {{"input", {1, 16}, Input(16, 0.1f * static_cast<float>(k))}});
    ASSERT_TRUE(p.ok()) << p.status();
    if (k % 2 == 0) {
      ASSERT_TRUE(client.Feedback(p->request_id, k % 4).ok());
      ++labelled;
    }
  }
  // Windows of one second close within a second or two of their end.
  Totals t;
  ASSERT_TRUE(Eventually([&] {
    t = Sum(SpooledWindows(agent->state_dir()), v1);
    return t.requests == kCalls && t.labelled == labelled;
  })) << agent->log();
  EXPECT_EQ(t.features, 16);  // every element of a 16-element input, by default
  EXPECT_EQ(t.feature0, kCalls);
  EXPECT_EQ(t.classes, kCalls);
  EXPECT_EQ(t.samples, 0);  // the reference's edges are known: nothing raw is sent
  EXPECT_LE(t.correct, labelled);

  // v2 has no reference yet: the device sends raw values for the server to take one from.
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 2));
  ASSERT_GT(v2, 0);
  Assign("kws", v2, agent->device_id());
  ASSERT_TRUE(WaitServing(client, "kws", v2)) << agent->log();
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(agent->log(), absl::StrCat("\"version\":", v2, ",\"features\""));
  })) << agent->log();
  for (int k = 0; k < 5; ++k) {
    ASSERT_TRUE(client.Predict("kws", {{"input", {1, 16}, Input(16, 1.0f)}}).ok());
  }
  ASSERT_TRUE(Eventually([&] { return Sum(SpooledWindows(agent->state_dir()), v2).requests == 5; }))
      << agent->log();
  t = Sum(SpooledWindows(agent->state_dir()), v2);
  EXPECT_EQ(t.feature0, 0);
  EXPECT_EQ(t.samples, 5);

  // Nothing has taken the windows yet: they outlive the agent. Its metrics say how many wait.
  const size_t kept = SpooledWindows(agent->state_dir()).size();
  const std::string ports = *ReadFile(agent->state_dir() + "/ports.json");
  auto metrics = HttpClient(std::stoi(ports.substr(ports.find(':') + 1))).Get("/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_TRUE(absl::StrContains(metrics->body,
                                absl::StrCat("edgeloop_agent_telemetry_windows ", kept, "\n")))
      << metrics->body;
  EXPECT_TRUE(absl::StrContains(metrics->body, "edgeloop_agent_telemetry_windows_dropped 0\n"));
  const std::string exposition = options_.data_dir + "/agent-metrics.txt";
  ASSERT_TRUE(WriteFileAtomically(exposition, metrics->body).ok());
  CommandResult check = RunCommand({"/bin/sh", "-c", "promtool check metrics < " + exposition});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  ASSERT_EQ(*agent->Stop(SIGTERM), 0);
  agent->Start();
  ASSERT_TRUE(WaitServing(client, "kws", v2)) << agent->log();
  EXPECT_GE(SpooledWindows(agent->state_dir()).size(), kept);
  EXPECT_EQ(Sum(SpooledWindows(agent->state_dir()), v1).requests, kCalls);
}

INSTANTIATE_TEST_SUITE_P(Storage, TelemetryTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
