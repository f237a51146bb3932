#include "compiler/reference_statistics.h"

#include <cmath>

#include "common/monitored_feature.h"
#include "gtest/gtest.h"

namespace edgeloop::compiler {
namespace {

Tensor Floats(std::vector<int64_t> shape, std::vector<float> values) {
  Tensor t;
  t.shape = std::move(shape);
  t.f = std::move(values);
  return t;
}

TEST(ReferenceStatisticsTest, DecilesInterpolateAsNumpyDoes) {
  std::vector<double> hundred;
  for (int v = 0; v <= 100; ++v) hundred.push_back(100 - v);  // order does not matter
  const std::vector<double> edges = DecileEdges(hundred);
  ASSERT_EQ(edges.size(), 11u);
  for (int d = 0; d <= 10; ++d) EXPECT_DOUBLE_EQ(edges[d], 10.0 * d);
  // numpy.quantile([1, 2, 3, 4], [.1, .5, .9]) = 1.3, 2.5, 3.7.
  const std::vector<double> four = DecileEdges({4, 1, 3, 2});
  EXPECT_DOUBLE_EQ(four[0], 1);
  EXPECT_NEAR(four[1], 1.3, 1e-12);
  EXPECT_NEAR(four[5], 2.5, 1e-12);
  EXPECT_NEAR(four[9], 3.7, 1e-12);
  EXPECT_DOUBLE_EQ(four[10], 4);
  EXPECT_EQ(DecileEdges({3}), std::vector<double>(11, 3.0));
}

TEST(ReferenceStatisticsTest, AClassifierOnAValidationSet) {
  // x = [s, 7] for s = 0..99; the model says class 0 with p .92 below 30, class 1 with p .83
  // from 30 on; every label is 0.
  ReferenceRun run;
  for (int s = 0; s < 100; ++s) {
    run.inputs.push_back({{"x", Floats({1, 2}, {static_cast<float>(s), 7})}});
    run.first_outputs.push_back(s < 30 ? Floats({1, 2}, {0.92f, 0.08f})
                                       : Floats({1, 2}, {0.17f, 0.83f}));
    run.labels.push_back(0);
  }
  auto stats = ComputeReferenceStatistics(run, DefaultMonitoredFeatures({{"x", {1, 2}}}));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->source(), v1::ReferenceStatistics::VALIDATION_SET);
  EXPECT_EQ(stats->samples(), 100);
  ASSERT_EQ(stats->features_size(), 2);
  const v1::FeatureReference& varying = stats->features(0);
  EXPECT_EQ(varying.feature().name(), "x[0]");
  ASSERT_EQ(varying.edges_size(), 11);
  EXPECT_DOUBLE_EQ(varying.edges(0), 0);
  EXPECT_NEAR(varying.edges(1), 9.9, 1e-12);
  EXPECT_DOUBLE_EQ(varying.edges(10), 99);
  // Ten samples in each of the ten inner bins, none in the tails.
  ASSERT_EQ(varying.counts_size(), 12);
  EXPECT_EQ(varying.counts(0), 0);
  for (int b = 1; b <= 10; ++b) EXPECT_EQ(varying.counts(b), 10) << b;
  EXPECT_EQ(varying.counts(11), 0);
  // The constant feature: all in the last inner bin, so any other value lands in a tail.
  const v1::FeatureReference& constant = stats->features(1);
  EXPECT_EQ(constant.counts(10), 100);
  EXPECT_TRUE(stats->classifier());
  EXPECT_EQ(std::vector<int64_t>(stats->class_counts().begin(), stats->class_counts().end()),
            (std::vector<int64_t>{30, 70}));
  ASSERT_EQ(stats->confidence_counts_size(), 20);
  EXPECT_EQ(stats->confidence_counts(18), 30);  // p = .92: [.9, .95)
  EXPECT_EQ(stats->confidence_counts(16), 70);  // p = .83: [.8, .85)
  EXPECT_EQ(stats->labelled(), 100);
  EXPECT_EQ(stats->correct(), 30);
}

TEST(ReferenceStatisticsTest, LogitsAreTurnedIntoProbabilities) {
  ReferenceRun run;
  run.inputs.push_back({{"x", Floats({1}, {1})}});
  run.first_outputs.push_back(Floats({1, 2}, {2, 0}));  // softmax: e^2 / (e^2 + 1) = .881
  auto stats = ComputeReferenceStatistics(run, DefaultMonitoredFeatures({{"x", {1}}}));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->confidence_counts(17), 1);
  EXPECT_EQ(stats->labelled(), 0);
}

TEST(ReferenceStatisticsTest, ARegressorGetsAPredictionHistogram) {
  ReferenceRun run;
  for (int s = 0; s <= 10; ++s) {
    run.inputs.push_back({{"x", Floats({1}, {static_cast<float>(s)})}});
    run.first_outputs.push_back(Floats({1, 1}, {static_cast<float>(2 * s)}));
  }
  auto stats = ComputeReferenceStatistics(run, DefaultMonitoredFeatures({{"x", {1}}}));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_FALSE(stats->classifier());
  EXPECT_EQ(stats->class_counts_size(), 0);
  ASSERT_EQ(stats->prediction_edges_size(), 11);
  EXPECT_DOUBLE_EQ(stats->prediction_edges(5), 10);
  EXPECT_EQ(stats->prediction_counts_size(), 12);
}

TEST(ReferenceStatisticsTest, BadRunsAreRefused) {
  EXPECT_EQ(ComputeReferenceStatistics({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  ReferenceRun run;
  run.inputs.push_back({{"x", Floats({1}, {NAN})}});
  run.first_outputs.push_back(Floats({1, 2}, {0.5f, 0.5f}));
  EXPECT_EQ(ComputeReferenceStatistics(run, DefaultMonitoredFeatures({{"x", {1}}})).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A feature of an input the samples do not have.
  run.inputs[0] = {{"y", Floats({1}, {1})}};
  EXPECT_EQ(ComputeReferenceStatistics(run, DefaultMonitoredFeatures({{"x", {1}}})).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeloop::compiler
