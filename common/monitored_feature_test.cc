#include "common/monitored_feature.h"

#include <cmath>
#include <functional>

#include "common/prediction.h"
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

TEST(MonitoredFeatureTest, UnknownDimensionsGetWholeTensorFeatures) {
  auto features = DefaultMonitoredFeatures({{"x", {-1, 8}}});
  ASSERT_EQ(features.size(), 4u);
  EXPECT_EQ(features[0].name(), "x.mean");
}

TEST(MonitoredFeatureTest, NamesParseBackToTheirFeatures) {
  for (const v1::MonitoredFeature& f : DefaultMonitoredFeatures(
           {{"small", {1, 3}}, {"in.put", {1, 3, 8, 8}}, {"seq", {1, 100, 4}}})) {
    auto parsed = ParseMonitoredFeature(f.name());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->SerializeAsString(), f.SerializeAsString()) << f.name();
  }
  for (const char* bad : {"x", "x[", "x[-1]", "x[a]", "[3]", ".mean", "x.median", "x.mean[c=]"}) {
    EXPECT_EQ(ParseMonitoredFeature(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(MonitoredFeatureTest, OverridesAreCheckedAgainstTheInputs) {
  const std::vector<std::pair<std::string, std::vector<int64_t>>> inputs = {
      {"x", {1, 4}}, {"image", {1, 3, 8, 8}}, {"free", {-1, 4}}};
  auto check = [&](std::vector<std::string> names) {
    std::vector<v1::MonitoredFeature> features;
    for (const auto& n : names) features.push_back(*ParseMonitoredFeature(n));
    return CheckMonitoredFeatures(features, inputs);
  };
  EXPECT_TRUE(check({"x[3]", "image.mean[c=2]", "image.std", "free.max"}).ok());
  EXPECT_FALSE(check({"x[4]"}).ok());
  EXPECT_FALSE(check({"y[0]"}).ok());
  EXPECT_FALSE(check({"image.mean[c=3]"}).ok());
  EXPECT_FALSE(check({"x.mean[c=0]"}).ok());
  EXPECT_FALSE(check({"free[0]"}).ok());
  EXPECT_FALSE(check({"x[1]", "x[1]"}).ok());
  std::vector<std::string> too_many(kMaxMonitoredFeatures + 1, "x.mean");
  EXPECT_NE(check(too_many).message().find("at most"), std::string::npos);
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

namespace edgeloop {
namespace {

v1::ReferenceStatistics GoodReference() {
  v1::ReferenceStatistics r;
  r.set_samples(10);
  v1::FeatureReference* f = r.add_features();
  f->mutable_feature()->set_name("x[0]");
  for (int k = 0; k <= 10; ++k) f->add_edges(k * 0.1);
  for (int k = 0; k < 12; ++k) f->add_counts(k == 0 || k == 11 ? 0 : 1);
  r.set_classifier(true);
  r.add_class_counts(6);
  r.add_class_counts(4);
  for (int k = 0; k < kConfidenceBins; ++k) r.add_confidence_counts(k == 19 ? 10 : 0);
  r.set_labelled(10);
  r.set_correct(7);
  return r;
}

TEST(ReferenceCheckTest, AWellFormedReferencePasses) {
  EXPECT_TRUE(CheckReferenceStatistics(GoodReference()).ok());
  // A regressor's reference taken from devices' first windows has no predictions binned.
  v1::ReferenceStatistics regressor = GoodReference();
  regressor.set_classifier(false);
  regressor.clear_class_counts();
  regressor.clear_confidence_counts();
  EXPECT_TRUE(CheckReferenceStatistics(regressor).ok());
}

TEST(ReferenceCheckTest, EachMalformationIsRefused) {
  std::vector<std::pair<std::string, std::function<void(v1::ReferenceStatistics&)>>> breaks = {
      {"unsorted edges", [](auto& r) { r.mutable_features(0)->set_edges(3, 5); }},
      {"NaN edge", [](auto& r) { r.mutable_features(0)->set_edges(0, std::nan("")); }},
      {"a count short", [](auto& r) { r.mutable_features(0)->mutable_counts()->RemoveLast(); }},
      {"a negative count", [](auto& r) { r.mutable_features(0)->set_counts(2, -1); }},
      {"duplicate names", [](auto& r) { *r.add_features() = r.features(0); }},
      {"one class", [](auto& r) { r.mutable_class_counts()->RemoveLast(); }},
      {"19 confidence bins", [](auto& r) { r.mutable_confidence_counts()->RemoveLast(); }},
      {"more correct than labelled", [](auto& r) { r.set_correct(11); }},
      {"a regressor's counts without edges",
       [](auto& r) {
         r.set_classifier(false);
         r.add_prediction_counts(5);
       }},
  };
  for (auto& [what, mutate] : breaks) {
    v1::ReferenceStatistics r = GoodReference();
    mutate(r);
    EXPECT_EQ(CheckReferenceStatistics(r).code(), absl::StatusCode::kInvalidArgument) << what;
  }
}

}  // namespace
}  // namespace edgeloop
