// Telemetry ingestion on SQLite and PostgreSQL: what is stored, once; what is refused, with a
// reason; how aggregates sum; cohorts, floods, drops and retention.
#include "telemetry/ingest.h"

#include <filesystem>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/latency_buckets.h"
#include "common/monitored_feature.h"
#include "common/prediction.h"
#include "common/random.h"
#include "common/signing.h"
#include "common/telemetry_window.h"
#include "common/testing/fake_clock.h"
#include "compiler/testing/onnx_models.h"
#include "fleet/testing/profiles.h"
#include "fleet/testing/test_fleet.h"
#include "gtest/gtest.h"
#include "registry/registry.h"
#include "telemetry/analysis.h"
#include "telemetry/schema.h"

namespace edgeloop::telemetry {
namespace {
namespace fs = std::filesystem;

constexpr char kModel[] = "sensor";
constexpr int64_t kWindowMs = 60'000;

class IngestTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "edgeloop-ingest-", RandomHex(6));
    fs::create_directories(dir_);
    auto fleet = fleet::testing::TestFleet::Create(
        {.driver = GetParam(), .dir = dir_, .clock = &clock_, .more_components = {&Migrations()}});
    ASSERT_TRUE(fleet.ok()) << fleet.status();
    fleet_ = std::move(*fleet);
    auto signer = crypto::SigningKey::LoadOrCreate(dir_ + "/signing.key");
    ASSERT_TRUE(signer.ok()) << signer.status();
    signer_ = std::move(*signer);
    specs_ = std::make_unique<MonitoringSpecs>(
        MonitoringOptions{.database = fleet_->db.get(), .clock = &clock_, .signer = signer_.get()});
    auto model = fleet_->AddModel(kModel, compiler::testing::MlpOnnx(4, 4, 2),
                                  {{1, {"x86_64-v1", "aarch64-v8"}}, {2, {"x86_64-v1"}}});
    ASSERT_TRUE(model.ok()) << model.status();
    model_id_ = *model;
    SetReference(1);
  }
  void TearDown() override {
    ingest_.reset();
    fleet_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void StartIngest(IngestOptions options = {}) {
    options.database = fleet_->db.get();
    options.clock = &clock_;
    options.specs = specs_.get();
    if (options.cohort_label.empty()) options.cohort_label = "site";
    ingest_ = std::make_unique<TelemetryIngest>(options);
    ingest_->Start();
  }

  // Deciles 0..10 for every monitored feature of the version: 12 bins.
  void SetReference(int64_t version) {
    auto spec = specs_->Spec(model_id_, kModel, version);
    ASSERT_TRUE(spec.ok() && spec->has_value()) << spec.status();
    v1::ReferenceStatistics r;
    r.set_source(v1::ReferenceStatistics::VALIDATION_SET);
    r.set_samples(100);
    for (const auto& f : (*spec)->features()) {
      v1::FeatureReference* ref = r.add_features();
      *ref->mutable_feature() = f.feature();
      for (int k = 0; k <= 10; ++k) ref->add_edges(k);
      for (int k = 0; k < 12; ++k) ref->add_counts(k == 0 || k == 11 ? 0 : 10);
    }
    r.set_classifier(true);
    r.add_class_counts(50);
    r.add_class_counts(50);
    for (int k = 0; k < kConfidenceBins; ++k) r.add_confidence_counts(k == 19 ? 100 : 0);
    ASSERT_TRUE(store::RunInTransaction(*fleet_->db, [&](store::Transaction& tx) {
                  return registry::Registry::SetReference(tx, model_id_, version, r, 0).status();
                }).ok());
  }

  // An x86-64-v1 device, or an aarch64-v8 one.
  std::string Device(const std::string& site, const std::string& arch = "x86_64") {
    const v1::HardwareProfile profile =
        arch == "x86_64" ? fleet::testing::Profile(
                               arch, {"cmov", "cx8", "fpu", "fxsr", "mmx", "sse", "sse2"}, 4096)
                         : fleet::testing::Pi4();
    auto id = fleet_->EnrollDevice(profile, {{"site", site}});
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  }

  // A window as an agent with version 1's spec makes it: every call in bin 3 of each feature,
  // predicted class 0 with confidence in the top bin, `labelled` labels of which all correct.
  v1::TelemetryWindow Window(int64_t start_ms, int64_t requests, int64_t labelled = 0,
                             int64_t version = 1, const std::string& target = "x86_64-v1") {
    v1::TelemetryWindow w;
    w.set_id(absl::StrCat(kModel, "/", version, "/", start_ms));
    w.set_model(kModel);
    w.set_version(version);
    w.set_module_digest(fleet::testing::TestFleet::ModuleDigest(kModel, version, target));
    w.set_start_ms(start_ms);
    w.set_end_ms(start_ms + kWindowMs);
    w.set_requests(requests);
    for (size_t k = 0; k < kLatencyBuckets; ++k) w.add_latency_counts(k == 5 ? requests : 0);
    auto spec = specs_->Spec(model_id_, kModel, version);
    for (const auto& f : (*spec)->features()) {
      v1::TelemetryWindow::Feature* out = w.add_features();
      out->set_name(f.feature().name());
      if (f.edges_size() > 0) {
        for (int k = 0; k <= f.edges_size(); ++k) out->add_counts(k == 3 ? requests : 0);
      } else {
        out->add_samples(0.5f);
      }
    }
    w.add_class_counts(requests);
    w.add_class_counts(0);
    for (int k = 0; k < kConfidenceBins; ++k) w.add_confidence_counts(k == 19 ? requests : 0);
    for (int64_t c : {labelled, int64_t{0}}) w.add_labelled(c);
    for (int64_t c : {labelled, int64_t{0}}) w.add_correct(c);
    for (int64_t c : {labelled, int64_t{0}}) w.add_predicted_labelled(c);
    return w;
  }
  // A window start a few windows back from now.
  int64_t Start(int back = 2) {
    const int64_t now = absl::ToUnixMillis(clock_.Now());
    return now - now % kWindowMs - back * kWindowMs;
  }

  absl::StatusOr<v1::ReportTelemetryResponse> Report(const std::string& device,
                                                     std::vector<v1::TelemetryWindow> windows,
                                                     int64_t dropped = 0) {
    v1::ReportTelemetryRequest r;
    r.set_format(kTelemetryFormat);
    for (auto& w : windows) *r.add_windows() = std::move(w);
    r.set_dropped_windows(dropped);
    return ingest_->Report(device, r);
  }

  std::vector<Aggregate> Aggregates(std::optional<std::string> cohort = std::nullopt) {
    auto a = WindowStore::Aggregates(*fleet_->db, model_id_, std::nullopt, cohort, 0,
                                     std::numeric_limits<int64_t>::max());
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *a : std::vector<Aggregate>{};
  }
  int64_t Requests(const std::vector<Aggregate>& aggregates) {
    int64_t n = 0;
    for (const Aggregate& a : aggregates) n += a.summary.requests();
    return n;
  }

  testing::FakeClock clock_;
  std::string dir_;
  std::unique_ptr<fleet::testing::TestFleet> fleet_;
  std::unique_ptr<crypto::SigningKey> signer_;
  std::unique_ptr<MonitoringSpecs> specs_;
  std::unique_ptr<TelemetryIngest> ingest_;
  int64_t model_id_ = 0;
};

