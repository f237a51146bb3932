// The drift, accuracy and latency statistics against values computed independently: by hand
// (shown), from published tables, from scipy's documentation, and from a plain-Python
// implementation of each formula (telemetry/statistics_test.py prints them).
#include <cmath>

#include "gtest/gtest.h"
#include "telemetry/accuracy.h"
#include "telemetry/drift.h"
#include "telemetry/latency_histogram.h"

namespace edgeloop::telemetry {
namespace {

TEST(PsiTest, MatchesTheFormulaAndIsZeroForTheSameDistribution) {
  // r = .1 .2 .3 .4, a = .4 .3 .2 .1: .3 ln 4 + .1 ln 1.5 - .1 ln(2/3) - .3 ln .25 = 0.9129.
  auto psi = Psi({10, 20, 30, 40}, {40, 30, 20, 10});
  ASSERT_TRUE(psi.ok()) << psi.status();
  EXPECT_NEAR(*psi, 0.91286963829356726, 1e-12);
  EXPECT_NEAR(*Psi({1, 2, 3}, {10, 20, 30}), 0.0, 1e-15);  // proportions, not counts
  EXPECT_NEAR(*Psi({10, 20, 30, 40}, {40, 30, 20, 10}), *Psi({40, 30, 20, 10}, {10, 20, 30, 40}),
              1e-12);  // symmetric
}

TEST(PsiTest, EmptyBinsAreFilledAsEvidentlyFillsThem) {
  // The empty reference bin counts as 0.0001.
  auto filled = FilledProportions({0, 50, 50});
  ASSERT_TRUE(filled.ok());
  EXPECT_DOUBLE_EQ((*filled)[0], 0.0001);
  EXPECT_NEAR(*Psi({0, 50, 50}, {10, 45, 45}), 0.70062080393609816, 1e-12);
  // With a non-empty proportion at most 0.0001 (1e-5 here) empty bins get it / 10^6.
  filled = FilledProportions({1, 99999, 0});
  ASSERT_TRUE(filled.ok());
  EXPECT_DOUBLE_EQ((*filled)[2], 1e-11);
  EXPECT_NEAR(*Psi({1, 99999, 0}, {0, 50000, 50000}), 12.664413312482463, 1e-9);
}

TEST(PsiTest, BadHistogramsAreRefused) {
  EXPECT_EQ(Psi({1, 2}, {1, 2, 3}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Psi({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Psi({0, 0}, {1, 2}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Psi({1, -2}, {1, 2}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Psi({1, NAN}, {1, 2}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Psi({1, INFINITY}, {1, 2}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(JensenShannonTest, MatchesScipy) {
  // scipy.spatial.distance.jensenshannon([1.0, 0.0], [0.5, 0.5]) in scipy's documentation.
  EXPECT_NEAR(*JensenShannonDistance({1, 0}, {0.5, 0.5}), 0.46450140402245893, 1e-15);
  // Disjoint distributions: the maximum, sqrt(ln 2).
  EXPECT_NEAR(*JensenShannonDistance({1, 0}, {0, 1}), std::sqrt(std::log(2.0)), 1e-15);
  EXPECT_NEAR(*JensenShannonDistance({10, 20, 30, 40}, {40, 30, 20, 10}), 0.32625164411267443,
              1e-12);
  EXPECT_NEAR(*JensenShannonDistance({5, 5}, {50, 50}), 0.0, 1e-15);
}

TEST(KolmogorovSmirnovTest, TailMatchesTheKolmogorovTable) {
  EXPECT_NEAR(KolmogorovTail(1.0), 0.26999967167735456, 1e-12);
  EXPECT_NEAR(KolmogorovTail(1.36), 0.049485876755377876, 1e-12);  // the 5 % critical value
  EXPECT_DOUBLE_EQ(KolmogorovTail(0), 1);
  EXPECT_LT(KolmogorovTail(3), 1e-7);
}

TEST(KolmogorovSmirnovTest, BinnedStatisticAndPValue) {
  // CDFs at the edges: .25 .5 .75 1 and 0 .25 .5 1: D = .25; n = m = 40, so
  // lambda = (sqrt(20) + 0.12 + 0.11 / sqrt(20)) * .25 = 1.15418.
  auto ks = KolmogorovSmirnov({10, 10, 10, 10}, {0, 10, 10, 20});
  ASSERT_TRUE(ks.ok()) << ks.status();
  EXPECT_DOUBLE_EQ(ks->statistic, 0.25);
  EXPECT_NEAR(ks->p_value, 0.1392522339398094, 1e-12);
  // The same shift seen on ten times the samples is significant.
  ks = KolmogorovSmirnov({100, 100, 100, 100}, {0, 100, 100, 200});
  ASSERT_TRUE(ks.ok());
  EXPECT_LT(ks->p_value, 0.001);
  EXPECT_EQ(KolmogorovSmirnov({1}, {1, 2}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BenjaminiHochbergTest, StepsUpFromTheLargestPassingRank) {
  // m = 3, alpha = .05: thresholds .0167 .0333 .05. Rank 1 (.03) alone would fail, but rank 2
  // (.031 <= .0333) passes, so both are rejected; .2 is not.
  EXPECT_EQ(BenjaminiHochberg({0.03, 0.2, 0.031}, 0.05), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(BenjaminiHochberg({0.01, 0.04, 0.03, 0.005}, 0.05),
            (std::vector<bool>{true, true, true, true}));
  EXPECT_EQ(BenjaminiHochberg({0.5, 0.9}, 0.05), (std::vector<bool>{false, false}));
  EXPECT_TRUE(BenjaminiHochberg({}, 0.05).empty());
}

TEST(WilsonTest, MatchesTheTextbookInterval) {
  const Proportion p = Wilson(8, 10);
  EXPECT_DOUBLE_EQ(p.value, 0.8);
  EXPECT_NEAR(p.low, 0.49016247153664178, 1e-12);
  EXPECT_NEAR(p.high, 0.94331784854562484, 1e-12);
  // All correct: the interval still says how little ten samples prove.
  const Proportion all = Wilson(10, 10);
  EXPECT_DOUBLE_EQ(all.high, 1.0);
  EXPECT_LT(all.low, 0.75);
  const Proportion none = Wilson(0, 0);
  EXPECT_EQ(none.low, 0);
  EXPECT_EQ(none.high, 1);
  EXPECT_EQ(Wilson(5, 3).trials, 3);  // more successes than trials: no interval claimed
  EXPECT_EQ(Wilson(5, 3).high, 1);
}

TEST(LatencyHistogramTest, BucketsAndQuantiles) {
  EXPECT_EQ(LatencyBucket(0.5), 0u);
  EXPECT_EQ(LatencyBucket(1), 0u);  // bounds are inclusive
  EXPECT_EQ(LatencyBucket(1.5), 1u);
  EXPECT_EQ(LatencyBucket(15), 4u);  // (10, 20]
  EXPECT_EQ(LatencyBucket(1e9), kLatencyBuckets - 1);
  std::vector<int64_t> counts(kLatencyBuckets, 0);
  counts[4] = 100;  // all in (10, 20] us
  EXPECT_DOUBLE_EQ(*LatencyQuantile(counts, 0.5), 15);
  EXPECT_DOUBLE_EQ(*LatencyQuantile(counts, 0.99), 19.9);
  counts[0] = 100;  // half in [0, 1]
  EXPECT_DOUBLE_EQ(*LatencyQuantile(counts, 0.25), 0.5);
  EXPECT_DOUBLE_EQ(*LatencyQuantile(counts, 0.75), 15);
  std::vector<int64_t> slow(kLatencyBuckets, 0);
  slow.back() = 3;
  EXPECT_DOUBLE_EQ(*LatencyQuantile(slow, 0.5), 1e8);
  EXPECT_EQ(LatencyQuantile(std::vector<int64_t>(3, 1), 0.5).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LatencyQuantile(std::vector<int64_t>(kLatencyBuckets, 0), 0.5).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LatencyQuantile(counts, 1.0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeloop::telemetry
