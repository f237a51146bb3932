// Telemetry end to end: the real server puts each version's signed monitoring spec beside its
// module, the real agent verifies it, counts what its calls and labels saw in windows, keeps
// the closed windows on disk and sends them; the server stores each exactly once, through
// outages and kill -9 on either side.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>

#include "absl/strings/match.h"
#include "agent/client/local_client.h"
#include "common/file_util.h"
#include "compiler/testing/onnx_models.h"
#include "edgeloop/v1/telemetry.pb.h"
#include "store/database.h"
#include "telemetry/window_store.h"
#include "tests/testing/serving_fixture.h"

namespace edgeloop::tests {
namespace {

class TelemetryTest : public ServingTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--sync-interval-seconds",           "1",
            "--telemetry-window-seconds",        std::to_string(WindowSeconds()),
            "--telemetry-reference-min-samples", "20"};
  }
  virtual int WindowSeconds() { return 1; }

  // The agents here send at once (no fleet to spread).
  std::unique_ptr<AgentProcess> StartSendingAgent() {
    return StartAgent({"--telemetry-spread-seconds", "0", "--max-backoff-seconds", "1"});
  }

  // Every window the server stored for `device`, by id (read through the telemetry
  // component, as the server's API does).
  std::map<std::string, v1::TelemetryWindow> StoredWindows(const std::string& device) {
    if (db_ == nullptr) {
      auto db = store::Database::Open({.url = options_.db.empty()
                                                  ? "sqlite://" + options_.data_dir + "/edgeloop.db"
                                                  : options_.db,
                                       .pool_size = 1});
      EXPECT_TRUE(db.ok()) << db.status();
      if (!db.ok()) return {};
      db_ = std::move(*db);
    }
    std::map<std::string, v1::TelemetryWindow> windows;
    auto stored = telemetry::WindowStore::DeviceWindows(*db_, device, 0, INT64_MAX, 100000);
    EXPECT_TRUE(stored.ok()) << stored.status();
    if (!stored.ok()) return windows;
    for (v1::TelemetryWindow& w : *stored) {
      EXPECT_EQ(windows.count(w.id()), 0u) << "stored twice: " << w.id();
      windows[w.id()] = std::move(w);
    }
    return windows;
  }

  // Sets up model "kws" v1, with a validation set (so its spec has reference edges), served
  // by `agent`; its version.
  int64_t ServeModel(AgentProcess& agent, client::LocalClient& client) {
    EXPECT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
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
    EXPECT_GT(v1, 0);
    Assign("kws", v1, agent.device_id());
    EXPECT_TRUE(WaitServing(client, "kws", v1)) << agent.log();
    EXPECT_TRUE(Eventually([&] {
      return absl::StrContains(agent.log(), "\"msg\":\"monitoring\"");
    })) << agent.log();
    return v1;
  }

  // `n` calls to kws; false when one failed.
  static bool Predict(client::LocalClient& client, int n) {
    for (int k = 0; k < n; ++k) {
      auto p = client.Predict("kws", {{"input", {1, 16}, Input(16, 0.1f * static_cast<float>(k))}});
      if (!p.ok()) return false;
    }
    return true;
  }

  std::unique_ptr<store::Database> db_;
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