TEST_P(IngestTest, AWindowSentTwiceIsStoredOnce) {
  StartIngest();
  const std::string device = Device("plant-1");
  const v1::TelemetryWindow w = Window(Start(), 40, 5);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto answer = Report(device, {w});
    ASSERT_TRUE(answer.ok()) << answer.status();
    ASSERT_EQ(answer->stored_size(), 1) << answer->DebugString();
    EXPECT_EQ(answer->stored(0), w.id());
    EXPECT_TRUE(answer->refused().empty());
  }
  auto raw =
      WindowStore::DeviceWindows(*fleet_->db, device, 0, std::numeric_limits<int64_t>::max(), 10);
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_EQ(raw->size(), 1u);
  EXPECT_EQ((*raw)[0].SerializeAsString(), w.SerializeAsString());
  const std::vector<Aggregate> sums = Aggregates();
  ASSERT_EQ(sums.size(), 1u);
  EXPECT_EQ(sums[0].windows, 1);
  EXPECT_EQ(sums[0].summary.requests(), 40);
  EXPECT_EQ(sums[0].summary.labelled(0), 5);
  EXPECT_EQ(sums[0].target, "x86_64-v1");
  EXPECT_EQ(sums[0].cohort, "plant-1");
  EXPECT_EQ(ingest_->counts().windows_stored, 1);
  EXPECT_EQ(ingest_->counts().windows_duplicate, 2);
  auto reports = WindowStore::Reports(*fleet_->db, device);
  ASSERT_TRUE(reports.ok() && reports->has_value());
  EXPECT_EQ((*reports)->windows_stored, 1);
}

