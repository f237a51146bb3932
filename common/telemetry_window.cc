#include "common/telemetry_window.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace edgeloop {

std::string TelemetryWindowId(absl::string_view model, int64_t version, int64_t start_ms) {
  return absl::StrCat(model, "/", version, "/", start_ms);
}

namespace {

void AddCounts(google::protobuf::RepeatedField<int64_t>* into,
               const google::protobuf::RepeatedField<int64_t>& from) {
  if (into->empty()) {
    *into = from;
    return;
  }
  if (into->size() != from.size()) return;  // another spec's bins: not comparable
  if (into->data() == from.data()) return;
  for (int k = 0; k < from.size(); ++k) into->Set(k, into->Get(k) + from.Get(k));
}

}  // namespace

void MergeWindow(v1::TelemetryWindow& into, const v1::TelemetryWindow& from, int max_samples) {
  const bool first = into.end_ms() == 0;  // an empty sum takes the first window's span
  into.set_start_ms(first ? from.start_ms() : std::min(into.start_ms(), from.start_ms()));
  into.set_end_ms(std::max(into.end_ms(), from.end_ms()));
  into.set_requests(into.requests() + from.requests());
  into.set_errors(into.errors() + from.errors());
  into.set_late_labels(into.late_labels() + from.late_labels());
  AddCounts(into.mutable_latency_counts(), from.latency_counts());
  for (const v1::TelemetryWindow::Feature& f : from.features()) {
    v1::TelemetryWindow::Feature* g = nullptr;
    for (v1::TelemetryWindow::Feature& candidate : *into.mutable_features()) {
      if (candidate.name() == f.name()) g = &candidate;
    }
    if (g == nullptr) {
      g = into.add_features();
      g->set_name(f.name());
    }
    AddCounts(g->mutable_counts(), f.counts());
    for (int k = 0; k < f.samples_size() && g->samples_size() < max_samples; ++k) {
      g->add_samples(f.samples(k));
    }
    if (max_samples == 0) g->clear_samples();
  }
  AddCounts(into.mutable_class_counts(), from.class_counts());
  AddCounts(into.mutable_confidence_counts(), from.confidence_counts());
  AddCounts(into.mutable_prediction_counts(), from.prediction_counts());
  AddCounts(into.mutable_labelled(), from.labelled());
  AddCounts(into.mutable_correct(), from.correct());
  AddCounts(into.mutable_predicted_labelled(), from.predicted_labelled());
  for (const v1::TelemetryWindow::Shadow& f : from.shadows()) {
    v1::TelemetryWindow::Shadow* g = nullptr;
    for (v1::TelemetryWindow::Shadow& candidate : *into.mutable_shadows()) {
      if (candidate.version() == f.version()) g = &candidate;
    }
    if (g == nullptr) {
      g = into.add_shadows();
      g->set_version(f.version());
      g->set_module_digest(f.module_digest());
    }
    g->set_requests(g->requests() + f.requests());
    g->set_agreed(g->agreed() + f.agreed());
    g->set_errors(g->errors() + f.errors());
    g->set_skipped(g->skipped() + f.skipped());
    AddCounts(g->mutable_latency_counts(), f.latency_counts());
  }
}

}  // namespace edgeloop
