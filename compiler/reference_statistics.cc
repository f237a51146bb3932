#include "compiler/reference_statistics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/monitored_feature.h"
#include "common/prediction.h"

namespace edgeloop::compiler {
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
    const std::vector<int64_t> counts = BinCounts(edges, values);
    ref->mutable_counts()->Add(counts.begin(), counts.end());
  }
  const bool classifier = IsClassifierOutput(run.first_outputs[0].shape);
  stats.set_classifier(classifier);
  if (classifier) {
    const int64_t classes = run.first_outputs[0].size();
    std::vector<int64_t> class_counts(classes, 0), confidence(kConfidenceBins, 0);
    for (size_t s = 0; s < n; ++s) {
      const Tensor& out = run.first_outputs[s];
      if (out.size() != classes) return absl::InvalidArgumentError("outputs differ in size");
      const TopClass top = TopClassOf(out.f.data(), out.size());
      if (top.index < 0) {
        return absl::InvalidArgumentError(absl::StrCat("the output is not a number on sample ", s));
      }
      ++class_counts[top.index];
      ++confidence[ConfidenceBin(top.probability)];
      if (!run.labels.empty()) {
        stats.set_labelled(stats.labelled() + 1);
        stats.set_correct(stats.correct() + (top.index == run.labels[s]));
      }
    }
    stats.mutable_class_counts()->Add(class_counts.begin(), class_counts.end());
    stats.mutable_confidence_counts()->Add(confidence.begin(), confidence.end());
  } else {
    std::vector<double> values;
    for (size_t s = 0; s < n; ++s) {
      const Tensor& out = run.first_outputs[s];
      const double v = PredictionValue(out.f.data(), out.size());
      if (std::isnan(v)) {
        return absl::InvalidArgumentError(absl::StrCat("the output is not a number on sample ", s));
      }
      values.push_back(v);
    }
    const std::vector<double> edges = DecileEdges(values);
    stats.mutable_prediction_edges()->Add(edges.begin(), edges.end());
    const std::vector<int64_t> counts = BinCounts(edges, values);
    stats.mutable_prediction_counts()->Add(counts.begin(), counts.end());
  }
  return stats;
}

}  // namespace edgeloop::compiler