TEST_P(IngestTest, AggregatesSumEachSeriesAndBucket) {
  StartIngest();
  const std::string a1 = Device("plant-1"), a2 = Device("plant-1"), b = Device("plant-2");
  const int64_t t = Start(3);
  ASSERT_TRUE(Report(a1, {Window(t, 10), Window(t + kWindowMs, 20)}).ok());
  ASSERT_TRUE(Report(a2, {Window(t, 30, 3)}).ok());
  ASSERT_TRUE(Report(b, {Window(t, 7), Window(t, 1000, 0, 2)}).ok());

  const std::vector<Aggregate> plant1 = Aggregates("plant-1");
  ASSERT_EQ(plant1.size(), 2u);  // two buckets
  EXPECT_EQ(plant1[0].bucket_ms, t);
  EXPECT_EQ(plant1[0].windows, 2);
  EXPECT_EQ(plant1[0].summary.requests(), 40);
  EXPECT_EQ(plant1[0].summary.labelled(0), 3);
  EXPECT_EQ(plant1[0].summary.features(0).counts(3), 40);
  EXPECT_EQ(plant1[0].summary.latency_counts(5), 40);
  EXPECT_EQ(plant1[1].summary.requests(), 20);
  const std::vector<Aggregate> plant2 = Aggregates("plant-2");
  ASSERT_EQ(plant2.size(), 2u);  // versions 1 and 2
  EXPECT_EQ(plant2[0].version, 1);
  EXPECT_EQ(plant2[0].summary.requests(), 7);
  EXPECT_EQ(plant2[1].version, 2);
  EXPECT_EQ(plant2[1].summary.requests(), 1000);
  // Version 2 has no reference: its devices send samples, which the aggregates do not keep.
  EXPECT_TRUE(plant2[1].summary.features(0).samples().empty());
}

// `requests` of the window's calls also ran on `version`, `agreed` of them agreeing.
void Shadow(v1::TelemetryWindow& w, int64_t version, int64_t requests, int64_t agreed) {
  v1::TelemetryWindow::Shadow* s = w.add_shadows();
  s->set_version(version);
  s->set_requests(requests);
  s->set_agreed(agreed);
  for (size_t b = 0; b < kLatencyBuckets; ++b) s->add_latency_counts(b == 3 ? requests : 0);
}

