// Devices serve what operators assign: the real server compiles a pushed model, an operator
// assigns it, the real agent downloads, verifies and loads the module and answers Predict on
// its Unix socket with the reference interpreter's numbers — and swaps to a new version while
// an application keeps calling, without one failed request.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/client/local_client.h"
#include "common/file_util.h"
#include "common/proto_json.h"
#include "common/signing.h"
#include "common/x509.h"
#include "compiler/onnx_import.h"
#include "compiler/reference_interpreter.h"
#include "edgeloop/v1/device.grpc.pb.h"
#include "edgeloop/v1/device.pb.h"
#include "edgeloop/v1/registry.pb.h"
#include "compiler/testing/onnx_models.h"
#include "store/database.h"
#include "tests/testing/serving_fixture.h"

namespace edgeloop::tests {
namespace {

// A module download under way in the agent's module directory.
bool HasPartialDownload(const std::string& modules_dir) {
  for (const auto& e : std::filesystem::directory_iterator(modules_dir)) {
    if (e.path().extension() == ".partial" && e.file_size() > 0) return true;
  }
  return false;
}

TEST_P(ServingTest, AssignedModuleServesPredictionsAndSwapsWithoutDroppingOne) {
  auto agent = StartAgent();
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const std::string onnx1 = compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1);
  const int64_t v1 = Push("kws", onnx1);
  ASSERT_GT(v1, 0);
  Assign("kws", v1, agent->device_id());
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();

  // The module's answer is the reference interpreter's.
  const std::vector<float> x = Input(16, 1.0f);
  auto predicted = client.Predict("kws", {{"input", {1, 16}, x}});
  ASSERT_TRUE(predicted.ok()) << predicted.status();
  EXPECT_EQ(predicted->model_version, v1);
  auto graph = compiler::ImportOnnx(onnx1);
  ASSERT_TRUE(graph.ok());
  compiler::Tensor input;
  input.shape = {1, 16};
  input.f = x;
  auto reference = compiler::RunReference(*graph, {{"input", input}});
  ASSERT_TRUE(reference.ok());
  const std::vector<float>& want = reference->at("probabilities").f;
  ASSERT_EQ(predicted->outputs.size(), 1u);
  ASSERT_EQ(predicted->outputs[0].values.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(predicted->outputs[0].values[i], want[i], 1e-5 + 1e-3 * std::abs(want[i]));
  // Feedback on that prediction; an unknown request id is NOT_FOUND.
  EXPECT_TRUE(client.Feedback(predicted->request_id, 0).ok());
  EXPECT_EQ(client.Feedback("nope", 0).status().code(), absl::StatusCode::kNotFound);

  // Bad calls get clear errors and change nothing.
  auto wrong_shape = client.Predict("kws", {{"input", {1, 15}, Input(15, 1.0f)}});
  EXPECT_EQ(wrong_shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(wrong_shape.status().message(), "must be FLOAT32 [1, 16]"))
      << wrong_shape.status();
  auto short_data = client.Predict("kws", {{"input", {1, 16}, Input(8, 1.0f)}});
  EXPECT_EQ(short_data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client.Predict("nope", {{"input", {1, 16}, x}}).status().code(),
            absl::StatusCode::kNotFound);
  // A caller that gives up mid-call (its deadline passes) leaves the agent serving the others.
  for (int i = 0; i < 20; ++i) {
    client::LocalClient(agent->state_dir() + "/agent.sock", absl::Microseconds(50))
        .Predict("kws", {{"input", {1, 16}, x}})
        .IgnoreError();
  }
  EXPECT_TRUE(client.Predict("kws", {{"input", {1, 16}, x}}).ok());
  // The example application gets the same answer through the client library.
  CommandResult app_run =
      RunCommand({BinaryPath("classify"), "--socket", agent->state_dir() + "/agent.sock", "--model",
                  "kws", absl::StrJoin(x, ",")});
  ASSERT_EQ(app_run.exit_code, 0) << app_run.err;
  const size_t want_class = std::max_element(want.begin(), want.end()) - want.begin();
  EXPECT_TRUE(absl::StrContains(app_run.out, absl::StrCat("kws v", v1, ": class ", want_class)))
      << app_run.out;
  auto health = client.Health();
  ASSERT_TRUE(health.ok());
  EXPECT_TRUE(health->serving());
  EXPECT_EQ(health->device_id(), agent->device_id());

  // A new version while an application keeps calling: every call succeeds, on one or the other.
  std::atomic<bool> done{false};
  std::atomic<int64_t> calls{0}, failures{0}, on_new{0};
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 24, 4}, 2));
  ASSERT_GT(v2, v1);
  std::thread app([&] {
    while (!done) {
      auto p = client.Predict("kws", {{"input", {1, 16}, x}});
      ++calls;
      if (!p.ok()) {
        ++failures;
      } else if (p->model_version == v2) {
        ++on_new;
      }
    }
  });
  Assign("kws", v2, agent->device_id());
  const bool swapped = WaitServing(client, "kws", v2);
  // Keep calling until a good number of calls have run on the new module.
  EXPECT_TRUE(Eventually([&] { return on_new >= 50; }));
  done = true;
  app.join();
  ASSERT_TRUE(swapped) << agent->log();
  EXPECT_EQ(failures, 0) << "of " << calls;
  EXPECT_GT(on_new, 0);
  auto models = client.ListModels();
  ASSERT_TRUE(models.ok());
  ASSERT_EQ(models->models_size(), 1);
  EXPECT_EQ(models->models(0).previous_version(), v1);  // kept for a local rollback

  // The server sees what the device runs.
  ASSERT_TRUE(Eventually([&] {
    v1::Device device;
    ParseProtoJson(Call("GET", "/v1/devices/" + agent->device_id()).body, &device).IgnoreError();
    bool running = false, previous = false;
    for (const auto& m : device.state().modules()) {
      running = running || (m.state() == "running" && m.module().version() == v2);
      previous = previous || (m.state() == "previous" && m.module().version() == v1);
    }
    return running && previous;
  })) << "the device never reported version "
      << v2;

  // After a restart the agent serves the same module before it even syncs, and knows which
  // desired state it came from.
  auto before_restart = client.Health();
  ASSERT_TRUE(before_restart.ok());
  ASSERT_GT(before_restart->desired_generation(), 0);
  ASSERT_TRUE(agent->Stop(SIGKILL).ok());
  server_->Stop(SIGTERM).IgnoreError();
  agent->Start();
  client::LocalClient again(agent->state_dir() + "/agent.sock");
  ASSERT_TRUE(WaitServing(again, "kws", v2)) << agent->log();
  auto after_restart = again.Predict("kws", {{"input", {1, 16}, x}});
  ASSERT_TRUE(after_restart.ok()) << after_restart.status();
  EXPECT_EQ(after_restart->model_version, v2);
  auto health_after = again.Health();
  ASSERT_TRUE(health_after.ok());
  EXPECT_EQ(health_after->desired_generation(), before_restart->desired_generation());
}

