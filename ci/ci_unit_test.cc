// The CI stage's planner and workers on SQLite and PostgreSQL, with the real compiler in the
// real sandbox and a fake clock for leases and planning intervals.
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ci/compile_jobs.h"
#include "ci/planner.h"
#include "ci/schema.h"
#include "ci/worker.h"
#include "common/file_util.h"
#include "common/random.h"
#include "common/signing.h"
#include "common/testing/fake_clock.h"
#include "common/x509.h"
#include "compiler/testing/onnx_models.h"
#include "fleet/device_registry.h"
#include "fleet/enrollment_tokens.h"
#include "fleet/schema.h"
#include "fleet/sync_pacer.h"
#include "fleet/testing/profiles.h"
#include "fleet/testing/test_fleet.h"
#include "gtest/gtest.h"
#include "registry/registry.h"
#include "registry/schema.h"
#include "store/blob_store.h"
#include "store/testing/test_database.h"

namespace edgeloop::ci {
namespace {
namespace fs = std::filesystem;

class CiStageTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "edgeloop-ci-", RandomHex(6));
    fs::create_directories(dir_);
    auto fleet = fleet::testing::TestFleet::Create(
        {.driver = GetParam(),
         .dir = dir_,
         .clock = &clock_,
         .more_components = {&store::BlobMigrations(), &Migrations()},
         .assignments = false});
    ASSERT_TRUE(fleet.ok()) << fleet.status();
    fleet_ = std::move(*fleet);
    auto signer = crypto::SigningKey::LoadOrCreate(dir_ + "/signing.key");
    ASSERT_TRUE(signer.ok()) << signer.status();
    signer_ = std::move(*signer);
    compiler::SandboxOptions sandbox_options;
    sandbox_options.scratch_root = dir_ + "/compile";
    auto sandbox = compiler::Sandbox::Create(sandbox_options);
    ASSERT_TRUE(sandbox.ok()) << sandbox.status();
    sandbox_ = std::move(*sandbox);
    planner_ = std::make_unique<Planner>(PlannerOptions{.database = fleet_->db.get(),
                                                        .clock = &clock_,
                                                        .default_targets = {"x86_64-v2"},
                                                        .new_class_interval = absl::Seconds(10)});
  }
  void TearDown() override { fs::remove_all(dir_); }

  WorkerOptions Options(const std::string& worker_id,
                        const std::string& binary = EDGELOOP_BIN_DIR "/edgeloop-compile") {
    WorkerOptions o;
    o.database = fleet_->db.get();
    o.blobs = fleet_->blobs.get();
    o.signer = signer_.get();
    o.clock = &clock_;
    o.compile_binary = binary;
    o.sandbox = sandbox_.get();
    o.worker_id = worker_id;
    o.lease = absl::Minutes(15);
    o.compile_timeout = absl::Minutes(2);
    o.on_desired_state_changed = [this] { ++desired_changes_; };
    return o;
  }

  void Enroll(const v1::HardwareProfile& profile, const std::string& serial) {
    v1::CreateEnrollmentTokenRequest token;
    token.set_max_uses(1);
    token.set_ttl_seconds(3600);
    auto created = fleet_->tokens->Create(token, "alice");
    ASSERT_TRUE(created.ok()) << created.status();
    auto csr = crypto::GenerateKeyAndCsr("device");
    ASSERT_TRUE(csr.ok());
    v1::EnrollRequest r;
    r.set_token(created->secret());
    r.set_csr_pem(csr->csr_pem);
    *r.mutable_profile() = profile;
    r.set_serial(serial);
    ASSERT_TRUE(fleet_->devices->Enroll(r).ok());
  }

  // Pushes `onnx` as the next version of `model` (created on first use).
  int64_t Push(const std::string& model, const std::string& onnx) {
    v1::CreateModelRequest create;
    create.set_name(model);
    (void)fleet_->models->CreateModel(create, "alice");
    auto writer = fleet_->blobs->NewWriter(int64_t{1} << 24);
    EXPECT_TRUE((*writer)->Write(onnx).ok());
    auto blob = (*writer)->Commit("");
    EXPECT_TRUE(blob.ok()) << blob.status();
    v1::CreateVersionRequest push;
    push.set_model(model);
    push.set_onnx_digest(blob->digest);
    auto version = fleet_->models->CreateVersion(push, "alice");
    EXPECT_TRUE(version.ok()) << version.status();
    return version->version();
  }

  int64_t ModelId(const std::string& model) {
    auto id = registry::Registry::FindModelId(*fleet_->db, model);
    EXPECT_TRUE(id.ok() && id->has_value());
    return **id;
  }
  v1::ModelVersion Version(const std::string& model, int64_t version) {
    v1::GetVersionRequest get;
    get.set_model(model);
    get.set_version(version);
    auto v = fleet_->models->GetVersion(get);
    EXPECT_TRUE(v.ok()) << v.status();
    return *v;
  }
  // target → "STATE attempts" of the version's jobs.
  std::map<std::string, std::string> Jobs(const std::string& model, int64_t version) {
    auto jobs = CompileJobs::ForVersion(*fleet_->db, ModelId(model), version);
    EXPECT_TRUE(jobs.ok()) << jobs.status();
    std::map<std::string, std::string> out;
    for (const auto& j : *jobs) out[j.target()] = absl::StrCat(j.state(), " ", j.attempts());
    return out;
  }
  std::string Reason(const std::string& model, int64_t version, const std::string& target) {
    auto jobs = CompileJobs::ForVersion(*fleet_->db, ModelId(model), version);
    for (const auto& j : *jobs) {
      if (j.target() == target) return j.reason();
    }
    return "";
  }
  // A compile_binary that is not edgeloop-compile: a script with this body.
  std::string Script(const std::string& body) {
    const std::string path = dir_ + "/" + RandomHex(4) + "-compile";
    EXPECT_TRUE(WriteFileAtomically(path, "#!/bin/bash\n" + body + "\n", 0755).ok());
    return path;
  }

  std::string dir_;
  edgeloop::testing::FakeClock clock_;
  std::unique_ptr<fleet::testing::TestFleet> fleet_;
  std::unique_ptr<crypto::SigningKey> signer_;
  std::unique_ptr<compiler::Sandbox> sandbox_;
  std::unique_ptr<Planner> planner_;
  int desired_changes_ = 0;
};

