// The device side of telemetry, alone: monitoring specs checked as the agent receives them,
// the per-thread window counters, the prediction ring Feedback reads and the on-disk spool.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "agent/agent_metrics.h"
#include "agent/device_telemetry.h"
#include "agent/monitoring_spec.h"
#include "agent/prediction_log.h"
#include "agent/telemetry_spool.h"
#include "agent/window_counters.h"
#include "common/latency_buckets.h"
#include "common/random.h"
#include "common/signing.h"
#include "common/testing/fake_clock.h"
#include "gtest/gtest.h"

namespace edgeloop::agent {
namespace {

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/" + name + "-" + RandomHex(4);
  std::filesystem::create_directories(dir);
  return dir;
}

// A module signature without a module: input "x" [1, 4], output "p" [1, 3].
struct FakeModule {
  int64_t in_dims[2] = {1, 4};
  int64_t out_dims[2] = {1, 3};
  elm_tensor input{"x", ELM_F32, 2, in_dims};
  elm_tensor output{"p", ELM_F32, 2, out_dims};
  elm_module module{};
  FakeModule() {
    module.num_inputs = 1;
    module.num_outputs = 1;
    module.inputs = &input;
    module.outputs = &output;
  }
};

// Features x[0] and x.mean on edges 0, 1, ..., 10 (12 bins).
v1::MonitoringSpec Spec(int window_seconds = 60) {
  v1::MonitoringSpec spec;
  spec.set_model("m");
  spec.set_version(3);
  spec.set_window_seconds(window_seconds);
  spec.set_reference_source(v1::ReferenceStatistics::VALIDATION_SET);
  for (const char* name : {"x[0]", "x.mean"}) {
    v1::MonitoringSpec::Feature* f = spec.add_features();
    f->mutable_feature()->set_name(name);
    f->mutable_feature()->set_input("x");
    f->mutable_feature()->set_kind(std::string(name) == "x[0]" ? v1::MonitoredFeature::ELEMENT
                                                               : v1::MonitoredFeature::MEAN);
    for (int e = 0; e <= 10; ++e) f->add_edges(e);
  }
  return spec;
}

int64_t Sum(const google::protobuf::RepeatedField<int64_t>& counts) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  return total;
}

class SignedSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = crypto::SigningKey::LoadOrCreate(FreshDir("key") + "/signing.pem");
    ASSERT_TRUE(key.ok()) << key.status();
    key_ = *std::move(key);
  }
  v1::ModuleRef Ref(const v1::MonitoringSpec& spec) {
    v1::ModuleRef ref;
    ref.set_model("m");
    ref.set_version(3);
    ref.set_monitoring(spec.SerializeAsString());
    ref.set_monitoring_signature(*key_->Sign(crypto::MonitoringSpecStatement(ref.monitoring())));
    return ref;
  }
  std::unique_ptr<crypto::SigningKey> key_;
};