// "id: requests" per window, for a failure message.
std::string Describe(const std::map<std::string, v1::TelemetryWindow>& windows) {
  std::string out;
  for (const auto& [id, w] : windows) {
    absl::StrAppend(&out, id, " [", w.start_ms(), "+", w.end_ms() - w.start_ms(),
                    " ms]: ", w.requests(), "; ");
  }
  return out;
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

TEST_P(TelemetryTest, AgentsCountWhatTheirModelsSeeAndTheServerStoresItOnce) {
  auto agent = StartSendingAgent();
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  const int64_t v1 = ServeModel(*agent, client);

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
  // Windows of one second close within a second or two of their end, and are sent at once.
  Totals t;
  ASSERT_TRUE(Eventually([&] {
    t = Sum(StoredWindows(agent->device_id()), v1);
    return t.requests == kCalls && t.labelled == labelled;
  })) << agent->log();
  EXPECT_EQ(t.features, 16);  // every element of a 16-element input, by default
  EXPECT_EQ(t.feature0, kCalls);
  EXPECT_EQ(t.classes, kCalls);
  EXPECT_EQ(t.samples, 0);  // the reference's edges are known: nothing raw is sent
  EXPECT_LE(t.correct, labelled);
  // The agent deleted what the server acknowledged.
  EXPECT_TRUE(Eventually([&] { return SpooledWindows(agent->state_dir()).empty(); }))
      << agent->log();

  // Operators read the same through the API: the version against its reference.
  HttpResponse r =
      Call("GET", absl::StrCat("/v1/models/kws/telemetry?version=", v1,
                               "&from=", absl::ToUnixMillis(absl::Now()) - 600000, "&step=1m"));
  ASSERT_EQ(r.status, 200) << r.body;
  v1::ModelTelemetry telemetry;
  ASSERT_TRUE(ParseProtoJson(r.body, &telemetry).ok()) << r.body;
  ASSERT_EQ(telemetry.versions_size(), 1) << r.body;
  const v1::ModelTelemetry::Version& seen = telemetry.versions(0);
  EXPECT_EQ(seen.reference_source(), v1::ReferenceStatistics::VALIDATION_SET);
  EXPECT_EQ(seen.total().requests(), kCalls);
  EXPECT_EQ(seen.total().accuracy().trials(), labelled);
  EXPECT_EQ(seen.total().features_size(), 16);
  EXPECT_GT(seen.total().latency_p50_us(), 0);
  EXPECT_GE(seen.points_size(), 1);
  EXPECT_EQ(seen.reference_accuracy().trials(), 8);  // the validation set's labels
  EXPECT_EQ(Call("GET", "/v1/models/nope/telemetry").status, 404);
  EXPECT_EQ(Call("GET", "/v1/models/kws/telemetry?from=20&to=10").status, 400);
  r = Call("GET", absl::StrCat("/v1/devices/", agent->device_id(), "/telemetry?limit=5"));
  ASSERT_EQ(r.status, 200) << r.body;
  v1::DeviceTelemetryReport device;
  ASSERT_TRUE(ParseProtoJson(r.body, &device).ok()) << r.body;
  EXPECT_GT(device.windows_stored(), 0);
  EXPECT_EQ(device.windows_refused(), 0);
  ASSERT_GT(device.windows_size(), 0);
  EXPECT_EQ(device.windows(0).model(), "kws");
  EXPECT_EQ(Call("GET", "/v1/devices/dev-nope/telemetry").status, 404);
  // The server's /metrics counts the version's calls from the windows, for Prometheus.
  auto server_metrics = HttpClient(server_->http_port()).Get("/metrics");
  ASSERT_TRUE(server_metrics.ok()) << server_metrics.status();
  EXPECT_TRUE(absl::StrContains(
      server_metrics->body,
      absl::StrCat("edgeloop_model_requests_total{cohort=\"\",model=\"kws\",version=\"1\"} ",
                   kCalls, "\n")))
      << server_metrics->body;
  EXPECT_TRUE(absl::StrContains(server_metrics->body,
                                "edgeloop_model_drifted_features{model=\"kws\",version=\"1\"}"))
      << server_metrics->body;
  EXPECT_TRUE(absl::StrContains(server_metrics->body,
                                "edgeloop_model_reference_accuracy{model=\"kws\",version=\"1\"}"))
      << server_metrics->body;
  EXPECT_TRUE(absl::StrContains(server_metrics->body,
                                "edgeloop_telemetry_windows_total{outcome=\"stored\"}"));
  const std::string server_exposition = options_.data_dir + "/server-metrics.txt";
  ASSERT_TRUE(WriteFileAtomically(server_exposition, server_metrics->body).ok());
  CommandResult server_check =
      RunCommand({"/bin/sh", "-c", "promtool check metrics < " + server_exposition});
  EXPECT_EQ(server_check.exit_code, 0) << server_check.out << server_check.err;
  // And through the CLI, over gRPC.
  CommandResult cli = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(),
                                  "--token-file", options_.data_dir + "/admin.token", "telemetry",
                                  "show", "kws", "--since", "10m"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(absl::StrContains(cli.out, "VALIDATION_SET")) << cli.out;
  EXPECT_TRUE(absl::StrContains(cli.out, absl::StrCat("calls  ", kCalls)) ||
              absl::StrContains(cli.out, absl::StrCat(" ", kCalls, "\n")))
      << cli.out;
  cli = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(), "--token-file",
                    options_.data_dir + "/admin.token", "telemetry", "device", agent->device_id()});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(absl::StrContains(cli.out, "kws/1/")) << cli.out;
  // device show has each version's last window.
  cli = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(), "--token-file",
                    options_.data_dir + "/admin.token", "device", "show", agent->device_id()});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(absl::StrContains(cli.out, "last window")) << cli.out;
  EXPECT_TRUE(absl::StrContains(cli.out, "kws v1 ending ")) << cli.out;
  EXPECT_TRUE(absl::StrContains(cli.out, " calls, 0 errors, ")) << cli.out;  // and its labels

  // The model's own drift thresholds: set over REST and the CLI, in force in the answers.
  r = Call("PUT", "/v1/models/kws/drift-settings", R"({"minCount": 5})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(
      r.body, R"("effective":{"psi":0.2,"jensenShannon":0.1,"ksAlpha":0.05,"minCount":"5"})"))
      << r.body;
  EXPECT_EQ(Call("PUT", "/v1/models/kws/drift-settings", R"({"psi": -1})").status, 400);
  EXPECT_EQ(Call("PUT", "/v1/models/nope/drift-settings", R"({"psi": 1})").status, 404);
  r = Call("GET", absl::StrCat("/v1/models/kws/telemetry?version=", v1));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, R"("minCount":"5")")) << r.body;
  cli = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(), "--token-file",
                    options_.data_dir + "/admin.token", "telemetry", "thresholds", "kws", "--psi",
                    "0.3"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(absl::StrContains(cli.out, "0.3 (set for this model)")) << cli.out;
  EXPECT_TRUE(absl::StrContains(cli.out, "5 (set for this model)")) << cli.out;
  EXPECT_TRUE(absl::StrContains(cli.out, "0.1 (default)")) << cli.out;
  cli = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(), "--token-file",
                    options_.data_dir + "/admin.token", "telemetry", "thresholds", "kws",
                    "--min-count", "default", "--psi", "default"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(absl::StrContains(cli.out, "100 (default)")) << cli.out;
  EXPECT_TRUE(absl::StrContains(cli.out, "0.2 (default)")) << cli.out;

  // v2 has no reference yet: the device sends raw values for the server to take one from.
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 2));
  ASSERT_GT(v2, 0);
  Assign("kws", v2, agent->device_id());
  ASSERT_TRUE(WaitServing(client, "kws", v2)) << agent->log();
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(agent->log(), absl::StrCat("\"version\":", v2, ",\"features\""));
  })) << agent->log();
  for (int k = 0; k < 25; ++k) {
    ASSERT_TRUE(
        client.Predict("kws", {{"input", {1, 16}, Input(16, 0.04f * static_cast<float>(k))}}).ok());
  }
  ASSERT_TRUE(Eventually([&] { return Sum(StoredWindows(agent->device_id()), v2).requests == 25; }))
      << agent->log();
  t = Sum(StoredWindows(agent->device_id()), v2);
  EXPECT_EQ(t.feature0, 0);
  EXPECT_EQ(t.samples, 25);
  // With 20 raw values of each feature (--telemetry-reference-min-samples) v2 takes its
  // reference from them, says so, and its devices bin on it from their next sync.
  v1::ModelVersion version;
  ASSERT_TRUE(Eventually([&] {
    version = v1::ModelVersion();
    ParseProtoJson(Call("GET", absl::StrCat("/v1/models/kws/versions/", v2)).body, &version)
        .IgnoreError();
    return version.has_reference();
  })) << server_->log();
  EXPECT_EQ(version.reference().source(), v1::ReferenceStatistics::FIRST_WINDOWS);
  EXPECT_EQ(version.reference().features_size(), 16);
  EXPECT_EQ(version.reference().features(0).edges_size(), 11);
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(agent->log(), "\"reference\":\"FIRST_WINDOWS\"");
  })) << agent->log();
  for (int k = 0; k < 6; ++k) {
    ASSERT_TRUE(client.Predict("kws", {{"input", {1, 16}, Input(16, 0.5f)}}).ok());
  }
  ASSERT_TRUE(Eventually([&] { return Sum(StoredWindows(agent->device_id()), v2).feature0 == 6; }))
      << agent->log();

  // Its metrics say what it sent, in an exposition Prometheus accepts.
  const std::string ports = *ReadFile(agent->state_dir() + "/ports.json");
  auto metrics = HttpClient(std::stoi(ports.substr(ports.find(':') + 1))).Get("/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_TRUE(absl::StrContains(metrics->body, "edgeloop_agent_telemetry_windows_dropped 0\n"));
  // Per model version, what the loaded modules served (v2 active, v1 kept as previous).
  EXPECT_TRUE(absl::StrContains(
      metrics->body, "edgeloop_agent_model_calls_total{model=\"kws\",version=\"2\"} 31\n"))
      << metrics->body;
  EXPECT_TRUE(absl::StrContains(
      metrics->body, "edgeloop_agent_model_errors_total{model=\"kws\",version=\"2\"} 0\n"));
  EXPECT_TRUE(absl::StrContains(
      metrics->body, "edgeloop_agent_telemetry_windows_sent_total{outcome=\"refused\"} 0\n"))
      << metrics->body;
  EXPECT_FALSE(absl::StrContains(
      metrics->body, "edgeloop_agent_telemetry_windows_sent_total{outcome=\"stored\"} 0\n"))
      << metrics->body;
  const std::string exposition = options_.data_dir + "/agent-metrics.txt";
  ASSERT_TRUE(WriteFileAtomically(exposition, metrics->body).ok());
  CommandResult check = RunCommand({"/bin/sh", "-c", "promtool check metrics < " + exposition});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

TEST_P(TelemetryTest, WindowsArriveExactlyOnceThroughOutagesAndKill9OnEitherSide) {
  // The server comes back on the same address, as a real one does.
  ASSERT_EQ(*server_->Stop(SIGTERM), 0);
  options_.device_listen = absl::StrCat("127.0.0.1:", PickFreePort());
  StartServer();
  auto agent = StartSendingAgent();
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  const int64_t v1 = ServeModel(*agent, client);

  ASSERT_TRUE(Predict(client, 10));
  ASSERT_TRUE(Eventually([&] { return Sum(StoredWindows(agent->device_id()), v1).requests == 10; }))
      << agent->log();

  // The server dies (reports in flight are never acknowledged, so never deleted); the agent
  // keeps counting and keeps its closed windows on disk.
  ASSERT_EQ(*server_->Stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(Predict(client, 10));
  // Closed means on disk or stored: the server may have stored the first windows and died before
  // its answer reached the agent, which then keeps them too (and sends them again later).
  ASSERT_TRUE(Eventually([&] {
    std::map<std::string, v1::TelemetryWindow> closed = SpooledWindows(agent->state_dir());
    closed.merge(StoredWindows(agent->device_id()));
    return Sum(closed, v1).requests == 20;
  })) << agent->log();
  // The agent dies too, between closing those windows and sending them; it comes back while
  // the server is still away and serves more.
  ASSERT_EQ(*agent->Stop(SIGKILL), 128 + SIGKILL);
  agent->Start();
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();
  ASSERT_TRUE(Predict(client, 5));

  StartServer();
  ASSERT_TRUE(Eventually([&] { return Sum(StoredWindows(agent->device_id()), v1).requests == 25; }))
      << "stored: " << Describe(StoredWindows(agent->device_id()))
      << "\nspooled: " << Describe(SpooledWindows(agent->state_dir())) << "\n"
      << agent->log();
  EXPECT_TRUE(Eventually([&] { return SpooledWindows(agent->state_dir()).empty(); }))
      << agent->log();
  auto reports = telemetry::WindowStore::Reports(*db_, agent->device_id());
  ASSERT_TRUE(reports.ok() && reports->has_value()) << reports.status();
  EXPECT_EQ((*reports)->windows_refused, 0) << (*reports)->last_refusal;
  EXPECT_EQ((*reports)->windows_dropped, 0);
  EXPECT_EQ((*reports)->windows_stored,
            static_cast<int64_t>(StoredWindows(agent->device_id()).size()));
}

// A restart inside a window: the part counted before (closed at shutdown) and the part after
// are one window, sent once it is over, not two that the server would store as one. A restart
// that outlasts the window leaves the first part on its own, shorter than a window: stored too.
class LongWindowTest : public TelemetryTest {
 protected:
  int WindowSeconds() override { return 20; }
};

TEST_P(LongWindowTest, AWindowARestartSplitIsSentWholeOnceItEnds) {
  auto agent = StartSendingAgent();
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  const int64_t v1 = ServeModel(*agent, client);
  // Start near the beginning of a window, so the restart falls inside it.
  ASSERT_TRUE(
      Eventually([] { return absl::ToUnixSeconds(absl::Now()) % 20 == 1; }, absl::Seconds(25)));
  const int64_t window_end_s = absl::ToUnixSeconds(absl::Now()) + 19;
  ASSERT_TRUE(Predict(client, 7));
  ASSERT_EQ(*agent->Stop(SIGTERM), 0);
  const auto split = SpooledWindows(agent->state_dir());  // the first part, closed at shutdown
  ASSERT_EQ(split.size(), 1u);
  EXPECT_LT(split.begin()->second.end_ms(), window_end_s * 1000);
  agent->Start();
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();
  ASSERT_TRUE(Predict(client, 4));
  const bool inside = absl::ToUnixSeconds(absl::Now()) < window_end_s;
  ASSERT_TRUE(Eventually([&] { return Sum(StoredWindows(agent->device_id()), v1).requests == 11; },
                         absl::Seconds(40)))
      << agent->log();
  const auto stored = StoredWindows(agent->device_id());
  if (inside) {
    ASSERT_EQ(stored.size(), 1u);
    EXPECT_EQ(stored.begin()->first, split.begin()->first);
    EXPECT_EQ(stored.begin()->second.requests(), 11);
    EXPECT_EQ(stored.begin()->second.end_ms(), window_end_s * 1000);
  } else {
    std::cerr << "the restart outlasted the window: its parts are two windows\n";
    EXPECT_EQ(stored.size(), 2u);
  }
}

// Inputs like the reference's, then with four of sixteen features moved: the first two windows
// after the move flag exactly those four; the labels give the accuracy the test computes from
// the predictions it got.
class DriftTest : public TelemetryTest {
 protected:
  int WindowSeconds() override { return 2; }
  // Aggregates per window, so that the API can answer for two windows alone. The reference
  // is taken from the whole validation set: from the default 256 samples, sampling noise
  // alone gives PSI around 0.05 and JS distances near their 0.1 threshold (docs/telemetry.md).
  std::vector<std::string> ExtraFlags() override {
    std::vector<std::string> flags = TelemetryTest::ExtraFlags();
    flags.insert(flags.end(), {"--telemetry-bucket-seconds", std::to_string(WindowSeconds()),
                               "--validation-samples", std::to_string(kReference)});
    return flags;
  }
  static constexpr int kReference = 2000;
};

TEST_P(DriftTest, AShiftInSomeInputsDriftsThoseWithinTwoWindowsAndOnlyThose) {
  constexpr int kFeatures = 16, kShifted = 4, kCalls = 1000;
  std::mt19937 random(7);
  std::uniform_real_distribution<float> uniform(-1, 1);
  auto draw = [&](float shift) {
    std::vector<float> x(kFeatures);
    for (int f = 0; f < kFeatures; ++f) x[f] = uniform(random) + (f < kShifted ? shift : 0);
    return x;
  };
  std::vector<float> set;
  std::vector<int64_t> labels;
  for (int k = 0; k < kReference; ++k) {
    const std::vector<float> x = draw(0);
    set.insert(set.end(), x.begin(), x.end());
    labels.push_back(k % 4);
  }
  auto agent = StartSendingAgent();
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const std::string validation =
      compiler::testing::ValidationSetOnnx("input", {kReference, kFeatures}, set, labels);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{kFeatures, 32, 4}, 1),
                          absl::StrCat(R"(,"validationDigest":")", Upload(validation), "\""));
  ASSERT_GT(v1, 0);
  Assign("kws", v1, agent->device_id());
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();
  ASSERT_TRUE(
      Eventually([&] { return absl::StrContains(agent->log(), "\"msg\":\"monitoring\""); }));

  // Calls from the reference's distribution, every one labelled (class = k % 4).
  const int64_t window_ms = WindowSeconds() * 1000;
  const int64_t before = 1;  // every window of this version: there are none yet
  int64_t correct = 0;
  for (int k = 0; k < kCalls; ++k) {
    auto p = client.Predict("kws", {{"input", {1, kFeatures}, draw(0)}});
    ASSERT_TRUE(p.ok()) << p.status();
    const std::vector<float>& y = p->outputs.at(0).values;
    const int64_t predicted = std::max_element(y.begin(), y.end()) - y.begin();
    const int64_t label = k % 4;
    correct += predicted == label;
    ASSERT_TRUE(client.Feedback(p->request_id, label).ok());
  }
  // The move starts with a window, so the windows after it hold only moved inputs.
  // The agent's windows start on whole seconds from when it began monitoring, not on
  // multiples of their length: the next window start comes from one it stored.
  int64_t first_start = 0;
  ASSERT_TRUE(Eventually([&] {
    for (const auto& [id, w] : StoredWindows(agent->device_id())) first_start = w.start_ms();
    return first_start > 0;
  })) << agent->log();
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  const int64_t shift = first_start + ((now_ms - first_start) / window_ms + 1) * window_ms;
  // A quarter window past the boundary: the agent closes a window on its own thread when it
  // ends, and calls made before that thread has run still count in the old one (by up to its
  // scheduling delay, which a loaded machine stretches to a few hundred ms).
  ASSERT_TRUE(
      Eventually([&] { return absl::ToUnixMillis(absl::Now()) > shift + window_ms / 4; }));
  for (int k = 0; k < kCalls; ++k) {
    ASSERT_TRUE(client.Predict("kws", {{"input", {1, kFeatures}, draw(1.0f)}}).ok());
  }
  ASSERT_TRUE(Eventually([&] {
    return Sum(StoredWindows(agent->device_id()), v1).requests == 2 * kCalls;
  })) << agent->log();

  auto summary = [&](int64_t from, int64_t to) {
    v1::ModelTelemetry t;
    HttpResponse r = Call(
        "GET", absl::StrCat("/v1/models/kws/telemetry?version=", v1, "&from=", from, "&to=", to));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(ParseProtoJson(r.body, &t).ok()) << r.body;
    EXPECT_EQ(t.versions_size(), 1) << r.body;
    return t.versions_size() == 1 ? t.versions(0).total() : v1::TelemetrySummary();
  };
  // Aggregates are keyed by the window's start rounded down to the bucket (a window each).
  const int64_t bucket = shift - shift % window_ms;
  // Before the move: nothing drifts, and the accuracy is what the predictions say.
  const v1::TelemetrySummary still = summary(before, bucket);
  EXPECT_EQ(still.requests(), kCalls);
  ASSERT_EQ(still.features_size(), kFeatures);
  EXPECT_EQ(still.drifted_features(), 0) << still.DebugString();
  EXPECT_EQ(still.accuracy().trials(), kCalls);
  EXPECT_EQ(still.accuracy().successes(), correct);
  EXPECT_LE(still.accuracy().low(), still.accuracy().value());
  EXPECT_GE(still.accuracy().high(), still.accuracy().value());
  // The first two windows after it: the four moved features drift, the twelve others do not.
  const v1::TelemetrySummary moved = summary(bucket, bucket + 2 * window_ms);
  EXPECT_GE(moved.requests(), 100) << "the calls outran two windows";
  ASSERT_EQ(moved.features_size(), kFeatures);
  for (int f = 0; f < kFeatures; ++f) {
    const v1::FeatureDrift& d = moved.features(f);
    EXPECT_FALSE(d.too_few()) << d.DebugString();
    EXPECT_EQ(d.drifted(), f < kShifted) << d.DebugString();
    if (f < kShifted) {
      EXPECT_GE(d.psi(), 0.2) << d.DebugString();
    } else {
      EXPECT_LT(d.psi(), 0.2) << d.DebugString();
    }
  }
  EXPECT_EQ(moved.drifted_features(), kShifted);
  EXPECT_DOUBLE_EQ(moved.drifted_share(), static_cast<double>(kShifted) / kFeatures);
}

INSTANTIATE_TEST_SUITE_P(Storage, DriftTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Storage, TelemetryTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Storage, LongWindowTest, ::testing::Values("sqlite"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
