#include "common/monitored_feature.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/prediction.h"
#include "common/status.h"

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

// -1 when a dimension is unknown (symbolic).
int64_t Elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (const int64_t d : shape) {
    if (d < 0) return -1;
    n *= d;
  }
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
    if (n >= 0 && n <= kElementwiseUpTo) {
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

absl::StatusOr<v1::MonitoredFeature> ParseMonitoredFeature(const std::string& name) {
  auto invalid = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "monitored feature \"", name,
        "\": expected INPUT[k], INPUT.mean[c=k], INPUT.mean, INPUT.std, INPUT.min or INPUT.max"));
  };
  if (absl::EndsWith(name, "]")) {
    const size_t open = name.rfind('[');
    if (open == std::string::npos || open == 0) return invalid();
    std::string index_text = name.substr(open + 1, name.size() - open - 2);
    std::string input = name.substr(0, open);
    v1::MonitoredFeature::Kind kind = v1::MonitoredFeature::ELEMENT;
    if (absl::StartsWith(index_text, "c=") && absl::EndsWith(input, ".mean")) {
      index_text = index_text.substr(2);
      input = input.substr(0, input.size() - 5);
      kind = v1::MonitoredFeature::CHANNEL_MEAN;
    }
    int64_t index = 0;
    if (input.empty() || !absl::SimpleAtoi(index_text, &index) || index < 0) return invalid();
    return Feature(input, kind, index, name);
  }
  static const auto* kWhole =
      new std::map<std::string, v1::MonitoredFeature::Kind>{{"mean", v1::MonitoredFeature::MEAN},
                                                            {"std", v1::MonitoredFeature::STD},
                                                            {"min", v1::MonitoredFeature::MIN},
                                                            {"max", v1::MonitoredFeature::MAX}};
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return invalid();
  const auto kind = kWhole->find(name.substr(dot + 1));
  if (kind == kWhole->end()) return invalid();
  return Feature(name.substr(0, dot), kind->second, 0, name);
}

absl::Status CheckMonitoredFeatures(
    const std::vector<v1::MonitoredFeature>& features,
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& inputs) {
  if (features.size() > static_cast<size_t>(kMaxMonitoredFeatures)) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxMonitoredFeatures,
                                                   " monitored features, not ", features.size()));
  }
  std::set<std::string> names;
  for (const v1::MonitoredFeature& f : features) {
    auto refuse = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("monitored feature \"", f.name(), "\": ", why));
    };
    if (f.name().empty()) return refuse("it has no name");
    if (!names.insert(f.name()).second) return refuse("named twice");
    const auto input = std::find_if(inputs.begin(), inputs.end(),
                                    [&](const auto& i) { return i.first == f.input(); });
    if (input == inputs.end()) {
      return refuse(absl::StrCat("the model has no input \"", f.input(), "\""));
    }
    const std::vector<int64_t>& shape = input->second;
    const int64_t n = Elements(shape);
    switch (f.kind()) {
      case v1::MonitoredFeature::ELEMENT:
        if (n < 0) return refuse("the input's shape is not fixed, so it has no element index");
        if (f.index() < 0 || f.index() >= n) {
          return refuse(absl::StrCat("the input has ", n, " elements"));
        }
        break;
      case v1::MonitoredFeature::CHANNEL_MEAN:
        if (n < 0 || !ImageLike(shape)) return refuse("the input is not a [1, C, H, W] image");
        if (f.index() < 0 || f.index() >= shape[1]) {
          return refuse(absl::StrCat("the input has ", shape[1], " channels"));
        }
        break;
      case v1::MonitoredFeature::MEAN:
      case v1::MonitoredFeature::STD:
      case v1::MonitoredFeature::MIN:
      case v1::MonitoredFeature::MAX:
        break;
      default:
        return refuse("unknown kind");
    }
  }
  return absl::OkStatus();
}

namespace {

absl::Status CheckCounts(const google::protobuf::RepeatedField<int64_t>& counts, size_t expected,
                         absl::string_view what) {
  if (static_cast<size_t>(counts.size()) != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", counts.size(), " counts, expected ", expected));
  }
  for (const int64_t c : counts) {
    if (c < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": a negative count"));
  }
  return absl::OkStatus();
}