TEST_F(SignedSpecTest, ASpecIsTrustedOnlyAsSignedForItsVersion) {
  const std::string pem = key_->public_key_pem();
  auto good = VerifyMonitoringSpec(Ref(Spec()), pem);
  ASSERT_TRUE(good.ok()) << good.status();
  ASSERT_TRUE(good->has_value());
  EXPECT_EQ((*good)->features_size(), 2);

  v1::ModuleRef none;
  none.set_model("m");
  EXPECT_FALSE(VerifyMonitoringSpec(none, pem)->has_value());

  v1::ModuleRef tampered = Ref(Spec());
  tampered.mutable_monitoring()->back() ^= 1;
  EXPECT_EQ(VerifyMonitoringSpec(tampered, pem).status().code(),
            absl::StatusCode::kPermissionDenied);
  // A signature over the bare bytes (another statement) does not pass for a spec's.
  v1::ModuleRef bare = Ref(Spec());
  bare.set_monitoring_signature(*key_->Sign(bare.monitoring()));
  EXPECT_EQ(VerifyMonitoringSpec(bare, pem).status().code(), absl::StatusCode::kPermissionDenied);

  // Signed, but for another version than the module it came with.
  v1::ModuleRef other = Ref(Spec());
  other.set_version(4);
  EXPECT_EQ(VerifyMonitoringSpec(other, pem).status().code(), absl::StatusCode::kInvalidArgument);

  v1::MonitoringSpec unsorted = Spec();
  unsorted.mutable_features(1)->set_edges(3, -1);
  auto refused = VerifyMonitoringSpec(Ref(unsorted), pem);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("x.mean"), std::string::npos) << refused.status();

  v1::MonitoringSpec no_window = Spec();
  no_window.set_window_seconds(0);
  EXPECT_EQ(VerifyMonitoringSpec(Ref(no_window), pem).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WindowCountersTest, AWindowCountsWhatItsCallsSaw) {
  FakeModule fake;
  const absl::Time start = absl::FromUnixSeconds(1'700'000'040);  // 1'700'000'040 = 60 * k
  WindowCounters counters(Spec(), "digest", fake.module, start + absl::Seconds(5));
  EXPECT_EQ(counters.window_end(), start + absl::Seconds(60));
  ASSERT_TRUE(counters.classifier());

  // x = {2.5, 0, 0, 0}: x[0] in bin 3 ([2, 3)), mean 0.625 in bin 1 ([0, 1)); class 2.
  const float x[4] = {2.5f, 0, 0, 0};
  const float p[3] = {0.1f, 0.15f, 0.75f};
  const void* in[1] = {x};
  void* out[1] = {const_cast<float*>(p)};
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(counters.Record(in, out, absl::Microseconds(30), true), 2);
  }
  EXPECT_EQ(counters.Record(in, out, absl::Microseconds(30), false), -1);
  counters.RecordLabel(2, 2);
  counters.RecordLabel(2, 0);
  counters.RecordLateLabel();

  EXPECT_FALSE(counters.CloseIfDue(start + absl::Seconds(59)).has_value());
  std::optional<v1::TelemetryWindow> w = counters.CloseIfDue(start + absl::Seconds(61));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->id(), absl::StrCat("m/3/", absl::ToUnixMillis(start)));
  EXPECT_EQ(w->start_ms(), absl::ToUnixMillis(start));
  EXPECT_EQ(w->end_ms(), absl::ToUnixMillis(start) + 60'000);
  EXPECT_EQ(w->module_digest(), "digest");
  EXPECT_EQ(w->requests(), 6);
  EXPECT_EQ(w->errors(), 1);
  ASSERT_EQ(w->latency_counts_size(), static_cast<int>(kLatencyBuckets));
  EXPECT_EQ(w->latency_counts(static_cast<int>(LatencyBucket(30))), 6);
  ASSERT_EQ(w->features_size(), 2);
  EXPECT_EQ(w->features(0).name(), "x[0]");
  ASSERT_EQ(w->features(0).counts_size(), 12);
  EXPECT_EQ(w->features(0).counts(3), 5);
  EXPECT_EQ(Sum(w->features(0).counts()), 5);  // the failed call is not binned
  EXPECT_EQ(w->features(1).counts(1), 5);
  EXPECT_EQ(w->features(0).samples_size(), 0);  // edges given: no raw values
  ASSERT_EQ(w->class_counts_size(), 3);
  EXPECT_EQ(w->class_counts(2), 5);
  ASSERT_EQ(w->confidence_counts_size(), 20);
  EXPECT_EQ(w->confidence_counts(15), 5);  // 0.75 is in [0.75, 0.80)
  EXPECT_EQ(w->labelled(2), 1);
  EXPECT_EQ(w->labelled(0), 1);
  EXPECT_EQ(w->correct(2), 1);
  EXPECT_EQ(w->correct(0), 0);
  EXPECT_EQ(w->predicted_labelled(2), 2);
  EXPECT_EQ(w->late_labels(), 1);

  // The next window starts empty; with nothing in it, nothing is sent.
  EXPECT_EQ(counters.window_end(), start + absl::Seconds(120));
  EXPECT_FALSE(counters.CloseIfDue(start + absl::Seconds(121)).has_value());
}

TEST(WindowCountersTest, WithoutAReferenceItSamplesRawValues) {
  FakeModule fake;
  v1::MonitoringSpec spec = Spec();
  spec.set_reference_source(v1::ReferenceStatistics::SOURCE_UNSPECIFIED);
  for (auto& f : *spec.mutable_features()) f.clear_edges();
  spec.set_sample_values(4);
  const absl::Time start = absl::FromUnixSeconds(1'700'000'040);
  WindowCounters counters(spec, "d", fake.module, start);
  const float p[3] = {0.1f, 0.15f, 0.75f};
  void* out[1] = {const_cast<float*>(p)};
  for (int k = 0; k < 10; ++k) {
    const float x[4] = {static_cast<float>(k), 0, 0, 0};
    const void* in[1] = {x};
    counters.Record(in, out, absl::Microseconds(1), true);
  }
  auto w = counters.CloseIfDue(start + absl::Seconds(60));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->features(0).counts_size(), 0);
  ASSERT_EQ(w->features(0).samples_size(), 4);  // at most sample_values per window
  EXPECT_EQ(w->features(0).samples(0), 0.0f);
  EXPECT_EQ(w->features(0).samples(3), 3.0f);
}

