#include "common/monitored_feature.h"

#include <cmath>

#include "gtest/gtest.h"

namespace edgeloop {
namespace {

TEST(MonitoredFeatureTest, DefaultsByInputShape) {
  auto features = DefaultMonitoredFeatures(
      {{"small", {1, 16}}, {"image", {1, 3, 8, 8}}, {"sequence", {1, 100, 4}}});
  ASSERT_EQ(features.size(), 16u + 3u + 4u);
  EXPECT_EQ(features[0].name(), "small[0]");
  EXPECT_EQ(features[15].name(), "small[15]");
  EXPECT_EQ(features[15].kind(), v1::MonitoredFeature::ELEMENT);
  EXPECT_EQ(features[16].name(), "image.mean[c=0]");
  EXPECT_EQ(features[18].index(), 2);
  EXPECT_EQ(features[18].kind(), v1::MonitoredFeature::CHANNEL_MEAN);
  EXPECT_EQ(features[19].name(), "sequence.mean");
  EXPECT_EQ(features[22].kind(), v1::MonitoredFeature::MAX);
  // 64 elements are still element-wise; 65 are not.
  EXPECT_EQ(DefaultMonitoredFeatures({{"x", {64}}}).size(), 64u);
  EXPECT_EQ(DefaultMonitoredFeatures({{"x", {65}}}).size(), 4u);
}

TEST(MonitoredFeatureTest, ValuesByHand) {
  // [1, 2, 2, 2]: channel 0 holds 1 2 3 4, channel 1 holds -1 -1 -1 -1.
  const std::vector<int64_t> shape = {1, 2, 2, 2};
  const float data[] = {1, 2, 3, 4, -1, -1, -1, -1};
  auto feature = [](v1::MonitoredFeature::Kind kind, int64_t index) {
    v1::MonitoredFeature f;
    f.set_kind(kind);
    f.set_index(index);
    return f;
  };
  EXPECT_DOUBLE_EQ(FeatureValue(feature(v1::MonitoredFeature::ELEMENT, 2), data, shape), 3);
  EXPECT_DOUBLE_EQ(FeatureValue(feature(v1::MonitoredFeature::CHANNEL_MEAN, 0), data, shape), 2.5);
  EXPECT_DOUBLE_EQ(FeatureValue(feature(v1::MonitoredFeature::CHANNEL_MEAN, 1), data, shape), -1);
  EXPECT_DOUBLE_EQ(FeatureValue(feature(v1::MonitoredFeature::MEAN, 0), data, shape), 0.75);
  // Population std of {1,2,3,4,-1,-1,-1,-1}: mean .75, mean of squares 34/8 = 4.25.
  EXPECT_DOUBLE_EQ(FeatureValue(feature(v1::MonitoredFeature::STD, 0), data, shape),
                   std::sqrt(4.25 - 0.75 * 0.75));
  EXPECT_DOUBLE_EQ(FeatureValue(feature(v1::MonitoredFeature::MIN, 0), data, shape), -1);
  EXPECT_DOUBLE_EQ(FeatureValue(feature(v1::MonitoredFeature::MAX, 0), data, shape), 4);
  // What does not fit the tensor, and NaN data, give NaN.
  EXPECT_TRUE(std::isnan(FeatureValue(feature(v1::MonitoredFeature::ELEMENT, 8), data, shape)));
  EXPECT_TRUE(
      std::isnan(FeatureValue(feature(v1::MonitoredFeature::CHANNEL_MEAN, 2), data, shape)));
  EXPECT_TRUE(std::isnan(FeatureValue(feature(v1::MonitoredFeature::CHANNEL_MEAN, 0), data, {8})));
  EXPECT_TRUE(
      std::isnan(FeatureValue(feature(v1::MonitoredFeature::KIND_UNSPECIFIED, 0), data, shape)));
  const float nan_first[] = {NAN, 1};
  EXPECT_TRUE(std::isnan(FeatureValue(feature(v1::MonitoredFeature::MAX, 0), nan_first, {2})));
  EXPECT_TRUE(std::isnan(FeatureValue(feature(v1::MonitoredFeature::MIN, 0), nan_first, {2})));
  EXPECT_TRUE(std::isnan(FeatureValue(feature(v1::MonitoredFeature::MEAN, 0), nan_first, {2})));
}

TEST(MonitoredFeatureTest, BinsAreOpenTailsAroundClosedEdges) {
  const double edges[] = {0, 1, 2, 3};  // bins: <0, [0,1), [1,2), [2,3], >3
  EXPECT_EQ(BinOf(edges, 4, -0.5), 0);
  EXPECT_EQ(BinOf(edges, 4, 0), 1);
  EXPECT_EQ(BinOf(edges, 4, 0.5), 1);
  EXPECT_EQ(BinOf(edges, 4, 1), 2);
  EXPECT_EQ(BinOf(edges, 4, 2.5), 3);
  EXPECT_EQ(BinOf(edges, 4, 3), 3);  // the maximum is inside
  EXPECT_EQ(BinOf(edges, 4, 3.01), 4);
  EXPECT_EQ(BinOf(edges, 4, NAN), -1);
  // A constant feature: every edge equal; its value is in the last inner bin.
  const double flat[] = {5, 5, 5};
  EXPECT_EQ(BinOf(flat, 3, 5), 2);
  EXPECT_EQ(BinOf(flat, 3, 4), 0);
  EXPECT_EQ(BinOf(flat, 3, 6), 3);
}

}  // namespace
}  // namespace edgeloop
