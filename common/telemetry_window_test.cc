#include "common/telemetry_window.h"

#include "gtest/gtest.h"

namespace edgeloop {
namespace {

v1::TelemetryWindow Part(int64_t start, int64_t requests, std::vector<float> samples) {
  v1::TelemetryWindow w;
  w.set_start_ms(start);
  w.set_end_ms(start + 1000);
  w.set_requests(requests);
  for (int64_t c : {requests, int64_t{0}}) w.add_latency_counts(c);
  v1::TelemetryWindow::Feature* f = w.add_features();
  f->set_name("x");
  f->add_counts(requests);
  f->add_counts(1);
  for (float s : samples) f->add_samples(s);
  return w;
}

TEST(MergeWindowTest, AddsCountsOnceIntoAnEmptySum) {
  v1::TelemetryWindow sum;
  MergeWindow(sum, Part(5000, 3, {}), 0);
  MergeWindow(sum, Part(4000, 4, {}), 0);
  EXPECT_EQ(sum.start_ms(), 4000);
  EXPECT_EQ(sum.end_ms(), 6000);
  EXPECT_EQ(sum.requests(), 7);
  ASSERT_EQ(sum.latency_counts_size(), 2);
  EXPECT_EQ(sum.latency_counts(0), 7);
  ASSERT_EQ(sum.features_size(), 1);
  EXPECT_EQ(sum.features(0).counts(0), 7);
  EXPECT_EQ(sum.features(0).counts(1), 2);
}

TEST(MergeWindowTest, KeepsSamplesUpToTheCapAndHistogramsOfOtherBinsApart) {
  v1::TelemetryWindow into = Part(0, 2, {1, 2});
  v1::TelemetryWindow from = Part(0, 2, {3, 4, 5});
  from.mutable_features(0)->add_counts(9);  // binned on other edges: not comparable
  MergeWindow(into, from, 4);
  EXPECT_EQ(into.features(0).samples_size(), 4);
  EXPECT_EQ(into.features(0).counts_size(), 2);
  EXPECT_EQ(into.features(0).counts(0), 2);
  MergeWindow(into, from, 0);
  EXPECT_TRUE(into.features(0).samples().empty());
}

TEST(MergeWindowTest, ShadowedCandidatesAddUpByVersion) {
  auto with = [](int64_t version, int64_t requests, int64_t agreed) {
    v1::TelemetryWindow w = Part(0, 10, {});
    v1::TelemetryWindow::Shadow* s = w.add_shadows();
    s->set_version(version);
    s->set_requests(requests);
    s->set_agreed(agreed);
    s->set_skipped(1);
    for (int64_t c : {requests, int64_t{0}}) s->add_latency_counts(c);
    return w;
  };
  v1::TelemetryWindow sum;
  MergeWindow(sum, with(2, 4, 3), 0);
  MergeWindow(sum, with(3, 5, 5), 0);
  MergeWindow(sum, with(2, 6, 1), 0);
  ASSERT_EQ(sum.shadows_size(), 2);
  EXPECT_EQ(sum.shadows(0).version(), 2);
  EXPECT_EQ(sum.shadows(0).requests(), 10);
  EXPECT_EQ(sum.shadows(0).agreed(), 4);
  EXPECT_EQ(sum.shadows(0).skipped(), 2);
  EXPECT_EQ(sum.shadows(0).latency_counts(0), 10);
  EXPECT_EQ(sum.shadows(1).version(), 3);
  EXPECT_EQ(sum.shadows(1).requests(), 5);
}

}  // namespace
}  // namespace edgeloop