TEST_P(ServingTest, BadModulesAreReportedAndDownloadsSurviveKill9) {
  auto agent = StartAgent();
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  Assign("kws", v1, agent->device_id());
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();
  const std::vector<float> x = Input(16, 1.0f);

  // v2's module is corrupted in the server's blob store: the agent refuses it, says why, and
  // v1 keeps serving.
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 2));
  v1::Device device;
  ASSERT_TRUE(ParseProtoJson(Call("GET", "/v1/devices/" + agent->device_id()).body, &device).ok());
  v1::ListArtifactsResponse artifacts;
  ASSERT_TRUE(
      ParseProtoJson(Call("GET", absl::StrCat("/v1/models/kws/versions/", v2, "/artifacts")).body,
                     &artifacts)
          .ok());
  std::string digest;
  for (const auto& a : artifacts.artifacts()) {
    if (a.target() == device.profile().target()) digest = a.module_digest();
  }
  ASSERT_FALSE(digest.empty());
  const std::string blob =
      absl::StrCat(options_.data_dir, "/blobs/sha256/", digest.substr(7, 2), "/", digest.substr(7));
  std::filesystem::permissions(blob, std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
  {
    std::fstream f(blob, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good()) << blob;
    f.seekp(2000);
    f.put('\x7f');
  }
  Assign("kws", v2, agent->device_id());
  std::string message = FailureReported(agent->device_id(), v2);
  EXPECT_TRUE(absl::StrContains(message, "hashes to")) << message << agent->log();
  auto still = client.Predict("kws", {{"input", {1, 16}, x}});
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->model_version, v1);

  // v2b's signature in the server's database is not the signing key's: refused before a byte
  // is loaded, with the reason.
  const int64_t v2b = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 4));
  {
    auto db = store::Database::Open({absl::StrCat("sqlite://", options_.data_dir, "/edgeloop.db")});
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE(
        (*db)
            ->Query("UPDATE artifacts SET signature = $1 WHERE version = $2 RETURNING version",
                    {std::string(128, 'a'), v2b})
            .ok());
  }
  Assign("kws", v2b, agent->device_id());
  message = FailureReported(agent->device_id(), v2b);
  EXPECT_TRUE(absl::StrContains(message, "signature does not verify")) << message;
  still = client.Predict("kws", {{"input", {1, 16}, x}});
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->model_version, v1);

  // v3 is big enough to take seconds under a bandwidth cap; kill -9 the agent mid-download.
  ASSERT_TRUE(agent->Stop(SIGTERM).ok());
  const int64_t v3 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 512, 128, 4}, 3));
  AgentProcess::Options capped;
  capped.server = server_->device_address();
  capped.state_dir = agent->state_dir();
  capped.extra_flags = {"--max-download-kbps", "800"};
  auto slow = std::make_unique<AgentProcess>(capped);
  slow->Start();
  Assign("kws", v3, agent->device_id());
  ASSERT_TRUE(Eventually([&] { return HasPartialDownload(agent->state_dir() + "/modules"); }))
      << slow->log();
  ASSERT_TRUE(slow->Stop(SIGKILL).ok());
  // Back up without the cap: it resumes, verifies, serves v3; v1 served in between.
  AgentProcess::Options normal = capped;
  normal.extra_flags.clear();
  AgentProcess restarted(normal);
  restarted.Start();
  client::LocalClient again(agent->state_dir() + "/agent.sock");
  ASSERT_TRUE(WaitServing(again, "kws", v3)) << restarted.log();
  EXPECT_TRUE(absl::StrContains(restarted.log(), "resuming module download")) << restarted.log();
  auto now = again.Predict("kws", {{"input", {1, 16}, x}});
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->model_version, v3);
}

