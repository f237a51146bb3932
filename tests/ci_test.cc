// The CI stage end to end: a push becomes signed, validated modules for every target class in
// the fleet, with no other step; a model the compiler cannot take fails with the reason.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "absl/algorithm/container.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "common/signing.h"
#include "edgeloop/v1/device.pb.h"
#include "edgeloop/v1/registry.grpc.pb.h"
#include "compiler/testing/onnx_models.h"
#include "tests/testing/fixture.h"
#include "tests/testing/http_client.h"

namespace edgeloop::tests {
namespace {

class CiTest : public ServerTest {
 protected:
  std::string Upload(const std::string& bytes) {
    HttpResponse blob = Call("POST", "/v1/blobs", bytes);
    v1::Blob b;
    EXPECT_TRUE(ParseProtoJson(blob.body, &b).ok()) << blob.body;
    return b.digest();
  }

  // Pushes bytes (and a validation set, if any) as the next version of `model`; its number.
  int64_t Push(const std::string& model, const std::string& onnx,
               const std::string& validation_set = "", const std::string& more_fields = "") {
    std::string request = absl::StrCat(R"({"onnxDigest":")", Upload(onnx), "\"");
    if (!validation_set.empty())
      absl::StrAppend(&request, R"(,"validationDigest":")", Upload(validation_set), "\"");
    if (!more_fields.empty()) absl::StrAppend(&request, ",", more_fields);
    HttpResponse version =
        Call("POST", absl::StrCat("/v1/models/", model, "/versions"), request + "}");
    v1::ModelVersion v;
    EXPECT_TRUE(ParseProtoJson(version.body, &v).ok()) << version.body;
    return v.version();
  }

  // Polls the version until it leaves REGISTERED/COMPILING (up to 60 s).
  v1::ModelVersion WaitSettled(const std::string& model, int64_t version) {
    v1::ModelVersion v;
    Eventually(
        [&] {
          HttpResponse r = Call("GET", absl::StrCat("/v1/models/", model, "/versions/", version));
          v = v1::ModelVersion();
          EXPECT_TRUE(ParseProtoJson(r.body, &v).ok());
          return v.status() == v1::READY || v.status() == v1::FAILED;
        },
        absl::Seconds(60));
    return v;
  }
};

TEST_P(CiTest, PushBecomesSignedModulesForTheFleet) {
  // One device in the fleet: its target class must be built too.
  auto agent = StartAgent();
  v1::Device device;
  ASSERT_TRUE(ParseProtoJson(Call("GET", "/v1/devices/" + agent->device_id()).body, &device).ok());
  const std::string fleet_target = device.profile().target();
  ASSERT_FALSE(fleet_target.empty());

  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"mlp"})").status, 201);
  const std::string onnx = compiler::testing::MlpOnnx(16, 32, 4);
  const int64_t version = Push("mlp", onnx);
  v1::ModelVersion settled = WaitSettled("mlp", version);
  ASSERT_EQ(settled.status(), v1::READY) << settled.status_message();

  HttpResponse listed =
      Call("GET", absl::StrCat("/v1/models/mlp/versions/", version, "/artifacts"));
  v1::ListArtifactsResponse artifacts;
  ASSERT_TRUE(ParseProtoJson(listed.body, &artifacts).ok()) << listed.body;
  std::set<std::string> targets;
  const std::string public_key = *ReadFile(options_.data_dir + "/signing.key.pub");
  for (const auto& a : artifacts.artifacts()) {
    targets.insert(a.target());
    // The manifest names the module, the model and the target, and the server signed it.
    EXPECT_TRUE(crypto::VerifySignature(public_key, a.manifest(), a.signature())) << a.target();
    EXPECT_TRUE(absl::StrContains(a.manifest(), a.module_digest()));
    EXPECT_TRUE(absl::StrContains(a.manifest(), DigestFromHex(Sha256Hex(onnx))));
    EXPECT_TRUE(absl::StrContains(a.manifest(), absl::StrCat("\"target\":\"", a.target(), "\"")));
    EXPECT_TRUE(absl::StrContains(a.validation(), "\"selftest\":\"passed\"")) << a.validation();
    // The module itself is a blob whose bytes hash to the recorded digest.
    HttpResponse module = Call("GET", "/v1/blobs/" + a.module_digest());
    ASSERT_EQ(module.status, 200);
    EXPECT_EQ(DigestFromHex(Sha256Hex(module.body)), a.module_digest());
    EXPECT_EQ(static_cast<int64_t>(module.body.size()), a.module_size());
  }
  EXPECT_TRUE(targets.count("x86_64-v2")) << listed.body;   // the configured default
  EXPECT_TRUE(targets.count(fleet_target)) << listed.body;  // the fleet's
  for (const auto& a : artifacts.artifacts()) {
    // Why each target was built is recorded with it.
    if (a.target() == fleet_target) {
      EXPECT_TRUE(absl::StrContains(a.reason(), "1 active device(s)")) << a.reason();
    } else {
      EXPECT_TRUE(absl::StrContains(a.reason(), "configured default")) << a.reason();
    }
  }
  for (const auto& j : artifacts.jobs()) EXPECT_EQ(j.state(), "DONE");

  // The same through the CLI.
  CommandResult cli = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(),
                                  "--token-file", options_.data_dir + "/admin.token", "model",
                                  "artifacts", "mlp", std::to_string(version)});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(absl::StrContains(cli.out, "ed25519")) << cli.out;
}

