#include "registry/registry.h"

#include <filesystem>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "common/sha256.h"
#include "common/status.h"
#include "common/testing/fake_clock.h"
#include "compiler/testing/onnx_models.h"
#include "gtest/gtest.h"
#include "registry/schema.h"
#include "store/testing/test_database.h"

namespace edgeloop::registry {
namespace {
namespace fs = std::filesystem;

/// The registry suite, written once and run on SQLite (file blobs) and PostgreSQL
/// (database blobs).
class RegistryTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "edgeloop-registry-", RandomHex(6));
    fs::create_directories(dir_);
    auto db = store::testing::OpenTestDatabase(GetParam(), dir_,
                                               {&Migrations(), &store::BlobMigrations()});
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    store::BlobStoreOptions blob_options;
    blob_options.url =
        GetParam() == "postgres" ? "postgresql" : absl::StrCat("file://", dir_, "/blobs");
    blob_options.staging_dir = dir_ + "/staging";
    blob_options.database = db_.get();
    auto blobs = store::BlobStore::Create(blob_options);
    ASSERT_TRUE(blobs.ok()) << blobs.status();
    blobs_ = std::move(*blobs);
    auto registry =
        Registry::Create({.database = db_.get(), .blobs = blobs_.get(), .clock = &clock_});
    ASSERT_TRUE(registry.ok());
    registry_ = std::move(*registry);
  }
  void TearDown() override {
    registry_.reset();
    blobs_.reset();
    db_.reset();
    fs::remove_all(dir_);
  }

  std::string Upload(const std::string& bytes) {
    auto writer = blobs_->NewWriter(int64_t{1} << 30);
    EXPECT_TRUE((*writer)->Write(bytes).ok());
    auto info = (*writer)->Commit("");
    EXPECT_TRUE(info.ok()) << info.status();
    return info->digest;
  }

  absl::StatusOr<v1::Model> CreateModel(const std::string& name) {
    v1::CreateModelRequest r;
    r.set_name(name);
    r.set_description("a test model");
    (*r.mutable_labels())["team"] = "vision";
    return registry_->CreateModel(r, "alice");
  }

  absl::StatusOr<v1::ModelVersion> Push(const std::string& model, const std::string& digest) {
    v1::CreateVersionRequest r;
    r.set_model(model);
    r.set_onnx_digest(digest);
    return registry_->CreateVersion(r, "alice");
  }

  absl::StatusOr<v1::Alias> SetAlias(const std::string& model, const std::string& alias,
                                     int64_t version, const std::string& actor = "bob") {
    v1::SetAliasRequest r;
    r.set_model(model);
    r.set_alias(alias);
    r.set_version(version);
    return registry_->SetAlias(r, actor);
  }

  std::string dir_;
  edgeloop::testing::FakeClock clock_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::BlobStore> blobs_;
  std::unique_ptr<Registry> registry_;
};