// A device whose CPU changed under its modules — its storage moved to an older board, or its
// VM to an older host. The agent restarts under qemu-x86_64 emulating a Nehalem, an x86_64-v2
// CPU: the module it ran (built for this machine's wider class) is refused before any of its
// code runs, with the reason; the agent reports its new profile and the server answers with
// the x86_64-v2 module, which serves.
// Two versions whose compiles give the same bytes (the same ONNX pushed again): the device
// serves the new version as itself — rollouts wait for it to report that version, telemetry
// counts per version — with nothing fetched, and switches back as to any previous module.
TEST_P(ServingTest, AVersionWithTheSameBytesIsServedAsItself) {
  auto agent = StartAgent();
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const std::string onnx = compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1);
  const int64_t v1 = Push("kws", onnx);
  const int64_t v2 = Push("kws", onnx);
  Assign("kws", v1, agent->device_id());
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();
  auto before = client.ListModels();
  ASSERT_TRUE(before.ok() && before->models_size() == 1);

  Assign("kws", v2, agent->device_id());
  ASSERT_TRUE(WaitServing(client, "kws", v2)) << agent->log();
  auto after = client.ListModels();
  ASSERT_TRUE(after.ok() && after->models_size() == 1);
  EXPECT_EQ(after->models(0).module_digest(), before->models(0).module_digest());  // same bytes
  auto predicted = client.Predict("kws", {{"input", {1, 16}, Input(16, 1.0f)}});
  ASSERT_TRUE(predicted.ok()) << predicted.status();
  EXPECT_EQ(predicted->model_version, v2);
  // The server hears that the device runs v2.
  EXPECT_TRUE(Eventually([&] {
    v1::Device device;
    if (!ParseProtoJson(Call("GET", "/v1/devices/" + agent->device_id()).body, &device).ok()) {
      return false;
    }
    for (const v1::ModuleStatus& m : device.state().modules()) {
      if (m.state() == "running" && m.module().version() == v2) return true;
    }
    return false;
  })) << agent->log();

  Assign("kws", v1, agent->device_id());
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();
  EXPECT_TRUE(absl::StrContains(agent->log(), "switched back to the previous module"))
      << agent->log();
}

