#include "compiler/reference_statistics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/monitored_feature.h"

namespace edgeloop::compiler {
namespace {

constexpr int kConfidenceBins = 20;

bool IsClassifier(const Tensor& first_output) {
  const auto& s = first_output.shape;
  return first_output.size() >= 2 && (s.size() == 1 || (s.size() == 2 && s[0] == 1));
}

// The output as class probabilities: itself when it already is a probability vector (a
// Softmax at the end of the model), else its softmax (logits).
std::vector<double> Probabilities(const Tensor& t) {
  double sum = 0;
  bool in_range = true;
  for (const float v : t.f) {
    sum += v;
    in_range = in_range && v >= 0 && v <= 1;
  }
  std::vector<double> p(t.f.begin(), t.f.end());
  if (in_range && std::abs(sum - 1) <= 1e-3) return p;
  const double max = *std::max_element(p.begin(), p.end());
  double total = 0;
  for (double& v : p) total += (v = std::exp(v - max));
  for (double& v : p) v /= total;
  return p;
}

std::vector<int64_t> Histogram(const std::vector<double>& edges,
                               const std::vector<double>& values) {
  std::vector<int64_t> counts(edges.size() + 1, 0);
  for (const double v : values) {
    const int bin = BinOf(edges.data(), static_cast<int>(edges.size()), v);
    if (bin >= 0) ++counts[bin];
  }
  return counts;
}

}  // namespace

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

absl::StatusOr<v1::ReferenceStatistics> ComputeReferenceStatistics(
    const ReferenceRun& run, const std::vector<v1::MonitoredFeature>& features) {
  const size_t n = run.inputs.size();
  if (n == 0 || run.first_outputs.size() != n || (!run.labels.empty() && run.labels.size() != n)) {
    return absl::InvalidArgumentError("reference statistics need samples and their outputs");
  }
  v1::ReferenceStatistics stats;
  stats.set_source(v1::ReferenceStatistics::VALIDATION_SET);
  stats.set_samples(static_cast<int64_t>(n));
  for (const v1::MonitoredFeature& feature : features) {
    std::vector<double> values;
    for (size_t s = 0; s < n; ++s) {
      const auto it = run.inputs[s].find(feature.input());
      const double v = it == run.inputs[s].end()
                           ? std::nan("")
                           : FeatureValue(feature, it->second.f.data(), it->second.shape);
      if (std::isnan(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("feature ", feature.name(), " is not a number on sample ", s));
      }
      values.push_back(v);
    }
    v1::FeatureReference* ref = stats.add_features();
    *ref->mutable_feature() = feature;
    const std::vector<double> edges = DecileEdges(values);
    ref->mutable_edges()->Add(edges.begin(), edges.end());
    const std::vector<int64_t> counts = Histogram(edges, values);
    ref->mutable_counts()->Add(counts.begin(), counts.end());
  }
  const bool classifier = IsClassifier(run.first_outputs[0]);
  stats.set_classifier(classifier);
  if (classifier) {
    const int64_t classes = run.first_outputs[0].size();
    std::vector<int64_t> class_counts(classes, 0), confidence(kConfidenceBins, 0);
    for (size_t s = 0; s < n; ++s) {
      const Tensor& out = run.first_outputs[s];
      if (out.size() != classes) return absl::InvalidArgumentError("outputs differ in size");
      const std::vector<double> p = Probabilities(out);
      const int64_t top = std::max_element(p.begin(), p.end()) - p.begin();
      ++class_counts[top];
      ++confidence[std::clamp(static_cast<int>(p[top] * kConfidenceBins), 0, kConfidenceBins - 1)];
      if (!run.labels.empty()) {
        stats.set_labelled(stats.labelled() + 1);
        stats.set_correct(stats.correct() + (top == run.labels[s]));
      }
    }
    stats.mutable_class_counts()->Add(class_counts.begin(), class_counts.end());
    stats.mutable_confidence_counts()->Add(confidence.begin(), confidence.end());
  } else {
    std::vector<double> values;
    for (const Tensor& out : run.first_outputs) {
      double sum = 0;
      for (const float v : out.f) sum += v;
      values.push_back(out.f.empty() ? 0 : sum / static_cast<double>(out.f.size()));
    }
    const std::vector<double> edges = DecileEdges(values);
    stats.mutable_prediction_edges()->Add(edges.begin(), edges.end());
    const std::vector<int64_t> counts = Histogram(edges, values);
    stats.mutable_prediction_counts()->Add(counts.begin(), counts.end());
  }
  return stats;
}

}  // namespace edgeloop::compiler