TEST_P(CiTest, UncompilableModelFailsWithTheReason) {
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"odd"})").status, 201);
  // A valid model the compiler does not support: an operator outside its set.
  std::string onnx = compiler::testing::MlpOnnx(4, 4, 2);
  const size_t at = onnx.rfind("Relu");  // the op_type; the node name "a1_Relu" comes first
  ASSERT_NE(at, std::string::npos);
  onnx.replace(at, 4, "Sign");  // same length: the protobuf stays valid
  const int64_t version = Push("odd", onnx);
  v1::ModelVersion settled = WaitSettled("odd", version);
  ASSERT_EQ(settled.status(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(settled.status_message(), "x86_64-v2")) << settled.status_message();
  EXPECT_TRUE(absl::StrContains(settled.status_message(), "unsupported operators: Sign"))
      << settled.status_message();
  // The server is fine and builds the next push.
  const int64_t next = Push("odd", compiler::testing::MlpOnnx(4, 4, 2));
  EXPECT_EQ(WaitSettled("odd", next).status(), v1::READY);
  // Both outcomes are in the registry's event log, once each, for rollouts to act on.
  v1::ListEventsResponse log;
  ASSERT_TRUE(ParseProtoJson(Call("GET", "/v1/events?limit=1000").body, &log).ok());
  std::vector<std::string> outcomes;
  for (const auto& e : log.events()) {
    if (e.model() == "odd" && e.type() != "version.created" && e.type() != "model.created")
      outcomes.push_back(absl::StrCat(e.type(), " ", e.version(), " ", e.actor()));
  }
  EXPECT_EQ(outcomes, (std::vector<std::string>{absl::StrCat("version.failed ", version, " ci"),
                                                absl::StrCat("version.ready ", next, " ci")}));
}

TEST_P(CiTest, AssignedDevicesAreToldTheirSignedModule) {
  auto agent = StartAgent({}, R"({"site":"lab"})");

  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  const int64_t version = Push("kws", compiler::testing::MlpOnnx(8, 16, 4));
  ASSERT_EQ(WaitSettled("kws", version).status(), v1::READY);
  // Through the CLI, as DESIGN.md names it.
  CommandResult cli =
      RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(), "--token-file",
                  options_.data_dir + "/admin.token", "device", "assign", "--selector", "site=lab",
                  "--model", "kws", "--version", std::to_string(version)});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(absl::StrContains(cli.out, "to devices matching 'site=lab'")) << cli.out;

  v1::Device device;
  ASSERT_TRUE(ParseProtoJson(Call("GET", "/v1/devices/" + agent->device_id()).body, &device).ok());
  ASSERT_EQ(device.desired_modules_size(), 1);
  const v1::ModuleRef& m = device.desired_modules(0);
  EXPECT_EQ(m.model(), "kws");
  EXPECT_EQ(m.version(), version);
  EXPECT_EQ(m.target(), device.profile().target());  // its own class was built for the fleet
  const std::string public_key = *ReadFile(options_.data_dir + "/signing.key.pub");
  EXPECT_TRUE(crypto::VerifySignature(public_key, m.manifest(), m.signature()));
  EXPECT_TRUE(absl::StrContains(m.manifest(), m.digest()));
  EXPECT_EQ(Call("GET", "/v1/blobs/" + m.digest()).body.size(), static_cast<size_t>(m.size()));

  // REST lists the assignment; a bad one is a 400 with the reason.
  HttpResponse list = Call("GET", "/v1/assignments?model=kws");
  EXPECT_TRUE(absl::StrContains(list.body, "\"selector\":\"site=lab\"")) << list.body;
  HttpResponse bad = Call("POST", "/v1/assignments", R"({"model":"kws","selector":"site=lab"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_TRUE(absl::StrContains(bad.body, "exactly one of version and alias")) << bad.body;
}