TEST_P(IngestTest, RefusesWhatNoAgentSendsAndStoresTheRest) {
  StartIngest();
  const std::string device = Device("plant-1");
  const std::string arm = Device("plant-1", "aarch64");
  const int64_t t = Start(20);
  struct Case {
    const char* what;
    std::function<void(v1::TelemetryWindow&)> spoil;
    Refusal why;
  };
  const std::vector<Case> cases = {
      {"unknown model", [](auto& w) { w.set_model("nope"); }, Refusal::kUnknownModel},
      {"another version's module",
       [](auto& w) {
         w.set_module_digest(fleet::testing::TestFleet::ModuleDigest(kModel, 2, "x86_64-v1"));
       },
       Refusal::kNotGiven},
      {"a module for a class the device cannot run",
       [](auto& w) {
         w.set_module_digest(fleet::testing::TestFleet::ModuleDigest(kModel, 1, "aarch64-v8"));
       },
       Refusal::kNotGiven},
      {"wrong bin count", [](auto& w) { w.mutable_features(0)->add_counts(1); }, Refusal::kInvalid},
      {"negative count", [](auto& w) { w.mutable_features(1)->set_counts(0, -5); },
       Refusal::kInvalid},
      {"absurd count", [](auto& w) { w.set_requests(int64_t{1} << 50); }, Refusal::kInvalid},
      {"more errors than calls", [](auto& w) { w.set_errors(w.requests() + 5000); },
       Refusal::kInvalid},
      {"latency buckets missing", [](auto& w) { w.mutable_latency_counts()->RemoveLast(); },
       Refusal::kInvalid},
      {"feature not monitored", [](auto& w) { w.mutable_features(0)->set_name("other"); },
       Refusal::kInvalid},
      {"NaN sample", [](auto& w) { w.mutable_features(0)->add_samples(std::nanf("")); },
       Refusal::kInvalid},
      {"more correct than labelled", [](auto& w) { w.set_correct(0, 9000); }, Refusal::kInvalid},
      {"id not the window's", [](auto& w) { w.set_id("sensor/1/5"); }, Refusal::kInvalid},
      {"ends as it starts", [](auto& w) { w.set_end_ms(w.start_ms()); }, Refusal::kInvalid},
      {"longer than a day", [](auto& w) { w.set_end_ms(w.start_ms() + 25 * 3600 * 1000LL); },
       Refusal::kInvalid},
      {"not on a whole second",
       [](auto& w) {
         w.set_start_ms(w.start_ms() + 1);
         w.set_id(absl::StrCat(kModel, "/1/", w.start_ms()));
       },
       Refusal::kInvalid},
      {"from the future",
       [this](auto& w) {
         w.set_start_ms(Start(-60));
         w.set_end_ms(w.start_ms() + kWindowMs);
         w.set_id(absl::StrCat(kModel, "/1/", w.start_ms()));
       },
       Refusal::kStale},
      {"a shadow agreeing more than it ran",
       [](auto& w) { Shadow(w, 2, 5, 6); }, Refusal::kInvalid},
      {"a shadow of its own version", [](auto& w) { Shadow(w, 1, 5, 5); }, Refusal::kInvalid},
      {"a shadow of more calls than the window's",
       [](auto& w) { Shadow(w, 2, w.requests() + 5000, 0); }, Refusal::kInvalid},
      {"one candidate shadowed twice",
       [](auto& w) {
         Shadow(w, 2, 1, 1);
         Shadow(w, 2, 1, 1);
       },
       Refusal::kInvalid},
      {"past the retention",
       [](auto& w) {
         w.set_start_ms(w.start_ms() - 8 * 24 * 3600 * 1000LL);
         w.set_end_ms(w.start_ms() + kWindowMs);
         w.set_id(absl::StrCat(kModel, "/1/", w.start_ms()));
       },
       Refusal::kStale},
  };
  // Good ones among them: a whole window, and one cut short (its agent stopped inside it).
  std::vector<v1::TelemetryWindow> windows = {Window(t, 10), Window(t - kWindowMs, 10)};
  Shadow(windows[0], 2, 5, 4);  // a candidate run beside it, as the agent counts one
  windows[1].set_end_ms(windows[1].start_ms() + kWindowMs / 3);
  constexpr size_t kGood = 2;
  for (size_t i = 0; i < cases.size(); ++i) {
    v1::TelemetryWindow w = Window(t + static_cast<int64_t>(i + 1) * kWindowMs, 10);
    cases[i].spoil(w);
    windows.push_back(w);
  }
  auto answer = Report(device, windows);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->stored_size(), 2) << answer->DebugString();
  EXPECT_EQ(answer->stored(0), windows[0].id());
  EXPECT_EQ(answer->stored(1), windows[1].id());
  ASSERT_EQ(answer->refused_size(), static_cast<int>(cases.size()));
  std::array<int64_t, static_cast<size_t>(Refusal::kCount)> expected{};
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(answer->refused(static_cast<int>(i)).id(), windows[i + kGood].id().substr(0, 200))
        << cases[i].what;
    EXPECT_FALSE(answer->refused(static_cast<int>(i)).reason().empty()) << cases[i].what;
    ++expected[static_cast<size_t>(cases[i].why)];
  }
  for (size_t r = 0; r < expected.size(); ++r) {
    EXPECT_EQ(ingest_->counts().windows_refused[r], expected[r]) << RefusalLabel(Refusal(r));
  }
  EXPECT_EQ(Requests(Aggregates()), 20);  // only the good windows reached the aggregates
  auto reports = WindowStore::Reports(*fleet_->db, device);
  ASSERT_TRUE(reports.ok() && reports->has_value());
  EXPECT_EQ((*reports)->windows_refused, static_cast<int64_t>(cases.size()));
  EXPECT_FALSE((*reports)->last_refusal.empty());

  // The aarch64 module is the other device's to report on.
  auto arm_answer = Report(arm, {Window(t, 3, 0, 1, "aarch64-v8")});
  ASSERT_TRUE(arm_answer.ok()) << arm_answer.status();
  EXPECT_EQ(arm_answer->stored_size(), 1);
}