TEST_P(RegistryTest, CreateAndGetModel) {
  auto model = CreateModel("detector");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->name(), "detector");
  EXPECT_EQ(model->labels().at("team"), "vision");
  EXPECT_EQ(model->latest_version(), 0);
  EXPECT_EQ(model->created_by(), "alice");
  EXPECT_EQ(model->create_time().seconds(), 1'700'000'000);

  EXPECT_EQ(CreateModel("detector").status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(CreateModel("Bad Name!").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateModel("").status().code(), absl::StatusCode::kInvalidArgument);
  v1::GetModelRequest get;
  get.set_model("missing");
  EXPECT_EQ(registry_->GetModel(get).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(RegistryTest, LabelLimitsAreEnforced) {
  v1::CreateModelRequest r;
  r.set_name("labelled");
  for (int i = 0; i < 65; ++i) (*r.mutable_labels())[absl::StrCat("k", i)] = "v";
  EXPECT_EQ(registry_->CreateModel(r, "a").status().code(), absl::StatusCode::kInvalidArgument);
  r.clear_labels();
  (*r.mutable_labels())["ok"] = std::string(300, 'x');
  EXPECT_EQ(registry_->CreateModel(r, "a").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(RegistryTest, PushRecordsSignatureFromTheOnnxGraph) {
  ASSERT_TRUE(CreateModel("mlp").ok());
  std::string onnx = compiler::testing::MlpOnnx(8, 16, 3);
  std::string digest = Upload(onnx);
  v1::CreateVersionRequest r;
  r.set_model("mlp");
  r.set_onnx_digest(digest);
  (*r.mutable_metrics())["accuracy"] = 0.93;
  (*r.mutable_labels())["framework"] = "pytorch";
  r.mutable_lineage()->set_training_run_id("run-7");
  r.mutable_lineage()->set_source("git:abc123");
  r.mutable_lineage()->set_dataset_digest(DigestFromHex(Sha256Hex("dataset")));
  auto version = registry_->CreateVersion(r, "alice");
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(version->version(), 1);
  EXPECT_EQ(version->status(), v1::REGISTERED);
  EXPECT_EQ(version->onnx_digest(), digest);
  EXPECT_EQ(version->onnx_size(), static_cast<int64_t>(onnx.size()));
  EXPECT_EQ(version->opset(), 13);
  EXPECT_EQ(version->producer(), "edgeloop-tests 1");
  ASSERT_EQ(version->inputs_size(), 1);  // the initialisers are not inputs
  EXPECT_EQ(version->inputs(0).name(), "input");
  EXPECT_EQ(version->inputs(0).dtype(), "float32");
  EXPECT_EQ(
      std::vector<int64_t>(version->inputs(0).shape().begin(), version->inputs(0).shape().end()),
      (std::vector<int64_t>{-1, 8}));
  EXPECT_EQ(version->inputs(0).dim_names(0), "batch");
  ASSERT_EQ(version->outputs_size(), 1);
  EXPECT_EQ(version->outputs(0).name(), "probabilities");
  EXPECT_EQ(version->outputs(0).shape(1), 3);
  EXPECT_DOUBLE_EQ(version->metrics().at("accuracy"), 0.93);
  EXPECT_EQ(version->lineage().training_run_id(), "run-7");

  v1::GetVersionRequest get;
  get.set_model("mlp");
  get.set_version(1);
  auto again = registry_->GetVersion(get);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->SerializeAsString(), version->SerializeAsString());
}

TEST_P(RegistryTest, TheFirstReferenceRecordedIsTheVersionsForGood) {
  ASSERT_TRUE(CreateModel("mlp").ok());
  auto version = Push("mlp", Upload(compiler::testing::MlpOnnx(3, 4, 2)));
  ASSERT_TRUE(version.ok()) << version.status();
  // Three inputs: each element is monitored by default (the batch dimension counts as 1).
  ASSERT_EQ(version->monitored_features_size(), 3);
  EXPECT_EQ(version->monitored_features(2).name(), "input[2]");
  EXPECT_FALSE(version->has_reference());
  auto model_id = Registry::FindModelId(*db_, "mlp");
  ASSERT_TRUE(model_id.ok() && model_id->has_value());

  auto record = [&](const std::string& target, int64_t samples) {
    ArtifactRecord artifact;
    artifact.model_id = **model_id;
    artifact.version = 1;
    artifact.target = target;
    artifact.module_digest = DigestFromHex(Sha256Hex(target));
    artifact.reference.emplace();
    artifact.reference->set_source(v1::ReferenceStatistics::VALIDATION_SET);
    artifact.reference->set_samples(samples);
    return store::RunInTransaction(*db_, [&](store::Transaction& tx) {
      return Registry::RecordArtifact(tx, artifact, false).status();
    });
  };
  ASSERT_TRUE(record("x86_64-v2", 8).ok());
  ASSERT_TRUE(record("aarch64-v8", 9).ok());
  v1::GetVersionRequest get;
  get.set_model("mlp");
  get.set_version(1);
  auto got = registry_->GetVersion(get);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->reference().samples(), 8);
  v1::ReferenceStatistics later;
  later.set_source(v1::ReferenceStatistics::FIRST_WINDOWS);
  bool set = true;
  ASSERT_TRUE(store::RunInTransaction(*db_, [&](store::Transaction& tx) -> absl::Status {
                ASSIGN_OR_RETURN(set, Registry::SetReference(tx, **model_id, 1, later, 0));
                return absl::OkStatus();
              }).ok());
  EXPECT_FALSE(set);
  EXPECT_EQ(registry_->GetVersion(get)->reference().source(),
            v1::ReferenceStatistics::VALIDATION_SET);
}

TEST_P(RegistryTest, MonitoredFeaturesChosenAtPushAreChecked) {
  ASSERT_TRUE(CreateModel("mlp").ok());
  const std::string digest = Upload(compiler::testing::MlpOnnx(3, 4, 2));
  v1::CreateVersionRequest r;
  r.set_model("mlp");
  r.set_onnx_digest(digest);
  r.add_monitored_features()->set_name("input.max");
  r.add_monitored_features()->set_name("input[1]");
  auto version = registry_->CreateVersion(r, "alice");
  ASSERT_TRUE(version.ok()) << version.status();
  ASSERT_EQ(version->monitored_features_size(), 2);
  EXPECT_EQ(version->monitored_features(0).kind(), v1::MonitoredFeature::MAX);
  EXPECT_EQ(version->monitored_features(1).index(), 1);
  for (const char* bad : {"input[3]", "other.mean", "input.median"}) {
    r.clear_monitored_features();
    r.add_monitored_features()->set_name(bad);
    EXPECT_EQ(registry_->CreateVersion(r, "alice").status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  v1::ListVersionsRequest list;
  list.set_model("mlp");
  EXPECT_EQ(registry_->ListVersions(list)->versions_size(), 1);  // the refused left nothing
}

TEST_P(RegistryTest, BadInputIsRefusedAndRecordsNothing) {
  ASSERT_TRUE(CreateModel("m").ok());
  auto not_onnx = Push("m", Upload("this is a text file, not a model"));
  EXPECT_EQ(not_onnx.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(not_onnx.status().message().find("not an ONNX model"), std::string::npos)
      << not_onnx.status();

  auto rejected = Push("m", Upload(compiler::testing::DanglingInputOnnx()));
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(rejected.status().message().find("checker"), std::string::npos) << rejected.status();

  auto missing_blob = Push("m", DigestFromHex(Sha256Hex("never uploaded")));
  EXPECT_EQ(missing_blob.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Push("m", "sha256:nothex").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Push("nope", Upload(compiler::testing::MlpOnnx(2, 2, 2))).status().code(),
            absl::StatusCode::kNotFound);

  v1::CreateVersionRequest r;
  r.set_model("m");
  r.set_onnx_digest(Upload(compiler::testing::MlpOnnx(2, 2, 2)));
  r.mutable_lineage()->set_parent_version(5);
  EXPECT_EQ(registry_->CreateVersion(r, "a").status().code(), absl::StatusCode::kInvalidArgument);
  (*r.mutable_metrics())["nan"] = std::nan("");
  r.mutable_lineage()->set_parent_version(0);
  EXPECT_EQ(registry_->CreateVersion(r, "a").status().code(), absl::StatusCode::kInvalidArgument);

  // None of the failures consumed a version number or left a row.
  auto sizes = registry_->Sizes();
  ASSERT_TRUE(sizes.ok());
  EXPECT_EQ(sizes->versions, 0);
  auto ok = Push("m", Upload(compiler::testing::MlpOnnx(2, 2, 2)));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->version(), 1);
}

// A pushed model is held to the compiler's limits before ONNX's checker reads it.
TEST_P(RegistryTest, HostileModelsAreRefusedAtPush) {
  ASSERT_TRUE(CreateModel("m").ok());
  struct Case {
    const char* what;
    std::string onnx;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"a name with a newline", compiler::testing::ReluOnnxWithInputName("in\nput"),
       "control character"},
      {"a name that is not UTF-8", compiler::testing::ReluOnnxWithInputName("in\xffput"),
       "not valid UTF-8"},
      {"a name of 5000 bytes", compiler::testing::ReluOnnxWithInputName(std::string(5000, 'n')),
       "bytes long"},
      {"weights in a file on the server", compiler::testing::ExternalDataOnnx("/etc/shadow"),
       "external file"},
      {"subgraphs nested 40 deep", compiler::testing::NestedSubgraphsOnnx(40), "nest deeper"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto pushed = Push("m", Upload(c.onnx));
    ASSERT_EQ(pushed.status().code(), absl::StatusCode::kInvalidArgument) << pushed.status();
    EXPECT_TRUE(absl::StrContains(pushed.status().message(), c.says)) << pushed.status();
  }
  // Names that are merely odd are kept as they are.
  auto odd = Push("m", Upload(compiler::testing::ReluOnnxWithInputName("*/ \"x\" ?\?/ 入力")));
  ASSERT_TRUE(odd.ok()) << odd.status();
  EXPECT_EQ(odd->inputs(0).name(), "*/ \"x\" ?\?/ 入力");
  v1::GetModelRequest get;
  get.set_model("m");
  EXPECT_EQ(registry_->GetModel(get)->latest_version(), 1);  // nothing else was recorded
}

TEST_P(RegistryTest, ConcurrentPushesGetDistinctConsecutiveNumbers) {
  ASSERT_TRUE(CreateModel("busy").ok());
  std::string digest = Upload(compiler::testing::MlpOnnx(4, 8, 2));
  constexpr int kThreads = 6, kPushes = 5;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<int64_t> numbers;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPushes; ++i) {
        auto v = Push("busy", digest);
        if (!v.ok()) {
          ++failures;
          continue;
        }
        std::lock_guard lock(mu);
        numbers.push_back(v->version());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  std::set<int64_t> distinct(numbers.begin(), numbers.end());
  ASSERT_EQ(distinct.size(), static_cast<size_t>(kThreads * kPushes));
  EXPECT_EQ(*distinct.begin(), 1);
  EXPECT_EQ(*distinct.rbegin(), kThreads * kPushes);
  v1::GetModelRequest get;
  get.set_model("busy");
  EXPECT_EQ(registry_->GetModel(get)->latest_version(), kThreads * kPushes);
}

TEST_P(RegistryTest, AliasesMoveWithHistory) {
  ASSERT_TRUE(CreateModel("cls").ok());
  std::string digest = Upload(compiler::testing::MlpOnnx(4, 4, 2));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Push("cls", digest).ok());

  auto alias = SetAlias("cls", "production", 1, "bob");
  ASSERT_TRUE(alias.ok()) << alias.status();
  EXPECT_EQ(alias->version(), 1);
  clock_.Advance(absl::Minutes(5));
  ASSERT_TRUE(SetAlias("cls", "production", 3, "carol").ok());
  ASSERT_TRUE(SetAlias("cls", "production", 3, "carol").ok());  // no-op, no history entry
  ASSERT_TRUE(SetAlias("cls", "canary", 2).ok());

  v1::GetAliasHistoryRequest h;
  h.set_model("cls");
  h.set_alias("production");
  auto history = registry_->GetAliasHistory(h);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->moves_size(), 2);
  EXPECT_EQ(history->moves(0).from_version(), 0);
  EXPECT_EQ(history->moves(0).to_version(), 1);
  EXPECT_EQ(history->moves(0).actor(), "bob");
  EXPECT_EQ(history->moves(1).from_version(), 1);
  EXPECT_EQ(history->moves(1).to_version(), 3);
  EXPECT_EQ(history->moves(1).actor(), "carol");
  EXPECT_EQ(history->moves(1).time().seconds() - history->moves(0).time().seconds(), 300);

  v1::GetVersionRequest by_alias;
  by_alias.set_model("cls");
  by_alias.set_alias("production");
  EXPECT_EQ(registry_->GetVersion(by_alias)->version(), 3);
  v1::GetModelRequest get;
  get.set_model("cls");
  auto model = registry_->GetModel(get);
  EXPECT_EQ(model->aliases().at("production"), 3);
  EXPECT_EQ(model->aliases().at("canary"), 2);

  EXPECT_EQ(SetAlias("cls", "production", 9).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SetAlias("cls", "42", 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SetAlias("ghost", "production", 1).status().code(), absl::StatusCode::kNotFound);
  h.set_alias("staging");
  EXPECT_EQ(registry_->GetAliasHistory(h).status().code(), absl::StatusCode::kNotFound);
  by_alias.set_alias("staging");
  EXPECT_EQ(registry_->GetVersion(by_alias).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(RegistryTest, EventsAreOrderedAndResumable) {
  ASSERT_TRUE(CreateModel("ev").ok());
  std::string digest = Upload(compiler::testing::MlpOnnx(2, 2, 2));
  ASSERT_TRUE(Push("ev", digest).ok());
  ASSERT_TRUE(Push("ev", digest).ok());
  ASSERT_TRUE(SetAlias("ev", "production", 2).ok());

  v1::ListEventsRequest r;
  auto all = registry_->ListEvents(r);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->events_size(), 4);
  std::vector<std::string> types;
  for (int i = 0; i < all->events_size(); ++i) {
    types.push_back(all->events(i).type());
    if (i > 0) {
      EXPECT_EQ(all->events(i).sequence(), all->events(i - 1).sequence() + 1);
    }
  }
  EXPECT_EQ(types, (std::vector<std::string>{"model.created", "version.created", "version.created",
                                             "alias.moved"}));
  EXPECT_EQ(all->events(2).version(), 2);
  EXPECT_EQ(all->events(3).alias(), "production");

  r.set_after_sequence(all->events(1).sequence());
  auto rest = registry_->ListEvents(r);
  ASSERT_EQ(rest->events_size(), 2);
  EXPECT_EQ(rest->events(0).sequence(), all->events(2).sequence());
}

TEST_P(RegistryTest, ListsPageThroughEverything) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(CreateModel(absl::StrCat("model-", i)).ok());
  v1::ListModelsRequest r;
  r.set_page_size(2);
  std::vector<std::string> names;
  do {
    auto page = registry_->ListModels(r);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& m : page->models()) names.push_back(m.name());
    r.set_page_token(page->next_page_token());
  } while (!r.page_token().empty());
  EXPECT_EQ(names,
            (std::vector<std::string>{"model-0", "model-1", "model-2", "model-3", "model-4"}));

  std::string digest = Upload(compiler::testing::MlpOnnx(2, 2, 2));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Push("model-0", digest).ok());
  v1::ListVersionsRequest lv;
  lv.set_model("model-0");
  lv.set_page_size(2);
  auto first = registry_->ListVersions(lv);
  ASSERT_EQ(first->versions_size(), 2);
  lv.set_page_token(first->next_page_token());
  auto second = registry_->ListVersions(lv);
  ASSERT_EQ(second->versions_size(), 1);
  EXPECT_EQ(second->versions(0).version(), 3);
  EXPECT_TRUE(second->next_page_token().empty());
  lv.set_model("nope");
  EXPECT_EQ(registry_->ListVersions(lv).status().code(), absl::StatusCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Drivers, RegistryTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::registry