TEST_P(CiStageTest, PlansOneJobPerFleetClassAndDefaultOnce) {
  Enroll(fleet::testing::Pi4(), "pi-1");
  Enroll(fleet::testing::Pi4(), "pi-2");
  const int64_t v = Push("mlp", compiler::testing::MlpOnnx(4, 8, 2));
  EXPECT_EQ(Version("mlp", v).status(), v1::REGISTERED);
  ASSERT_TRUE(planner_->PlanOnce().ok());
  EXPECT_EQ(Jobs("mlp", v), (std::map<std::string, std::string>{{"aarch64-v8", "QUEUED 0"},
                                                                {"x86_64-v2", "QUEUED 0"}}));
  EXPECT_EQ(Reason("mlp", v, "aarch64-v8"), "2 active device(s) of this class in the fleet");
  EXPECT_EQ(Reason("mlp", v, "x86_64-v2"), "configured default (--compile-targets)");
  EXPECT_EQ(Version("mlp", v).status(), v1::COMPILING);
  // The event is consumed: planning again adds nothing.
  ASSERT_TRUE(planner_->PlanOnce().ok());
  EXPECT_EQ(Jobs("mlp", v).size(), 2u);
}

TEST_P(CiStageTest, BuildsAVersionAndMakesItReady) {
  const int64_t v = Push("mlp", compiler::testing::MlpOnnx(4, 8, 2));
  ASSERT_TRUE(planner_->PlanOnce().ok());
  Worker worker(Options("host:1"));
  auto worked = worker.WorkOnce();
  ASSERT_TRUE(worked.ok()) << worked.status();
  EXPECT_TRUE(*worked);
  EXPECT_EQ(Jobs("mlp", v), (std::map<std::string, std::string>{{"x86_64-v2", "DONE 1"}}));
  const v1::ModelVersion settled = Version("mlp", v);
  EXPECT_EQ(settled.status(), v1::READY) << settled.status_message();
  EXPECT_EQ(desired_changes_, 1);
  auto artifacts = registry::Registry::Artifacts(*fleet_->db, ModelId("mlp"), v);
  ASSERT_TRUE(artifacts.ok());
  ASSERT_EQ(artifacts->size(), 1u);
  // The manifest and validation figures came from the tool's report; the signature is ours.
  EXPECT_TRUE(absl::StrContains((*artifacts)[0].manifest, "x86_64-v2"));
  EXPECT_TRUE(absl::StrContains((*artifacts)[0].validation, "\"selftest\":\"passed\""))
      << (*artifacts)[0].validation;
  EXPECT_TRUE(crypto::VerifySignature(signer_->public_key_pem(), (*artifacts)[0].manifest,
                                      (*artifacts)[0].signature));
  EXPECT_EQ((*artifacts)[0].reason, "configured default (--compile-targets)");
  // Nothing more to do.
  auto idle = worker.WorkOnce();
  ASSERT_TRUE(idle.ok());
  EXPECT_FALSE(*idle);
}