TEST_P(IngestTest, RefusesUnknownFormatsAndOversizedReports) {
  StartIngest();
  const std::string device = Device("plant-1");
  v1::ReportTelemetryRequest r;
  r.set_format(kTelemetryFormat + 1);
  *r.add_windows() = Window(Start(), 1);
  EXPECT_EQ(ingest_->Report(device, r).status().code(), absl::StatusCode::kFailedPrecondition);
  r.set_format(kTelemetryFormat);
  for (int k = 0; k < kMaxReportWindows; ++k) *r.add_windows() = Window(Start(), 1);
  EXPECT_EQ(ingest_->Report(device, r).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Report("no-such-device", {Window(Start(), 1)}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(IngestTest, CohortsPastTheCapShareOneSeries) {
  IngestOptions options;
  options.max_cohorts = 2;
  StartIngest(options);
  const int64_t t = Start();
  for (const char* site : {"a", "b", "c", "d"}) {
    ASSERT_TRUE(Report(Device(site), {Window(t, 1)}).ok());
  }
  auto cohorts = WindowStore::Cohorts(*fleet_->db);
  ASSERT_TRUE(cohorts.ok());
  EXPECT_EQ(*cohorts, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Requests(Aggregates(std::string(kOtherCohort))), 2);
  EXPECT_EQ(Requests(Aggregates("a")), 1);
  EXPECT_EQ(Requests(Aggregates("c")), 0);
}

TEST_P(IngestTest, AFloodingDeviceIsThrottledAndOthersAreNot) {
  IngestOptions options;
  options.device_windows_per_minute = 2;
  options.device_burst_windows = 3;
  StartIngest(options);
  const std::string flood = Device("plant-1"), quiet = Device("plant-1");
  ASSERT_TRUE(Report(flood, {Window(Start(3), 1), Window(Start(2), 1), Window(Start(1), 1)}).ok());
  EXPECT_EQ(Report(flood, {Window(Start(4), 1)}).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Report(quiet, {Window(Start(4), 1)}).ok());
  clock_.Advance(absl::Seconds(30));  // one window's allowance back
  EXPECT_TRUE(Report(flood, {Window(Start(4), 1)}).ok());
  EXPECT_EQ(ingest_->counts().reports_throttled, 1);
}

TEST_P(IngestTest, DropsADeviceReportsAreCounted) {
  StartIngest();
  const std::string device = Device("plant-1");
  auto answer = Report(device, {}, 7);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->dropped_counted(), 7);
  answer = Report(device, {Window(Start(), 1)}, 2);
  ASSERT_TRUE(answer.ok()) << answer.status();
  auto reports = WindowStore::Reports(*fleet_->db, device);
  ASSERT_TRUE(reports.ok() && reports->has_value());
  EXPECT_EQ((*reports)->windows_dropped, 9);
  EXPECT_EQ(ingest_->counts().windows_dropped_by_devices, 9);
}

TEST_P(IngestTest, ConcurrentReportsLoseNothing) {
  StartIngest();
  constexpr int kDevices = 6, kWindows = 20;
  std::vector<std::string> devices;
  for (int d = 0; d < kDevices; ++d) devices.push_back(Device(d % 2 ? "odd" : "even"));
  const int64_t t = Start(kWindows + 1);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int d = 0; d < kDevices; ++d) {
    threads.emplace_back([&, d] {
      for (int k = 0; k < kWindows; ++k) {
        // Every window twice, as a device whose answer was lost sends it.
        for (int again = 0; again < 2; ++again) {
          auto a = Report(devices[d], {Window(t + k * kWindowMs, d + 1)});
          if (!a.ok() || a->stored_size() != 1) ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(Requests(Aggregates()), kWindows * (kDevices * (kDevices + 1) / 2));
  EXPECT_EQ(ingest_->counts().windows_stored, kDevices * kWindows);
  EXPECT_GT(ingest_->counts().batches, 0);
}

TEST_P(IngestTest, RetentionDeletesOldRawWindowsBeforeAggregates) {
  StartIngest();
  const std::string device = Device("plant-1");
  ASSERT_TRUE(Report(device, {Window(Start(), 5)}).ok());
  const int64_t now = absl::ToUnixMillis(clock_.Now());
  auto pruned = [&](int64_t raw_before, int64_t sums_before) {
    absl::StatusOr<int64_t> n;
    EXPECT_TRUE(store::RunInTransaction(*fleet_->db, [&](store::Transaction& tx) {
                  n = WindowStore::Prune(tx, raw_before, sums_before);
                  return n.status();
                }).ok());
    return n.ok() ? *n : -1;
  };
  EXPECT_EQ(pruned(now - 3600'000, now - 3600'000), 0);
  EXPECT_EQ(pruned(now, now - 3600'000), 1);  // the raw window only
  EXPECT_EQ(Requests(Aggregates()), 5);
  EXPECT_EQ(pruned(now, now), 1);
  EXPECT_TRUE(Aggregates().empty());
}

TEST_P(IngestTest, AVersionWithoutAReferenceTakesOneFromItsFirstWindows) {
  IngestOptions options;
  options.reference_min_samples = 60;
  options.reference_every = absl::ZeroDuration();
  std::promise<std::pair<int64_t, int64_t>> taken;
  options.on_reference = [&taken](int64_t model_id, int64_t version) {
    taken.set_value({model_id, version});
  };
  StartIngest(options);
  auto provisional = specs_->Spec(model_id_, kModel, 2);
  ASSERT_TRUE(provisional.ok() && provisional->has_value());
  ASSERT_EQ((*provisional)->reference_source(), v1::ReferenceStatistics::SOURCE_UNSPECIFIED);
  const int per_window = (*provisional)->sample_values();
  ASSERT_GE(per_window, 2);
  // Two devices, each a window of raw values 0, 1, 2, ... (k-th device offset by half).
  std::vector<double> sent;
  const int64_t t = Start(3);
  for (int d = 0; d < 2; ++d) {
    v1::TelemetryWindow w = Window(t, per_window, 0, 2);
    for (auto& f : *w.mutable_features()) {
      f.clear_samples();
      for (int k = 0; k < per_window; ++k) f.add_samples(static_cast<float>(k) + 0.5f * d);
    }
    for (int k = 0; k < per_window; ++k) sent.push_back(k + 0.5 * d);
    auto answer = Report(Device("plant-1"), {w});
    ASSERT_TRUE(answer.ok() && answer->stored_size() == 1) << answer.status();
  }
  ASSERT_GE(static_cast<int>(sent.size()), options.reference_min_samples);
  // The writer takes it after the batch that brought enough, and says so.
  std::future<std::pair<int64_t, int64_t>> told = taken.get_future();
  ASSERT_EQ(told.wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "no reference after 10 s";
  EXPECT_EQ(told.get(), std::make_pair(model_id_, int64_t{2}));
  auto stored = registry::Registry::Reference(*fleet_->db, model_id_, 2);
  ASSERT_TRUE(stored.ok()) << stored.status();
  const std::optional<v1::ReferenceStatistics> reference = *stored;
  ASSERT_TRUE(reference.has_value()) << "no reference after 10 s";
  EXPECT_EQ(reference->source(), v1::ReferenceStatistics::FIRST_WINDOWS);
  EXPECT_EQ(reference->samples(), 2 * per_window);
  ASSERT_EQ(reference->features_size(), (*provisional)->features_size());
  const std::vector<double> edges = DecileEdges(sent);
  EXPECT_EQ(std::vector<double>(reference->features(0).edges().begin(),
                                reference->features(0).edges().end()),
            edges);
  int64_t counted = 0;
  for (int64_t c : reference->features(0).counts()) counted += c;
  EXPECT_EQ(counted, static_cast<int64_t>(sent.size()));
  EXPECT_TRUE(reference->classifier());
  EXPECT_EQ(reference->class_counts(0), 2 * per_window);

  // Devices get the edges with the next spec (the provisional one is forgotten at once, with
  // no clock moving on); one still counting under the old spec sends raw values for a window
  // or two more, and is not refused for it.
  auto final_spec = specs_->Spec(model_id_, kModel, 2);
  ASSERT_TRUE(final_spec.ok() && final_spec->has_value());
  EXPECT_EQ((*final_spec)->reference_source(), v1::ReferenceStatistics::FIRST_WINDOWS);
  EXPECT_EQ((*final_spec)->features(0).edges_size(), 11);
  const std::string late = Device("plant-2");
  v1::TelemetryWindow binned = Window(t + kWindowMs, 3, 0, 2);  // on the new spec's edges
  v1::TelemetryWindow raw = binned;
  raw.set_start_ms(t + 2 * kWindowMs);
  raw.set_end_ms(raw.start_ms() + kWindowMs);
  raw.set_id(TelemetryWindowId(kModel, 2, raw.start_ms()));
  for (auto& f : *raw.mutable_features()) {
    f.clear_counts();
    f.add_samples(1.0f);
  }
  auto answer = Report(late, {binned, raw});
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->stored_size(), 2) << answer->DebugString();
}

// An operator's thresholds for one model judge its summaries, and the answer says which were
// in force; out-of-range ones are refused and change nothing.
TEST_P(IngestTest, AModelsOwnDriftThresholdsJudgeItsSummaries) {
  StartIngest();
  // 50 calls, every one in a bin the reference gives 10 %: a shift, but fewer values than the
  // default minimum of 100 that a histogram needs to be judged at all.
  ASSERT_TRUE(Report(Device("plant-1"), {Window(Start(3), 50)}).ok());
  TelemetryQueryOptions options;
  options.database = fleet_->db.get();
  options.clock = &clock_;
  TelemetryQueries queries(options);
  v1::GetModelTelemetryRequest request;
  request.set_model(kModel);
  request.set_version(1);
  request.set_from_ms(1);
  auto judged = [&]() -> v1::TelemetrySummary {
    auto answer = queries.Model(request);
    EXPECT_TRUE(answer.ok() && answer->versions_size() == 1) << answer.status();
    if (!answer.ok() || answer->versions().empty()) return {};
    EXPECT_EQ(answer->drift().min_count(), queries.DriftSettings(kModel)->effective().min_count());
    return answer->versions(0).total();
  };
  v1::TelemetrySummary s = judged();
  ASSERT_GT(s.features_size(), 0);
  EXPECT_TRUE(s.features(0).too_few());
  EXPECT_EQ(s.drifted_features(), 0);

  v1::SetDriftSettingsRequest set;
  set.set_model(kModel);
  set.mutable_overrides()->set_min_count(20);
  set.mutable_overrides()->set_psi(0.5);
  auto settings = queries.SetDriftSettings(set);
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(settings->effective().min_count(), 20);
  EXPECT_EQ(settings->effective().psi(), 0.5);
  EXPECT_EQ(settings->effective().jensen_shannon(), 0.1);  // not set: the default
  EXPECT_EQ(settings->overrides().jensen_shannon(), 0);
  EXPECT_EQ(settings->defaults().min_count(), 100);
  s = judged();
  EXPECT_FALSE(s.features(0).too_few());
  EXPECT_TRUE(s.features(0).drifted());
  EXPECT_EQ(s.drifted_features(), s.features_size());

  using Change = void (*)(v1::DriftSettings&);
  for (Change bad :
       std::initializer_list<Change>{[](v1::DriftSettings& o) { o.set_psi(-1); },
                                     [](v1::DriftSettings& o) { o.set_psi(std::nan("")); },
                                     [](v1::DriftSettings& o) { o.set_jensen_shannon(1.5); },
                                     [](v1::DriftSettings& o) { o.set_ks_alpha(0.9); },
                                     [](v1::DriftSettings& o) { o.set_min_count(-5); }}) {
    v1::SetDriftSettingsRequest wrong;
    wrong.set_model(kModel);
    bad(*wrong.mutable_overrides());
    EXPECT_EQ(queries.SetDriftSettings(wrong).status().code(), absl::StatusCode::kInvalidArgument)
        << wrong.DebugString();
  }
  EXPECT_EQ(queries.DriftSettings(kModel)->effective().min_count(), 20);
  set.set_model("no-such-model");
  EXPECT_EQ(queries.SetDriftSettings(set).status().code(), absl::StatusCode::kNotFound);

  // All unset: the defaults again (and no row left behind).
  set.set_model(kModel);
  set.clear_overrides();
  ASSERT_TRUE(queries.SetDriftSettings(set).ok());
  EXPECT_EQ(queries.DriftSettings(kModel)->effective().min_count(), 100);
  EXPECT_TRUE(judged().features(0).too_few());
}

INSTANTIATE_TEST_SUITE_P(Drivers, IngestTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::telemetry