TEST_P(CiTest, ModulesAreValidatedOnTheVersionsValidationSet) {
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"scored"})").status, 201);
  std::vector<float> values;
  for (int i = 0; i < 8 * 4; ++i) values.push_back(static_cast<float>(i % 5) * 0.3f - 0.6f);
  // Eight labelled samples for an MLP of 4 inputs and 2 classes.
  const std::string set =
      compiler::testing::ValidationSetOnnx("input", {8, 4}, values, {0, 1, 0, 1, 1, 0, 0, 1});
  const int64_t version = Push("scored", compiler::testing::MlpOnnx(4, 6, 2), set);
  v1::ModelVersion settled = WaitSettled("scored", version);
  ASSERT_EQ(settled.status(), v1::READY) << settled.status_message();
  v1::ListArtifactsResponse artifacts;
  ASSERT_TRUE(
      ParseProtoJson(
          Call("GET", absl::StrCat("/v1/models/scored/versions/", version, "/artifacts")).body,
          &artifacts)
          .ok());
  ASSERT_GT(artifacts.artifacts_size(), 0);
  for (const auto& a : artifacts.artifacts()) {
    EXPECT_TRUE(absl::StrContains(a.validation(), "\"inputs\":\"validation set\""))
        << a.validation();
    EXPECT_TRUE(absl::StrContains(a.validation(), "\"samples\":8")) << a.validation();
    EXPECT_TRUE(absl::StrContains(a.validation(), "\"accuracy\":")) << a.validation();
    EXPECT_TRUE(absl::StrContains(a.validation(), "\"referenceAccuracy\":")) << a.validation();
  }
  // The version's reference statistics came from the same set: every input element of the
  // 4-input model is monitored by default.
  const v1::ReferenceStatistics& reference = settled.reference();
  EXPECT_EQ(reference.source(), v1::ReferenceStatistics::VALIDATION_SET);
  EXPECT_EQ(reference.samples(), 8);
  ASSERT_EQ(reference.features_size(), 4);
  ASSERT_EQ(settled.monitored_features_size(), 4);
  EXPECT_EQ(reference.features(0).feature().name(), "input[0]");
  // input[0] of the eight samples is (4s mod 5) * 0.3 - 0.6 for s = 0..7.
  EXPECT_NEAR(reference.features(0).edges(0), -0.6, 1e-6);
  EXPECT_NEAR(reference.features(0).edges(10), 0.6, 1e-6);
  for (const auto& feature : reference.features()) {
    EXPECT_EQ(absl::c_accumulate(feature.counts(), int64_t{0}), 8) << feature.feature().name();
  }
  EXPECT_TRUE(reference.classifier());
  EXPECT_EQ(absl::c_accumulate(reference.class_counts(), int64_t{0}), 8);
  EXPECT_EQ(absl::c_accumulate(reference.confidence_counts(), int64_t{0}), 8);
  EXPECT_EQ(reference.labelled(), 8);
  EXPECT_TRUE(absl::StrContains(
      artifacts.artifacts(0).validation(),
      absl::StrCat("\"referenceAccuracy\":", reference.correct() / 8.0)))
      << artifacts.artifacts(0).validation() << " vs " << reference.correct();

  // The features can be chosen at push, by name.
  const int64_t chosen = Push("scored", compiler::testing::MlpOnnx(4, 6, 2, 4), set,
                              R"("monitoredFeatures":[{"name":"input.mean"},{"name":"input[2]"}])");
  settled = WaitSettled("scored", chosen);
  ASSERT_EQ(settled.status(), v1::READY) << settled.status_message();
  ASSERT_EQ(settled.reference().features_size(), 2);
  EXPECT_EQ(settled.reference().features(0).feature().kind(), v1::MonitoredFeature::MEAN);
  EXPECT_EQ(settled.reference().features(1).feature().name(), "input[2]");
  HttpResponse refused = Call("POST", "/v1/models/scored/versions",
                              absl::StrCat(R"({"onnxDigest":")", Upload(compiler::testing::MlpOnnx(4, 6, 2, 5)),
                                           R"(","monitoredFeatures":[{"name":"input[4]"}]})"));
  EXPECT_EQ(refused.status, 400);
  EXPECT_TRUE(absl::StrContains(refused.body, "the input has 4 elements")) << refused.body;
  // A version without a set has no reference until its devices send windows.
  const int64_t unset = Push("scored", compiler::testing::MlpOnnx(4, 6, 2, 6));
  settled = WaitSettled("scored", unset);
  ASSERT_EQ(settled.status(), v1::READY) << settled.status_message();
  EXPECT_FALSE(settled.has_reference());

  CommandResult cli = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(),
                                  "--token-file", options_.data_dir + "/admin.token", "model",
                                  "artifacts", "scored", std::to_string(version)});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_TRUE(absl::StrContains(cli.out, "set 8, acc ")) << cli.out;
  CommandResult shown = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(),
                                    "--token-file", options_.data_dir + "/admin.token", "model",
                                    "show", "scored", std::to_string(version)});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_TRUE(absl::StrContains(shown.out, "validation set, 8 samples, accuracy ")) << shown.out;
  EXPECT_TRUE(absl::StrContains(shown.out, "input[0] input[1] input[2] input[3]")) << shown.out;

  // A set that does not fit the model fails the version with the reason, and nothing else.
  const std::string wrong =
      compiler::testing::ValidationSetOnnx("input", {2, 5}, std::vector<float>(10), {});
  const int64_t bad = Push("scored", compiler::testing::MlpOnnx(4, 6, 2, 2), wrong);
  settled = WaitSettled("scored", bad);
  ASSERT_EQ(settled.status(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(settled.status_message(), "validation set: \"input\" must be"))
      << settled.status_message();
  EXPECT_EQ(WaitSettled("scored", Push("scored", compiler::testing::MlpOnnx(4, 6, 2, 3))).status(),
            v1::READY);
}

