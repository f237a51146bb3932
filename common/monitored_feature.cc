#include "common/monitored_feature.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace edgeloop {
namespace {

constexpr int64_t kElementwiseUpTo = 64;
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

v1::MonitoredFeature Feature(const std::string& input, v1::MonitoredFeature::Kind kind,
                             int64_t index, std::string name) {
  v1::MonitoredFeature f;
  f.set_name(std::move(name));
  f.set_input(input);
  f.set_kind(kind);
  f.set_index(index);
  return f;
}

int64_t Elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

bool ImageLike(const std::vector<int64_t>& shape) {
  return shape.size() == 4 && shape[0] == 1 && shape[1] >= 1 && shape[2] > 1 && shape[3] > 1;
}

}  // namespace

std::vector<v1::MonitoredFeature> DefaultMonitoredFeatures(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& inputs) {
  std::vector<v1::MonitoredFeature> features;
  for (const auto& [name, shape] : inputs) {
    const int64_t n = Elements(shape);
    if (n <= kElementwiseUpTo) {
      for (int64_t k = 0; k < n; ++k) {
        features.push_back(
            Feature(name, v1::MonitoredFeature::ELEMENT, k, absl::StrCat(name, "[", k, "]")));
      }
    } else if (ImageLike(shape)) {
      for (int64_t c = 0; c < shape[1]; ++c) {
        features.push_back(Feature(name, v1::MonitoredFeature::CHANNEL_MEAN, c,
                                   absl::StrCat(name, ".mean[c=", c, "]")));
      }
    } else {
      features.push_back(Feature(name, v1::MonitoredFeature::MEAN, 0, name + ".mean"));
      features.push_back(Feature(name, v1::MonitoredFeature::STD, 0, name + ".std"));
      features.push_back(Feature(name, v1::MonitoredFeature::MIN, 0, name + ".min"));
      features.push_back(Feature(name, v1::MonitoredFeature::MAX, 0, name + ".max"));
    }
  }
  return features;
}

double FeatureValue(const v1::MonitoredFeature& feature, const float* data,
                    const std::vector<int64_t>& shape) {
  const int64_t n = Elements(shape);
  if (n <= 0) return kNan;
  switch (feature.kind()) {
    case v1::MonitoredFeature::ELEMENT:
      if (feature.index() < 0 || feature.index() >= n) return kNan;
      return data[feature.index()];
    case v1::MonitoredFeature::CHANNEL_MEAN: {
      if (!ImageLike(shape) || feature.index() < 0 || feature.index() >= shape[1]) return kNan;
      const int64_t plane = shape[2] * shape[3];
      const float* p = data + feature.index() * plane;
      double sum = 0;
      for (int64_t k = 0; k < plane; ++k) sum += p[k];
      return sum / static_cast<double>(plane);
    }
    case v1::MonitoredFeature::MEAN:
    case v1::MonitoredFeature::STD: {
      double sum = 0, squares = 0;
      for (int64_t k = 0; k < n; ++k) {
        sum += data[k];
        squares += static_cast<double>(data[k]) * data[k];
      }
      const double mean = sum / static_cast<double>(n);
      if (feature.kind() == v1::MonitoredFeature::MEAN) return mean;
      return std::sqrt(std::max(0.0, squares / static_cast<double>(n) - mean * mean));
    }
    case v1::MonitoredFeature::MIN:
    case v1::MonitoredFeature::MAX: {
      double best = data[0];
      if (std::isnan(best)) return kNan;
      for (int64_t k = 1; k < n; ++k) {
        if (std::isnan(data[k])) return kNan;
        best = feature.kind() == v1::MonitoredFeature::MIN ? std::min<double>(best, data[k])
                                                           : std::max<double>(best, data[k]);
      }
      return best;
    }
    default:
      return kNan;
  }
}

int BinOf(const double* edges, int n, double value) {
  if (std::isnan(value) || n <= 0) return -1;
  if (value == edges[n - 1]) return n - 1;  // the last inner bin is closed
  return static_cast<int>(std::upper_bound(edges, edges + n, value) - edges);
}

}  // namespace edgeloop