TEST_P(ServingTest, AModuleForAnotherCpuIsRefusedAndTheOneForThisCpuServes) {
  auto agent = StartAgent();
  v1::Device device;
  ASSERT_TRUE(ParseProtoJson(Call("GET", "/v1/devices/" + agent->device_id()).body, &device).ok());
  const std::string host_class = device.profile().target();
  if (host_class == "x86_64-v2" || !absl::StartsWith(host_class, "x86_64")) {
    GTEST_SKIP() << "this machine's class is " << host_class << ": nothing wider to refuse";
  }
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  Assign("kws", v1, agent->device_id());
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();
  auto served = client.ListModels();
  ASSERT_TRUE(served.ok());
  const std::string wide_digest = served->models(0).module_digest();
  EXPECT_EQ(served->models(0).target(), host_class);
  ASSERT_TRUE(agent->Stop(SIGTERM).ok());

  AgentProcess::Options older;
  older.server = server_->device_address();
  older.state_dir = agent->state_dir();
  older.wrapper = {"/usr/bin/qemu-x86_64", "-cpu", "Nehalem"};
  AgentProcess moved(older);
  moved.Start();
  client::LocalClient after(agent->state_dir() + "/agent.sock");
  std::string target;
  Eventually(
      [&] {
        auto models = after.ListModels();
        if (models.ok() && models->models_size() == 1) target = models->models(0).target();
        return target == "x86_64-v2";
      },
      absl::Seconds(120));  // emulated: slower to converge
  ASSERT_EQ(target, "x86_64-v2") << moved.log();
  EXPECT_TRUE(absl::StrContains(moved.log(), absl::StrCat("is built for ", host_class,
                                                          ", which this x86_64-v2 CPU cannot run")))
      << moved.log();
  auto predicted = after.Predict("kws", {{"input", {1, 16}, Input(16, 1.0f)}});
  ASSERT_TRUE(predicted.ok()) << predicted.status();
  EXPECT_EQ(predicted->model_version, v1);
  EXPECT_NE(predicted->module_digest, wide_digest);
  ASSERT_TRUE(ParseProtoJson(Call("GET", "/v1/devices/" + agent->device_id()).body, &device).ok());
  EXPECT_EQ(device.profile().target(), "x86_64-v2");
}

// The device's disk fills up while a module downloads (a log gone wild, another
// application's data): the download fails with the reason, reported to the server; the module
// in use keeps serving; once there is room again the download resumes and the new module serves.
TEST_P(ServingTest, ADiskThatFillsDuringADownloadIsReportedAndRecovered) {
  const std::string disk = options_.data_dir + "/agent";
  std::filesystem::create_directories(disk);
  if (::system(absl::StrCat("mount -t tmpfs -o size=24m tmpfs ", disk, " 2>/dev/null").c_str()) !=
      0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  }
  // Declared before the agent, so that the agent is stopped first on the way out.
  struct Unmount {
    std::string path;
    ~Unmount() { ::system(absl::StrCat("umount -l ", path).c_str()); }
  } unmount{disk};
  // The agent first, so that the versions are built for its class when pushed (not later,
  // which would change the module it is asked for in the middle of the download).
  auto agent = StartAgent({"--max-download-kbps", "4000"});
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  // About 2.4 MB, so that at 4 Mbit/s its download takes seconds.
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 768, 768, 4}, 2));
  Assign("kws", v1, agent->device_id());
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();

  Assign("kws", v2, agent->device_id());
  ASSERT_TRUE(Eventually([&] { return HasPartialDownload(disk + "/modules"); })) << agent->log();
  {
    std::ofstream filler(disk + "/filler", std::ios::binary);
    const std::string mib(1 << 20, 'x');
    while (filler.write(mib.data(), mib.size())) {
    }
  }
  // The write that failed, or — once the next sync has retried — the free-space check.
  std::string message = FailureReported(agent->device_id(), v2);
  EXPECT_TRUE(absl::StrContains(message, "No space left on device") ||
              absl::StrContains(message, "not enough disk for module"))
      << message << agent->log();
  auto still = client.Predict("kws", {{"input", {1, 16}, Input(16, 1.0f)}});
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->model_version, v1);

  std::filesystem::remove(disk + "/filler");
  ASSERT_TRUE(WaitServing(client, "kws", v2)) << agent->log();
  EXPECT_TRUE(absl::StrContains(agent->log(), "resuming module download")) << agent->log();
  auto now = client.Predict("kws", {{"input", {1, 16}, Input(16, 1.0f)}});
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->model_version, v2);
  ASSERT_TRUE(agent->Stop(SIGTERM).ok());
}