// Calls on several threads while another closes windows as fast as it can: every call is
// counted in exactly one window.
TEST(WindowCountersTest, CallsRacingWithCloseAreCountedOnce) {
  FakeModule fake;
  testing::FakeClock clock;
  WindowCounters counters(Spec(1), "d", fake.module, clock.Now());
  const float x[4] = {2.5f, 0, 0, 0};
  const float p[3] = {0.1f, 0.15f, 0.75f};
  constexpr int kThreads = 4, kCalls = 20000;
  std::atomic<int> running{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      const void* in[1] = {x};
      void* out[1] = {const_cast<float*>(p)};
      for (int k = 0; k < kCalls; ++k) counters.Record(in, out, absl::Microseconds(3), true);
      --running;
    });
  }
  int64_t requests = 0, x0 = 0, classes = 0;
  auto take = [&](const v1::TelemetryWindow& w) {
    requests += w.requests();
    x0 += Sum(w.features(0).counts());
    classes += Sum(w.class_counts());
  };
  while (running > 0) {
    clock.Advance(absl::Seconds(1));
    if (auto w = counters.CloseIfDue(clock.Now())) take(*w);
  }
  for (auto& t : threads) t.join();
  clock.Advance(absl::Seconds(1));
  if (auto w = counters.CloseIfDue(clock.Now())) take(*w);
  EXPECT_EQ(requests, kThreads * kCalls);
  EXPECT_EQ(x0, kThreads * kCalls);
  EXPECT_EQ(classes, kThreads * kCalls);
}

TEST(PredictionLogTest, ARequestIdFindsItsPredictionUntilItsSlotIsReused) {
  PredictionLog log(64);
  const absl::Time at = absl::FromUnixSeconds(1'700'000'000);
  const std::string id = log.Record({7, 2, at});
  ASSERT_EQ(id.size(), 24u);
  auto found = log.Find(id);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->counters, 7u);
  EXPECT_EQ(found->predicted, 2);
  EXPECT_EQ(found->at, at);
  EXPECT_FALSE(log.Find("not an id").has_value());
  EXPECT_FALSE(log.Find(std::string(24, 'g')).has_value());
  // Another agent run (another salt) never matches.
  PredictionLog other(64);
  EXPECT_FALSE(other.Find(id).has_value());
  // The ring moves on: on this thread's shard the slot is reused after capacity / 16 calls.
  for (int k = 0; k < 64; ++k) log.Record({1, 0, at});
  EXPECT_FALSE(log.Find(id).has_value());
}

v1::TelemetryWindow Window(const std::string& id, int64_t requests, int filler_bytes = 0) {
  v1::TelemetryWindow w;
  w.set_id(id);
  w.set_model("m");
  w.set_requests(requests);
  w.set_end_ms(1000);
  for (int k = 0; k < 12; ++k) w.add_latency_counts(k == 3 ? requests : 0);
  if (filler_bytes > 0) w.set_module_digest(std::string(filler_bytes, 'd'));
  return w;
}

TEST(TelemetrySpoolTest, WindowsSurviveARestartUntilAcknowledged) {
  const std::string dir = FreshDir("spool");
  {
    auto spool = TelemetrySpool::Open(dir, 1 << 20);
    ASSERT_TRUE(spool.ok()) << spool.status();
    ASSERT_TRUE((*spool)->Append(Window("a", 1)).ok());
    ASSERT_TRUE((*spool)->Append(Window("b", 2)).ok());
  }
  auto spool = TelemetrySpool::Open(dir, 1 << 20);
  ASSERT_TRUE(spool.ok());
  std::vector<v1::TelemetryWindow> batch = (*spool)->Batch(10, 1 << 20);
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].id(), "a");  // oldest first
  EXPECT_EQ(batch[1].id(), "b");
  EXPECT_EQ((*spool)->Batch(1, 1 << 20).size(), 1u);
  ASSERT_TRUE((*spool)->Acknowledge({"a"}, 0).ok());
  batch = (*spool)->Batch(10, 1 << 20);
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].id(), "b");
}

TEST(TelemetrySpoolTest, PastTheCapTheOldestAreDroppedAndCounted) {
  const std::string dir = FreshDir("spool-cap");
  auto spool = TelemetrySpool::Open(dir, 3000);
  ASSERT_TRUE(spool.ok());
  for (int k = 0; k < 5; ++k) {
    ASSERT_TRUE((*spool)->Append(Window(absl::StrCat("w", k), k, 900)).ok());
  }
  EXPECT_LE((*spool)->bytes(), 3000);
  EXPECT_EQ((*spool)->windows(), 3u);
  EXPECT_EQ((*spool)->dropped(), 2);
  EXPECT_EQ((*spool)->Batch(10, 1 << 20)[0].id(), "w2");
  ASSERT_TRUE((*spool)->Append(Window("huge", 1, 4000)).ok());  // larger than the cap itself
  EXPECT_EQ((*spool)->dropped(), 3);
  // The count outlives a restart, and goes once the server has been told.
  spool = TelemetrySpool::Open(dir, 3000);
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ((*spool)->dropped(), 3);
  ASSERT_TRUE((*spool)->Acknowledge({}, 3).ok());
  EXPECT_EQ((*spool)->dropped(), 0);
}