absl::Status CheckBinned(const google::protobuf::RepeatedField<double>& edges,
                         const google::protobuf::RepeatedField<int64_t>& counts,
                         absl::string_view what) {
  RETURN_IF_ERROR(CheckEdges(edges, what));
  return CheckCounts(counts, edges.size() + 1, what);
}

}  // namespace

absl::Status CheckEdges(const google::protobuf::RepeatedField<double>& edges,
                        absl::string_view what) {
  if (edges.size() < 2 || edges.size() > 32) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", edges.size(), " edges, not 2 to 32"));
  }
  for (int k = 0; k < edges.size(); ++k) {
    if (!std::isfinite(edges[k]) || (k > 0 && edges[k] < edges[k - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": edges must be finite and non-decreasing"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckReferenceStatistics(const v1::ReferenceStatistics& r) {
  if (r.features_size() > kMaxMonitoredFeatures) {
    return absl::InvalidArgumentError(absl::StrCat("the reference has ", r.features_size(),
                                                   " features, at most ", kMaxMonitoredFeatures));
  }
  std::set<std::string> names;
  for (const v1::FeatureReference& f : r.features()) {
    if (f.feature().name().empty() || !names.insert(f.feature().name()).second) {
      return absl::InvalidArgumentError("the reference's feature names must be set and unique");
    }
    RETURN_IF_ERROR(
        CheckBinned(f.edges(), f.counts(), absl::StrCat("feature ", f.feature().name())));
  }
  if (r.classifier()) {
    if (r.class_counts_size() < 2 || r.class_counts_size() > kMaxClasses) {
      return absl::InvalidArgumentError(absl::StrCat("the reference has ", r.class_counts_size(),
                                                     " classes, not 2 to ", kMaxClasses));
    }
    RETURN_IF_ERROR(CheckCounts(r.class_counts(), r.class_counts_size(), "class counts"));
    RETURN_IF_ERROR(CheckCounts(r.confidence_counts(), kConfidenceBins, "confidence"));
  } else if (r.prediction_edges_size() > 0 || r.prediction_counts_size() > 0) {
    // A regressor's reference taken from devices' first windows has no predictions to bin.
    RETURN_IF_ERROR(CheckBinned(r.prediction_edges(), r.prediction_counts(), "predictions"));
  }
  if (r.samples() < 0 || r.labelled() < 0 || r.correct() < 0 || r.correct() > r.labelled()) {
    return absl::InvalidArgumentError(
        "the reference's sample and accuracy counts are inconsistent");
  }
  return absl::OkStatus();
}

namespace {

// A sum in four independent chains: one chain waits out each add's latency, and an image's
// channel means are most of what the agent adds to a call of a small CNN.
double Sum(const float* p, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    s0 += p[k];
    s1 += p[k + 1];
    s2 += p[k + 2];
    s3 += p[k + 3];
  }
  for (; k < n; ++k) s0 += p[k];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

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
      return Sum(data + feature.index() * plane, plane) / static_cast<double>(plane);
    }
    case v1::MonitoredFeature::MEAN:
    case v1::MonitoredFeature::STD: {
      const double mean = Sum(data, n) / static_cast<double>(n);
      if (feature.kind() == v1::MonitoredFeature::MEAN) return mean;
      double squares = 0;
      for (int64_t k = 0; k < n; ++k) squares += static_cast<double>(data[k]) * data[k];
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
  // The number of edges at or below the value (upper_bound on sorted edges), counted without
  // branches: a binary search's unpredictable branches cost more than a dozen compares, and
  // the agent bins every monitored feature of every call.
  int bin = 0;
  for (int k = 0; k < n; ++k) bin += value >= edges[k] ? 1 : 0;
  return bin;
}

std::vector<double> DecileEdges(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  std::vector<double> edges;
  const double last = static_cast<double>(values.size() - 1);
  for (int d = 0; d <= 10; ++d) {
    const double at = last * d / 10.0;
    const size_t below = static_cast<size_t>(std::floor(at));
    const size_t above = std::min(below + 1, values.size() - 1);
    edges.push_back(values[below] + (values[above] - values[below]) * (at - below));
  }
  return edges;
}

std::vector<int64_t> BinCounts(const std::vector<double>& edges,
                               const std::vector<double>& values) {
  std::vector<int64_t> counts(edges.size() + 1, 0);
  for (const double v : values) {
    const int bin = BinOf(edges.data(), static_cast<int>(edges.size()), v);
    if (bin >= 0) ++counts[bin];
  }
  return counts;
}

}  // namespace edgeloop