// A class that joins the fleet after a version was built (here: the first device, so the
// version was built for the default x86_64-v2 only): the server builds the assigned version
// for it too, the version stays READY, and the device moves from the narrower module to the
// one for its own CPU without being reassigned.
TEST_P(ServingTest, AClassThatJoinsLaterGetsModulesBuiltForIt) {
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  auto agent = StartAgent();
  v1::Device device;
  ASSERT_TRUE(ParseProtoJson(Call("GET", "/v1/devices/" + agent->device_id()).body, &device).ok());
  const std::string host_class = device.profile().target();
  if (host_class == "x86_64-v2") GTEST_SKIP() << "this machine's class is the default one";
  Assign("kws", v1, agent->device_id());
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  std::string target;
  Eventually(
      [&] {
        auto models = client.ListModels();
        if (models.ok() && models->models_size() == 1 && models->models(0).version() == v1) {
          target = models->models(0).target();
        }
        return target == host_class;
      },
      absl::Seconds(60));
  ASSERT_EQ(target, host_class) << agent->log();
  auto predicted = client.Predict("kws", {{"input", {1, 16}, Input(16, 1.0f)}});
  ASSERT_TRUE(predicted.ok()) << predicted.status();
  EXPECT_EQ(predicted->model_version, v1);
  v1::ListArtifactsResponse artifacts;
  ASSERT_TRUE(
      ParseProtoJson(Call("GET", absl::StrCat("/v1/models/kws/versions/", v1, "/artifacts")).body,
                     &artifacts)
          .ok());
  std::string reason;
  for (const auto& a : artifacts.artifacts()) {
    if (a.target() == host_class) reason = a.reason();
  }
  EXPECT_TRUE(absl::StrContains(reason, "joined the fleet after this version was built")) << reason;
  v1::ModelVersion settled;
  ASSERT_TRUE(
      ParseProtoJson(Call("GET", absl::StrCat("/v1/models/kws/versions/", v1)).body, &settled)
          .ok());
  EXPECT_EQ(settled.status(), v1::READY);
}

TEST_P(ServingTest, RemoteAndLocalRollbacks) {
  auto agent_process = StartAgent({"--rollback-min-calls", "30", "--rollback-latency-ratio", "3",
                                   "--rollback-latency-slack-us", "20"});
  AgentProcess& agent = *agent_process;
  client::LocalClient client(agent.state_dir() + "/agent.sock");
  const std::vector<float> x = Input(16, 1.0f);
  auto call = [&](int n) {
    for (int i = 0; i < n; ++i) ASSERT_TRUE(client.Predict("kws", {{"input", {1, 16}, x}}).ok());
  };
  auto device_module = [&](const std::string& state) -> v1::ModuleStatus {
    v1::Device d;
    ParseProtoJson(Call("GET", "/v1/devices/" + agent.device_id()).body, &d).IgnoreError();
    for (const auto& m : d.state().modules()) {
      if (m.state() == state) return m;
    }
    return v1::ModuleStatus();
  };

  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  Assign("kws", v1, agent.device_id());
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent.log();
  call(60);  // v1's run time is the baseline a new module is judged against
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 2));
  Assign("kws", v2, agent.device_id());
  ASSERT_TRUE(WaitServing(client, "kws", v2)) << agent.log();
  ASSERT_TRUE(Eventually([&] { return device_module("previous").module().version() == v1; }));

  // Remote: the operator sends the device back to what it kept as previous; no download.
  CommandResult cli = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(),
                                  "--token-file", options_.data_dir + "/admin.token", "device",
                                  "rollback", agent.device_id(), "--model", "kws"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(absl::StrContains(cli.out, absl::StrCat("version ", v1))) << cli.out;
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent.log();
  EXPECT_TRUE(absl::StrContains(agent.log(), "switched back to the previous module"));

  // Local: a new module that runs far slower than the one it replaced is swapped back after
  // its first 30 calls, reported, and not installed again although it is still assigned.
  const int64_t v3 =
      Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 1024, 1024, 4}, 3));
  Assign("kws", v3, agent.device_id());
  ASSERT_TRUE(WaitServing(client, "kws", v3)) << agent.log();
  call(40);
  auto models = client.ListModels();
  ASSERT_TRUE(models.ok());
  EXPECT_EQ(models->models(0).version(), v1) << agent.log();
  v1::ModuleStatus rolled;
  // The next sync reports it; a loaded machine may take a while to get there.
  Eventually(
      [&] {
        rolled = device_module("rolled back");
        return !rolled.state().empty();
      },
      absl::Seconds(60));
  EXPECT_EQ(rolled.module().version(), v3);
  EXPECT_TRUE(absl::StrContains(rolled.message(), "mean run time")) << rolled.message();
  // Two more syncs with v3 still desired do not install it again.
  const int64_t syncs = agent.SyncsOk();
  ASSERT_GE(syncs, 0);
  EXPECT_TRUE(Eventually([&] { return agent.SyncsOk() >= syncs + 2; })) << agent.log();
  models = client.ListModels();
  ASSERT_TRUE(models.ok());
  EXPECT_EQ(models->models(0).version(), v1);
  // An operator asking to roll back a model the device has no previous of gets the reason.
  HttpResponse none =
      Call("POST", "/v1/devices/" + agent.device_id() + ":rollback", R"({"model":"other"})");
  EXPECT_EQ(none.status, 400);
  EXPECT_TRUE(absl::StrContains(none.body, "no previous module")) << none.body;
}