TEST_P(CiStageTest, AJobWhoseWorkerVanishedIsRetriedWhenItsLeaseRunsOut) {
  const int64_t v = Push("mlp", compiler::testing::MlpOnnx(4, 8, 2));
  ASSERT_TRUE(planner_->PlanOnce().ok());
  // Worker A claims the job and is never heard of again.
  std::optional<CompileJob> taken;
  ASSERT_TRUE(store::RunInTransaction(*fleet_->db, [&](store::Transaction& tx) -> absl::Status {
                auto claimed = CompileJobs::Claim(tx, fleet_->db->dialect(), "other-host:7",
                                                  absl::ToUnixMillis(clock_.Now()),
                                                  absl::ToInt64Milliseconds(absl::Minutes(15)));
                if (!claimed.ok()) return claimed.status();
                taken = *claimed;
                return absl::OkStatus();
              }).ok());
  ASSERT_TRUE(taken.has_value());
  Worker b(Options("host:2"));
  auto worked = b.WorkOnce();
  ASSERT_TRUE(worked.ok());
  EXPECT_FALSE(*worked);  // the lease still holds
  EXPECT_EQ(Version("mlp", v).status(), v1::COMPILING);
  clock_.Advance(absl::Minutes(16));
  worked = b.WorkOnce();
  ASSERT_TRUE(worked.ok()) << worked.status();
  EXPECT_TRUE(*worked);
  EXPECT_EQ(Jobs("mlp", v), (std::map<std::string, std::string>{{"x86_64-v2", "DONE 2"}}));
  EXPECT_EQ(Version("mlp", v).status(), v1::READY);
  // A's late answer is refused: the job is no longer its own.
  ASSERT_TRUE(store::RunInTransaction(*fleet_->db, [&](store::Transaction& tx) -> absl::Status {
                auto completed = CompileJobs::Complete(tx, taken->id, "other-host:7",
                                                       absl::ToUnixMillis(clock_.Now()));
                if (!completed.ok()) return completed.status();
                EXPECT_FALSE(*completed);
                return absl::OkStatus();
              }).ok());
}

TEST_P(CiStageTest, AModelTheCompilerRejectsFailsAtOnceWithTheReason) {
  std::string onnx = compiler::testing::MlpOnnx(4, 4, 2);
  onnx.replace(onnx.rfind("Relu"), 4, "Sign");  // an operator outside the compiler's set
  const int64_t v = Push("odd", onnx);
  ASSERT_TRUE(planner_->PlanOnce().ok());
  Worker worker(Options("host:1"));
  ASSERT_TRUE(worker.WorkOnce().ok());
  EXPECT_EQ(Jobs("odd", v), (std::map<std::string, std::string>{{"x86_64-v2", "FAILED 1"}}));
  const v1::ModelVersion failed = Version("odd", v);
  EXPECT_EQ(failed.status(), v1::FAILED);
  EXPECT_TRUE(
      absl::StrContains(failed.status_message(), "target x86_64-v2: unsupported operators: Sign"))
      << failed.status_message();
}