TEST(AgentMetricsTest, ModuleCountersFollowWhatIsLoaded) {
  AgentMetrics metrics;
  const std::pair<std::string, int64_t> kws1{"kws", 1};
  metrics.SetModules({{kws1, {.calls = 5, .errors = 1, .run_seconds = 0.5}}});
  EXPECT_TRUE(absl::StrContains(
      metrics.Render(), "edgeloop_agent_model_calls_total{model=\"kws\",version=\"1\"} 5\n"));
  metrics.SetModules({{kws1, {.calls = 9, .errors = 1, .run_seconds = 0.9}}});
  EXPECT_TRUE(absl::StrContains(
      metrics.Render(), "edgeloop_agent_model_calls_total{model=\"kws\",version=\"1\"} 9\n"));
  // Loaded anew: the counts start again, as a counter reset.
  metrics.SetModules({{kws1, {.calls = 2, .errors = 0, .run_seconds = 0.1}}});
  const std::string reset = metrics.Render();
  EXPECT_TRUE(
      absl::StrContains(reset, "edgeloop_agent_model_calls_total{model=\"kws\",version=\"1\"} 2\n"))
      << reset;
  EXPECT_TRUE(absl::StrContains(
      reset, "edgeloop_agent_model_errors_total{model=\"kws\",version=\"1\"} 0\n"));
  metrics.SetModules({});  // unloaded
  EXPECT_FALSE(absl::StrContains(metrics.Render(), "edgeloop_agent_model_calls_total{"));
}

TEST(TelemetrySpoolTest, AWindowThatCannotBeSentIsDiscardedAndCountedAsDropped) {
  const std::string dir = FreshDir("spool-discard");
  auto spool = TelemetrySpool::Open(dir, 1 << 20);
  ASSERT_TRUE(spool.ok());
  ASSERT_TRUE((*spool)->Append(Window("a", 1, 100)).ok());
  ASSERT_TRUE((*spool)->Append(Window("b", 2, 100)).ok());
  ASSERT_TRUE((*spool)->Discard({"a", "unknown"}).ok());
  EXPECT_EQ((*spool)->windows(), 1u);
  EXPECT_EQ((*spool)->dropped(), 1);
  spool = TelemetrySpool::Open(dir, 1 << 20);  // both outlive a restart
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ((*spool)->dropped(), 1);
  ASSERT_EQ((*spool)->Batch(10, 1 << 20).size(), 1u);
  EXPECT_EQ((*spool)->Batch(10, 1 << 20)[0].id(), "b");
}

TEST(TelemetrySpoolTest, ACorruptWindowIsDroppedAndTheRestKept) {
  const std::string dir = FreshDir("spool-corrupt");
  {
    auto spool = TelemetrySpool::Open(dir, 1 << 20);
    ASSERT_TRUE((*spool)->Append(Window("a", 1)).ok());
    ASSERT_TRUE((*spool)->Append(Window("b", 2)).ok());
  }
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".window") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 2u);
  std::ofstream(files[0], std::ios::trunc) << "\xff\xff\xff";  // "a", garbled by the disk
  std::ofstream(dir + "/000.window.tmp-1234") << "half";       // a write a kill -9 cut short
  auto spool = TelemetrySpool::Open(dir, 1 << 20);
  ASSERT_TRUE(spool.ok()) << spool.status();
  auto batch = (*spool)->Batch(10, 1 << 20);
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].id(), "b");
  EXPECT_EQ((*spool)->dropped(), 1);
  EXPECT_FALSE(std::filesystem::exists(dir + "/000.window.tmp-1234"));
}

// An agent restarted inside a window sends that window once, with both parts.
TEST(TelemetrySpoolTest, TheSameWindowAgainIsMergedIntoIt) {
  auto spool = TelemetrySpool::Open(FreshDir("spool-merge"), 1 << 20);
  ASSERT_TRUE((*spool)->Append(Window("m/3/0", 2)).ok());
  v1::TelemetryWindow later = Window("m/3/0", 5);
  later.set_end_ms(2000);
  ASSERT_TRUE((*spool)->Append(later).ok());
  auto batch = (*spool)->Batch(10, 1 << 20);
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].requests(), 7);
  EXPECT_EQ(batch[0].latency_counts(3), 7);
  EXPECT_EQ(batch[0].end_ms(), 2000);
}

}  // namespace
}  // namespace edgeloop::agent