TEST_P(ServingTest, Kill9AtEveryInstallStepLeavesAWorkingModuleAndConverges) {
  auto agent = StartAgent();
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  int64_t serving = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  Assign("kws", serving, agent->device_id());
  {
    client::LocalClient client(agent->state_dir() + "/agent.sock");
    ASSERT_TRUE(WaitServing(client, "kws", serving)) << agent->log();
  }
  ASSERT_TRUE(agent->Stop(SIGTERM).ok());
  const std::vector<float> x = Input(16, 1.0f);
  uint32_t seed = 10;
  for (const char* point :
       {"agent.downloaded", "agent.verified", "agent.published", "agent.recorded"}) {
    SCOPED_TRACE(point);
    const int64_t next =
        Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, ++seed));
    AgentProcess::Options crashing;
    crashing.server = server_->device_address();
    crashing.state_dir = agent->state_dir();
    crashing.env = {{"EDGELOOP_FAILPOINT", point}};
    AgentProcess doomed(crashing);
    doomed.Start();
    Assign("kws", next, agent->device_id());
    auto exited = doomed.WaitExit(absl::Seconds(30));
    ASSERT_TRUE(exited.ok()) << doomed.log();
    EXPECT_EQ(*exited, 128 + SIGKILL);
    // Restarted: it serves a whole module at once (the old or the new one), then the new one.
    AgentProcess::Options normal = crashing;
    normal.env.clear();
    AgentProcess restarted(normal);
    restarted.Start();
    absl::StatusOr<client::Prediction> first = absl::UnavailableError("not yet");
    Eventually([&] {
      // A fresh channel each time: gRPC backs off reconnecting to a socket that refused.
      first = client::LocalClient(agent->state_dir() + "/agent.sock")
                  .Predict("kws", {{"input", {1, 16}, x}});
      return first.ok();
    });
    client::LocalClient client(agent->state_dir() + "/agent.sock");
    ASSERT_TRUE(first.ok()) << first.status() << restarted.log();
    EXPECT_TRUE(first->model_version == serving || first->model_version == next)
        << first->model_version;
    ASSERT_TRUE(WaitServing(client, "kws", next)) << restarted.log();
    serving = next;
    ASSERT_TRUE(restarted.Stop(SIGTERM).ok());
  }
}

TEST_P(ServingTest, WithoutMemoryForTwoModulesCallsWaitForTheSwapInsteadOfFailing) {
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 64, 4}, 1));
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 64, 4}, 2));
  // Room for one module (the biggest build of v1, its workspaces included) and a half.
  v1::ListArtifactsResponse artifacts;
  ASSERT_TRUE(
      ParseProtoJson(Call("GET", absl::StrCat("/v1/models/kws/versions/", v1, "/artifacts")).body,
                     &artifacts)
          .ok());
  int64_t biggest = 0;
  for (const auto& a : artifacts.artifacts()) biggest = std::max(biggest, a.module_size());
  const int64_t budget_kb = (biggest * 3 / 2 + 8192) / 1024;

  auto agent_process = StartAgent({"--memory-budget-kb", std::to_string(budget_kb)});
  AgentProcess& agent = *agent_process;
  Assign("kws", v1, agent.device_id());
  client::LocalClient client(agent.state_dir() + "/agent.sock");
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent.log();

  const std::vector<float> x = Input(16, 1.0f);
  std::atomic<bool> done{false};
  std::atomic<int64_t> calls{0}, failures{0};
  std::vector<std::thread> apps;
  for (int t = 0; t < 3; ++t) {
    apps.emplace_back([&] {
      while (!done) {
        ++calls;
        if (!client.Predict("kws", {{"input", {1, 16}, x}}).ok()) ++failures;
      }
    });
  }
  Assign("kws", v2, agent.device_id());
  const bool swapped = WaitServing(client, "kws", v2);
  // Calls keep coming after the swap (while the old module drains).
  const int64_t at_swap = calls;
  EXPECT_TRUE(Eventually([&] { return calls >= at_swap + 150; }));
  done = true;
  for (auto& a : apps) a.join();
  ASSERT_TRUE(swapped) << agent.log();
  EXPECT_EQ(failures, 0) << "of " << calls;
  EXPECT_TRUE(absl::StrContains(agent.log(), "draining the current module to make room"))
      << agent.log();
  auto models = client.ListModels();
  ASSERT_TRUE(models.ok());
  EXPECT_EQ(models->models(0).previous_version(), 0);  // no room to keep it loaded
}