TEST_P(CiStageTest, ACrashingCompilerIsRetriedThenFailsTheVersion) {
  const int64_t v = Push("mlp", compiler::testing::MlpOnnx(4, 8, 2));
  ASSERT_TRUE(planner_->PlanOnce().ok());
  WorkerOptions options = Options("host:1", Script("kill -SEGV $$"));
  options.max_attempts = 2;
  Worker worker(options);
  ASSERT_TRUE(worker.WorkOnce().ok());
  // Transient: queued again, the version still compiling.
  EXPECT_EQ(Jobs("mlp", v), (std::map<std::string, std::string>{{"x86_64-v2", "QUEUED 1"}}));
  EXPECT_EQ(Version("mlp", v).status(), v1::COMPILING);
  ASSERT_TRUE(worker.WorkOnce().ok());
  EXPECT_EQ(Jobs("mlp", v), (std::map<std::string, std::string>{{"x86_64-v2", "FAILED 2"}}));
  const v1::ModelVersion failed = Version("mlp", v);
  EXPECT_EQ(failed.status(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(failed.status_message(), "compiler crashed (signal 11)"))
      << failed.status_message();
}

TEST_P(CiStageTest, ACompilerThatBreaksTheContractPublishesNothing) {
  // It says it failed but leaves no report: permanent, and said so.
  const int64_t silent = Push("mlp", compiler::testing::MlpOnnx(4, 8, 2));
  ASSERT_TRUE(planner_->PlanOnce().ok());
  Worker quiet(Options("host:1", Script("echo 'edgeloop-compile: scraped' >&2; exit 1")));
  ASSERT_TRUE(quiet.WorkOnce().ok());
  v1::ModelVersion failed = Version("mlp", silent);
  EXPECT_EQ(failed.status(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(failed.status_message(), "left no usable report"))
      << failed.status_message();
  EXPECT_FALSE(absl::StrContains(failed.status_message(), "scraped"));  // the log is not read

  // It reports a module whose bytes are not what it wrote.
  const int64_t forged = Push("mlp", compiler::testing::MlpOnnx(4, 8, 2, 7));
  ASSERT_TRUE(planner_->PlanOnce().ok());
  Worker liar(Options("host:1", Script(R"(while [ $# -gt 0 ]; do
  [ "$1" = --out ] && out="$2"; [ "$1" = --result ] && result="$2"; shift
done
mkdir -p "$out" && echo module > "$out/module.so"
echo '{"outcome":"COMPILE_OK","manifest":"{}","moduleDigest":"sha256:00"}' > "$result")")));
  ASSERT_TRUE(liar.WorkOnce().ok());
  failed = Version("mlp", forged);
  EXPECT_EQ(failed.status(), v1::FAILED);
  EXPECT_TRUE(absl::StrContains(failed.status_message(), "does not match the digest"))
      << failed.status_message();
  auto artifacts = registry::Registry::Artifacts(*fleet_->db, ModelId("mlp"), forged);
  ASSERT_TRUE(artifacts.ok());
  EXPECT_TRUE(artifacts->empty());
}

TEST_P(CiStageTest, AClassThatJoinsLaterGetsTheVersionsDevicesRun) {
  const int64_t v = Push("mlp", compiler::testing::MlpOnnx(4, 8, 2));
  ASSERT_TRUE(planner_->PlanOnce().ok());
  Worker worker(Options("host:1"));
  ASSERT_TRUE(worker.WorkOnce().ok());
  ASSERT_EQ(Version("mlp", v).status(), v1::READY);
  v1::SetAliasRequest alias;
  alias.set_model("mlp");
  alias.set_alias("prod");
  alias.set_version(v);
  ASSERT_TRUE(fleet_->models->SetAlias(alias, "alice").ok());
  // A version nothing names is not built for newcomers.
  const int64_t unnamed = Push("other", compiler::testing::MlpOnnx(4, 8, 2));
  ASSERT_TRUE(planner_->PlanOnce().ok());
  ASSERT_TRUE(worker.WorkOnce().ok());

  Enroll(fleet::testing::Pi4(), "pi-1");
  ASSERT_TRUE(planner_->PlanOnce().ok());
  EXPECT_EQ(Jobs("mlp", v).count("aarch64-v8"), 0u);  // the next look is not due yet
  clock_.Advance(absl::Seconds(11));
  ASSERT_TRUE(planner_->PlanOnce().ok());
  EXPECT_EQ(Jobs("mlp", v), (std::map<std::string, std::string>{{"aarch64-v8", "QUEUED 0"},
                                                                {"x86_64-v2", "DONE 1"}}));
  EXPECT_EQ(Reason("mlp", v, "aarch64-v8"),
            "1 active device(s) of this class joined the fleet after this version was built");
  EXPECT_EQ(Jobs("other", unnamed).count("aarch64-v8"), 0u);
  // The version stays READY while the newcomer's module is built.
  EXPECT_EQ(Version("mlp", v).status(), v1::READY);
}

INSTANTIATE_TEST_SUITE_P(Drivers, CiStageTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::ci
