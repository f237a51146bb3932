#include "telemetry/first_reference.h"

#include <cmath>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/monitored_feature.h"
#include "common/prediction.h"
#include "common/status.h"

namespace edgeloop::telemetry {
namespace {

// Adds `from` to `into` bin by bin; the first histogram sets the length, a different one
// (another spec's) is ignored.
template <typename Counts>
void Add(std::vector<int64_t>& into, const Counts& from) {
  if (from.empty()) return;
  if (into.empty()) into.assign(from.size(), 0);
  if (static_cast<size_t>(from.size()) != into.size()) return;
  for (int i = 0; i < from.size(); ++i) into[static_cast<size_t>(i)] += from[i];
}

}  // namespace

absl::StatusOr<std::optional<v1::ReferenceStatistics>> ReferenceFromWindows(
    const std::vector<v1::TelemetryWindow>& windows, const v1::MonitoringSpec& spec,
    int min_samples) {
  if (spec.features_size() == 0) {
    return absl::InvalidArgumentError("the version monitors no features");
  }
  std::map<std::string, std::vector<double>> values;
  std::vector<int64_t> classes, confidence;
  int64_t calls = 0;
  for (const v1::TelemetryWindow& w : windows) {
    if (w.model() != spec.model() || w.version() != spec.version()) continue;
    calls += w.requests();
    for (const v1::TelemetryWindow::Feature& f : w.features()) {
      std::vector<double>& v = values[f.name()];
      for (const float x : f.samples()) {
        if (std::isfinite(x)) v.push_back(x);
      }
    }
    Add(classes, w.class_counts());
    Add(confidence, w.confidence_counts());
  }
  for (const v1::MonitoringSpec::Feature& f : spec.features()) {
    if (values[f.feature().name()].size() < static_cast<size_t>(min_samples)) {
      return std::nullopt;
    }
  }
  v1::ReferenceStatistics reference;
  reference.set_source(v1::ReferenceStatistics::FIRST_WINDOWS);
  reference.set_samples(calls);
  for (const v1::MonitoringSpec::Feature& f : spec.features()) {
    const std::vector<double>& v = values[f.feature().name()];
    v1::FeatureReference* out = reference.add_features();
    *out->mutable_feature() = f.feature();
    const std::vector<double> edges = DecileEdges(v);
    const std::vector<int64_t> counts = BinCounts(edges, v);
    out->mutable_edges()->Add(edges.begin(), edges.end());
    out->mutable_counts()->Add(counts.begin(), counts.end());
  }
  if (!classes.empty() && confidence.size() == static_cast<size_t>(kConfidenceBins)) {
    reference.set_classifier(true);
    reference.mutable_class_counts()->Add(classes.begin(), classes.end());
    reference.mutable_confidence_counts()->Add(confidence.begin(), confidence.end());
  }
  // Made of what devices sent: checked as any reference is before devices bin on it.
  RETURN_IF_ERROR(CheckReferenceStatistics(reference));
  return reference;
}

}  // namespace edgeloop::telemetry