// Devices pin the module signing key at enrollment. A rotation (the old key signs the
// hand-over, every manifest is signed again) is followed; a server that offers a key of its own
// gets nothing installed, however it answers.
TEST_P(ServingTest, DevicesFollowASigningKeyRotationAndRefuseAnImpostorsKey) {
  auto agent = StartAgent();
  const std::string pin_path = agent->state_dir() + "/identity/module-signing.pub";
  const std::string first_key = *ReadFile(options_.data_dir + "/signing.key.pub");
  EXPECT_EQ(ReadFile(pin_path).value_or(""), first_key);  // pinned at enrollment
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1));
  Assign("kws", v1, agent->device_id());
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  ASSERT_TRUE(WaitServing(client, "kws", v1)) << agent->log();

  // Rotation: same device address, new key; the device follows and the next version installs.
  const std::string device_address = server_->device_address();
  ASSERT_TRUE(server_->Stop(SIGTERM).ok());
  options_.device_listen = device_address;
  options_.extra_flags.push_back("--rotate-signing-key");
  StartServer();
  const std::string second_key = *ReadFile(options_.data_dir + "/signing.key.pub");
  ASSERT_NE(second_key, first_key);
  ASSERT_TRUE(
      Eventually([&] { return ReadFile(pin_path).value_or("") == second_key; }, absl::Seconds(30)))
      << agent->log();
  // The module built before the rotation was signed again with the new key.
  v1::ListArtifactsResponse artifacts;
  ASSERT_TRUE(
      ParseProtoJson(Call("GET", absl::StrCat("/v1/models/kws/versions/", v1, "/artifacts")).body,
                     &artifacts)
          .ok());
  ASSERT_GT(artifacts.artifacts_size(), 0);
  for (const auto& a : artifacts.artifacts())
    EXPECT_TRUE(crypto::VerifySignature(second_key, a.manifest(), a.signature())) << a.target();
  const int64_t v2 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 2));
  Assign("kws", v2, agent->device_id());
  ASSERT_TRUE(WaitServing(client, "kws", v2)) << agent->log();

  // An impostor with a certificate from the same CA (a stolen listener key) but without the CA
  // key or the signing key: it offers its own key and a module signed with it.
  ASSERT_TRUE(agent->Stop(SIGTERM).ok());
  auto ca = crypto::CertificateAuthority::LoadOrCreate(options_.data_dir + "/ca", absl::Now());
  ASSERT_TRUE(ca.ok());
  auto tls = (*ca)->IssueServerIdentity({"127.0.0.1"}, absl::Now(), absl::Hours(1));
  ASSERT_TRUE(tls.ok());
  auto impostor_key = crypto::SigningKey::LoadOrCreate(options_.data_dir + "/impostor.key");
  ASSERT_TRUE(impostor_key.ok());
  class Impostor final : public v1::DeviceService::Service {
   public:
    explicit Impostor(const crypto::SigningKey& key) : key_(key) {}
    grpc::Status Sync(grpc::ServerContext*, const v1::SyncRequest* request,
                      v1::SyncResponse* response) override {
      {
        std::lock_guard lock(mu);
        last = *request;
      }
      v1::ModuleRef* m = response->add_desired_modules();
      m->set_model("kws");
      m->set_version(99);
      m->set_target(request->state().modules_size() > 0
                        ? request->state().modules(0).module().target()
                        : "x86_64-v2");
      m->set_digest("sha256:" + std::string(64, 'e'));
      m->set_size(4096);
      m->set_manifest(absl::StrCat(R"({"soDigest":")", m->digest(), R"(","soSize":4096,"target":")",
                                   m->target(), "\"}"));
      m->set_signature(*key_.Sign(m->manifest()));
      response->set_desired_generation(1000);
      response->set_next_sync_ms(200);
      response->set_module_signing_key(key_.public_key_pem());
      response->mutable_module_signing_key_trust()->set_key_pem(key_.public_key_pem());
      response->mutable_module_signing_key_trust()->set_ca_signature(std::string(140, 'a'));
      return grpc::Status::OK;
    }
    grpc::Status FetchModule(grpc::ServerContext*, const v1::FetchModuleRequest*,
                             grpc::ServerWriter<v1::ModuleChunk>*) override {
      ++fetches;
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no");
    }
    std::mutex mu;
    v1::SyncRequest last;
    std::atomic<int> fetches{0};

   private:
    const crypto::SigningKey& key_;
  } impostor(**impostor_key);
  grpc::SslServerCredentialsOptions server_tls(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  server_tls.pem_root_certs = (*ca)->cert_pem();
  server_tls.pem_key_cert_pairs.push_back({tls->key_pem, tls->cert_pem});
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(server_tls), &port);
  builder.RegisterService(&impostor);
  std::unique_ptr<grpc::Server> fake = builder.BuildAndStart();
  ASSERT_GT(port, 0);
  AgentProcess::Options o;
  o.server = absl::StrCat("127.0.0.1:", port);
  o.state_dir = agent->state_dir();
  AgentProcess redirected(o);
  redirected.Start();
  std::string reported;
  Eventually(
      [&] {
        std::lock_guard lock(impostor.mu);
        for (const auto& m : impostor.last.state().modules())
          if (m.module().version() == 99 && m.state() == "failed") reported = m.message();
        return !reported.empty();
      },
      absl::Seconds(30));
  EXPECT_FALSE(reported.empty()) << redirected.log();
  EXPECT_TRUE(absl::StrContains(reported, "signature")) << reported;
  EXPECT_EQ(impostor.fetches.load(), 0);  // refused before a byte was fetched
  EXPECT_EQ(ReadFile(pin_path).value_or(""), second_key);
  EXPECT_TRUE(absl::StrContains(redirected.log(), "module signing key refused"));
  ASSERT_TRUE(redirected.Stop(SIGTERM).ok());
  fake->Shutdown();
}

