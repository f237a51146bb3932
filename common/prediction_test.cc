#include "common/prediction.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace edgeloop {
namespace {

TEST(PredictionTest, ClassifiersAreVectorsOfAtLeastTwo) {
  EXPECT_TRUE(IsClassifierOutput({1, 10}));
  EXPECT_TRUE(IsClassifierOutput({3}));
  EXPECT_FALSE(IsClassifierOutput({1, 1}));
  EXPECT_FALSE(IsClassifierOutput({2, 10}));
  EXPECT_FALSE(IsClassifierOutput({1, 3, 4}));
}

TEST(PredictionTest, ProbabilitiesAreTakenAsTheyAre) {
  const float p[] = {0.1f, 0.7f, 0.2f};
  const TopClass top = TopClassOf(p, 3);
  EXPECT_EQ(top.index, 1);
  EXPECT_NEAR(top.probability, 0.7, 1e-7);
}

TEST(PredictionTest, LogitsGoThroughSoftmax) {
  const float logits[] = {1, 2, 3};
  const TopClass top = TopClassOf(logits, 3);
  EXPECT_EQ(top.index, 2);
  // e^3 / (e^1 + e^2 + e^3)
  EXPECT_NEAR(top.probability, std::exp(3.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0)),
              1e-12);
  // Large logits do not overflow.
  const float big[] = {1000, 999};
  EXPECT_NEAR(TopClassOf(big, 2).probability, 1 / (1 + std::exp(-1.0)), 1e-12);
}

TEST(PredictionTest, TiesGoToTheLowerClassAndNanToNone) {
  const float tie[] = {0.5f, 0.5f};
  EXPECT_EQ(TopClassOf(tie, 2).index, 0);
  const float nan[] = {0.5f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_EQ(TopClassOf(nan, 2).index, -1);
}

TEST(PredictionTest, ConfidenceBinsAreTwentiethsWithTheLastClosed) {
  EXPECT_EQ(ConfidenceBin(0), 0);
  EXPECT_EQ(ConfidenceBin(0.049), 0);
  EXPECT_EQ(ConfidenceBin(0.05), 1);
  EXPECT_EQ(ConfidenceBin(0.999), 19);
  EXPECT_EQ(ConfidenceBin(1), 19);
}

TEST(PredictionTest, PredictionValueIsTheMean) {
  const float out[] = {1, 2, 6};
  EXPECT_DOUBLE_EQ(PredictionValue(out, 3), 3);
  EXPECT_TRUE(std::isnan(PredictionValue(out, 0)));
}

}  // namespace
}  // namespace edgeloop