INSTANTIATE_TEST_SUITE_P(Storage, CiTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

// A compromised compiler (or a model that took one over) runs in the sandbox: it reports what it
// could reach in the one line the server keeps as the reason, and every probe must be refused.
class HostileCompilerTest : public CiTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    // A loopback port the compile must not reach (this process listens on it).
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listener_, 16), 0);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    options_.env["EDGELOOP_ADMIN_TOKEN_HINT"] = "the server's environment";
    tools_ = NewTempDir("hostile-compiler");
    const std::string script = absl::StrCat(R"(#!/bin/bash
data=')",
                                            options_.data_dir, R"('
key=refused; cat "$data/signing.key" >/dev/null 2>&1 && key=READ
token=refused; cat "$data/admin.token" >/dev/null 2>&1 && token=READ
ca=refused; ls "$data" >/dev/null 2>&1 && ca=LISTED
env=clean; env | grep -q '^EDGELOOP_' && env=LEAKED
net=refused; (exec 3<>/dev/tcp/127.0.0.1/)",
                                            ntohs(addr.sin_port), R"() 2>/dev/null && net=CONNECTED
while [ $# -gt 0 ]; do
  [ "$1" = --out ] && out="$2"; [ "$1" = --result ] && result="$2"; shift
done
if grep -q SYMLINK model.onnx; then
  # Outputs that point at the server's secrets, for the server to publish.
  mkdir -p "$out" && ln -s "$data/signing.key" "$out/module.so"
  echo '{"outcome":"COMPILE_OK","manifest":"{}","validation":"{}"}' > "$result"
  exit 0
fi
echo "{\"outcome\":\"COMPILE_MODEL_REJECTED\",\"error\":\"hostile: key=$key token=$token data=$ca env=$env net=$net\"}" > "$result"
exit 1
)");
    EXPECT_TRUE(WriteFileAtomically(tools_ + "/edgeloop-compile", script, 0755).ok());
    std::vector<std::string> flags = CiTest::ExtraFlags();
    flags.insert(flags.end(), {"--compile-binary", tools_ + "/edgeloop-compile"});
    return flags;
  }
  void TearDown() override {
    CiTest::TearDown();
    ::close(listener_);
    std::filesystem::remove_all(tools_);
  }
  int listener_ = -1;
  std::string tools_;
};

TEST_P(HostileCompilerTest, ReachesNothingOfTheServerAndPublishesNothingOfIt) {
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"trojan"})").status, 201);
  const int64_t probed = Push("trojan", compiler::testing::MlpOnnx(4, 4, 2));
  v1::ModelVersion settled = WaitSettled("trojan", probed);
  ASSERT_EQ(settled.status(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(settled.status_message(),
                                "hostile: key=refused token=refused data=refused env=clean "
                                "net=refused"))
      << settled.status_message();

  // Outputs that are links to the signing key are refused, not signed and published.
  const int64_t linked = Push("trojan", compiler::testing::ReluOnnxWithInputName("SYMLINK"));
  settled = WaitSettled("trojan", linked);
  ASSERT_EQ(settled.status(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(settled.status_message(), "symbolic link"))
      << settled.status_message();
  const std::string key = *ReadFile(options_.data_dir + "/signing.key");
  v1::ListArtifactsResponse artifacts;
  ASSERT_TRUE(
      ParseProtoJson(
          Call("GET", absl::StrCat("/v1/models/trojan/versions/", linked, "/artifacts")).body,
          &artifacts)
          .ok());
  EXPECT_EQ(artifacts.artifacts_size(), 0);
  EXPECT_FALSE(absl::StrContains(settled.status_message(), key.substr(0, 40)));

  // The server still serves.
  EXPECT_EQ(Call("GET", "/v1/models/trojan").status, 200);
  EXPECT_EQ(Call("GET", "/readyz").status, 200);
}

INSTANTIATE_TEST_SUITE_P(Storage, HostileCompilerTest, ::testing::Values("sqlite"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