// A cached module whose bytes went bad on disk is deleted and downloaded again, at install and
// at restart, instead of being refused for good.
TEST_P(ServingTest, ACorruptedCachedModuleIsDownloadedAgain) {
  auto agent = StartAgent();
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  client::LocalClient client(agent->state_dir() + "/agent.sock");
  std::vector<int64_t> versions;
  for (uint32_t seed : {1u, 2u, 3u}) {
    versions.push_back(Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, seed)));
    Assign("kws", versions.back(), agent->device_id());
    ASSERT_TRUE(WaitServing(client, "kws", versions.back())) << agent->log();
  }
  // v1 is only cached now (v3 active, v2 previous): flip a byte of it, then ask for it.
  v1::Device device;
  ASSERT_TRUE(ParseProtoJson(Call("GET", "/v1/devices/" + agent->device_id()).body, &device).ok());
  v1::ListArtifactsResponse artifacts;
  ASSERT_TRUE(
      ParseProtoJson(
          Call("GET", absl::StrCat("/v1/models/kws/versions/", versions[0], "/artifacts")).body,
          &artifacts)
          .ok());
  std::string cached;
  for (const auto& a : artifacts.artifacts()) {
    if (a.target() == device.profile().target())
      cached = absl::StrCat(agent->state_dir(), "/modules/", a.module_digest().substr(7), ".so");
  }
  ASSERT_TRUE(std::filesystem::exists(cached)) << cached;
  auto corrupt = [&] {
    std::fstream f(cached, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x5a');
  };
  corrupt();
  Assign("kws", versions[0], agent->device_id());
  ASSERT_TRUE(WaitServing(client, "kws", versions[0])) << agent->log();
  EXPECT_TRUE(absl::StrContains(agent->log(), "cached module is corrupt")) << agent->log();

  // The same at a restart: the active module's file went bad while the agent was down.
  ASSERT_TRUE(agent->Stop(SIGTERM).ok());
  corrupt();
  agent->Start();
  ASSERT_TRUE(WaitServing(client, "kws", versions[0])) << agent->log();
  EXPECT_TRUE(absl::StrContains(agent->log(), "to be downloaded again")) << agent->log();
  EXPECT_TRUE(client.Predict("kws", {{"input", {1, 16}, Input(16, 1.0f)}}).ok());
}

INSTANTIATE_TEST_SUITE_P(Storage, ServingTest, ::testing::Values("sqlite"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
