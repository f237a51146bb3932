#include "telemetry/analysis.h"

#include "common/prediction.h"
#include "gtest/gtest.h"

namespace edgeloop::telemetry {
namespace {

// A reference of two features on 12 bins each (100 values spread evenly over the ten inner
// bins), a two-class classifier, 80 of 100 labelled right.
v1::ReferenceStatistics Reference() {
  v1::ReferenceStatistics r;
  r.set_source(v1::ReferenceStatistics::VALIDATION_SET);
  for (const char* name : {"x[0]", "x[1]"}) {
    v1::FeatureReference* f = r.add_features();
    f->mutable_feature()->set_name(name);
    for (int k = 0; k <= 10; ++k) f->add_edges(k);
    for (int k = 0; k < 12; ++k) f->add_counts(k == 0 || k == 11 ? 0 : 10);
  }
  r.set_classifier(true);
  r.add_class_counts(50);
  r.add_class_counts(50);
  for (int k = 0; k < kConfidenceBins; ++k) r.add_confidence_counts(k == 19 ? 100 : 0);
  r.set_labelled(100);
  r.set_correct(80);
  return r;
}

// What devices measured: x[0] like the reference, x[1] `shift` bins higher (shift 0: alike).
v1::TelemetryWindow Measured(int shift, int64_t n_per_bin) {
  v1::TelemetryWindow w;
  w.set_requests(10 * n_per_bin);
  w.set_errors(n_per_bin);
  for (int i = 0; i < 2; ++i) {
    v1::TelemetryWindow::Feature* f = w.add_features();
    f->set_name(i == 0 ? "x[0]" : "x[1]");
    for (int k = 0; k < 12; ++k) f->add_counts(0);
    for (int k = 1; k <= 10; ++k) {
      const int bin = std::min(11, k + (i == 1 ? shift : 0));
      f->set_counts(bin, f->counts(bin) + n_per_bin);
    }
  }
  w.add_class_counts(5 * n_per_bin);
  w.add_class_counts(5 * n_per_bin);
  w.add_labelled(10);
  w.add_labelled(10);
  w.add_correct(9);
  w.add_correct(7);
  return w;
}

TEST(SummarizeTest, AFleetLikeItsReferenceDoesNotDrift) {
  const v1::ReferenceStatistics reference = Reference();
  const v1::TelemetrySummary s = Summarize(Measured(0, 100), 5, &reference, {});
  EXPECT_EQ(s.windows(), 5);
  EXPECT_EQ(s.requests(), 1000);
  EXPECT_NEAR(s.errors().value(), 0.1, 1e-12);
  EXPECT_LT(s.errors().low(), 0.1);
  EXPECT_GT(s.errors().high(), 0.1);
  EXPECT_EQ(s.accuracy().successes(), 16);
  EXPECT_EQ(s.accuracy().trials(), 20);
  ASSERT_EQ(s.features_size(), 2);
  for (const auto& f : s.features()) {
    EXPECT_NEAR(f.psi(), 0, 1e-9) << f.feature();
    EXPECT_NEAR(f.jensen_shannon(), 0, 1e-6) << f.feature();
    EXPECT_FALSE(f.drifted()) << f.feature();
    EXPECT_EQ(f.count(), 1000);
  }
  EXPECT_EQ(s.drifted_features(), 0);
  EXPECT_FALSE(s.prediction().drifted());
}

TEST(SummarizeTest, AShiftedFeatureDriftsAndOnlyIt) {
  const v1::ReferenceStatistics reference = Reference();
  const v1::TelemetrySummary s = Summarize(Measured(3, 100), 1, &reference, {});
  ASSERT_EQ(s.features_size(), 2);
  EXPECT_FALSE(s.features(0).drifted());
  EXPECT_TRUE(s.features(1).drifted());
  EXPECT_GE(s.features(1).psi(), 0.2);
  EXPECT_GE(s.features(1).jensen_shannon(), 0.1);
  EXPECT_LT(s.features(1).ks_p_adjusted(), 0.05);
  // The correction never makes a p-value smaller.
  EXPECT_GE(s.features(1).ks_p_adjusted(), s.features(1).ks_p_value());
  EXPECT_EQ(s.drifted_features(), 1);
  EXPECT_DOUBLE_EQ(s.drifted_share(), 0.5);
}

TEST(SummarizeTest, WithoutAReferenceNothingIsJudged) {
  const v1::TelemetrySummary s = Summarize(Measured(3, 100), 1, nullptr, {});
  EXPECT_EQ(s.requests(), 1000);
  EXPECT_EQ(s.features_size(), 0);
  EXPECT_FALSE(s.has_prediction());
}

TEST(SummarizeTest, TooFewValuesAreReportedButNotJudged) {
  // One value per bin, shifted by three: PSI sees a shift, but ten values judge nothing.
  const v1::ReferenceStatistics reference = Reference();
  const v1::TelemetrySummary s = Summarize(Measured(3, 1), 1, &reference, {});
  ASSERT_EQ(s.features_size(), 2);
  EXPECT_GT(s.features(1).psi(), 0.2);
  EXPECT_TRUE(s.features(1).too_few());
  EXPECT_FALSE(s.features(1).drifted());
  EXPECT_EQ(s.drifted_features(), 0);
  EXPECT_EQ(s.drifted_share(), 0);
  EXPECT_TRUE(s.prediction().too_few());
  // With the bar lowered, the same values are judged and the shift is drift.
  DriftThresholds low;
  low.min_count = 10;
  EXPECT_TRUE(Summarize(Measured(3, 1), 1, &reference, low).features(1).drifted());
}

}  // namespace
}  // namespace edgeloop::telemetry
