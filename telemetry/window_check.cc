#include "telemetry/window_check.h"

#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/latency_buckets.h"
#include "common/prediction.h"
#include "common/status.h"
#include "common/telemetry_window.h"

namespace edgeloop::telemetry {
namespace {

using Counts = google::protobuf::RepeatedField<int64_t>;

// A call racing with the agent's close may have its request counted in one window and its
// features (or a label's match) in the next, so the parts of a window may exceed its whole by
// the calls in flight at the close; no device runs more at once than this.
constexpr int64_t kInFlight = 1024;

/// Each count in [0, max]; their sum, in *sum when given.
absl::Status CheckCounts(const Counts& counts, int64_t max, const std::string& what,
                         int64_t* sum = nullptr) {
  int64_t total = 0;
  for (const int64_t c : counts) {
    if (c < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": a negative count"));
    if (c > max) return absl::InvalidArgumentError(absl::StrCat(what, ": an absurd count ", c));
    total += c;  // at most 2^40 * 4096 bins: no overflow
  }
  if (sum != nullptr) *sum = total;
  return absl::OkStatus();
}

/// A histogram of `expected` bins (or none), summing to at most `requests`.
absl::Status CheckHistogram(const Counts& counts, size_t expected, int64_t requests, int64_t max,
                            const std::string& what) {
  if (counts.empty()) return absl::OkStatus();
  if (static_cast<size_t>(counts.size()) != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", counts.size(), " bins, the spec has ", expected));
  }
  int64_t sum = 0;
  RETURN_IF_ERROR(CheckCounts(counts, max, what, &sum));
  if (sum > requests + kInFlight) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", sum, " counted, more than the ", requests, " requests"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckWindow(const v1::TelemetryWindow& w, const v1::MonitoringSpec& spec,
                         absl::Time now, const WindowBounds& bounds) {
  if (w.model() != spec.model() || w.version() != spec.version()) {
    return absl::InvalidArgumentError(absl::StrCat("window of ", w.model().substr(0, 64), "@",
                                                   w.version(), ", not ", spec.model(), "@",
                                                   spec.version()));
  }
  if (w.id() != TelemetryWindowId(w.model(), w.version(), w.start_ms())) {
    return absl::InvalidArgumentError("the window id is not <model>/<version>/<start_ms>");
  }
  // Windows start on whole seconds; one may be shorter than its spec's length (the agent
  // stopped inside it and stayed away past its end), and a spec's length can change between
  // versions of the server's setting, so the length is bounded rather than matched.
  const int64_t length = w.end_ms() - w.start_ms();
  if (w.start_ms() <= 0 || length <= 0 || length > absl::ToInt64Milliseconds(bounds.max_length) ||
      w.start_ms() % 1000 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("[", w.start_ms(), ", ", w.end_ms(), ") is not a window"));
  }
  if (absl::FromUnixMillis(w.end_ms()) > now + bounds.max_skew) {
    return absl::OutOfRangeError(absl::StrCat("the window ends in the future (",
                                              absl::FormatTime(absl::FromUnixMillis(w.end_ms())),
                                              "): is the device's clock right?"));
  }
  if (absl::FromUnixMillis(w.end_ms()) < now - bounds.max_age) {
    return absl::OutOfRangeError(absl::StrCat("the window ended more than ",
                                              absl::FormatDuration(bounds.max_age),
                                              " ago, past the retention"));
  }
  const int64_t max = bounds.max_count;
  const int64_t requests = w.requests();
  if (requests < 0 || requests > max || w.errors() < 0 || w.errors() > requests + kInFlight ||
      w.late_labels() < 0 || w.late_labels() > max) {
    return absl::InvalidArgumentError(absl::StrCat("requests ", requests, ", errors ", w.errors(),
                                                   ", late labels ", w.late_labels(),
                                                   ": not counts"));
  }
  RETURN_IF_ERROR(CheckHistogram(w.latency_counts(), kLatencyBuckets, requests, max, "latency"));
  // Candidates shadowed beside this version: a few (one per rollout at a time), each a subset
  // of this version's calls.
  constexpr int kMaxShadows = 4;
  if (w.shadows_size() > kMaxShadows) {
    return absl::InvalidArgumentError(
        absl::StrCat(w.shadows_size(), " shadowed candidates, at most ", kMaxShadows));
  }
  std::set<int64_t> shadowed;
  for (const v1::TelemetryWindow::Shadow& sh : w.shadows()) {
    const std::string what = absl::StrCat("shadow of version ", sh.version());
    if (sh.version() <= 0 || sh.version() == w.version() || !shadowed.insert(sh.version()).second) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": not another version, or twice"));
    }
    if (sh.requests() < 0 || sh.requests() > requests + kInFlight || sh.agreed() < 0 ||
        sh.agreed() > sh.requests() || sh.errors() < 0 || sh.errors() > sh.requests() ||
        sh.skipped() < 0 || sh.skipped() > requests + kInFlight) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": requests ", sh.requests(), ", agreed ", sh.agreed(), ", errors ", sh.errors(),
          ", skipped ", sh.skipped(), " do not fit ", requests, " requests"));
    }
    RETURN_IF_ERROR(
        CheckHistogram(sh.latency_counts(), kLatencyBuckets, sh.requests(), max, what));
  }

  std::map<std::string, const v1::MonitoringSpec::Feature*> features;
  for (const v1::MonitoringSpec::Feature& f : spec.features()) features[f.feature().name()] = &f;
  std::set<std::string> seen;
  for (const v1::TelemetryWindow::Feature& f : w.features()) {
    auto it = features.find(f.name());
    if (it == features.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("feature \"", f.name().substr(0, 64), "\" is not monitored"));
    }
    if (!seen.insert(f.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat("feature \"", f.name(), "\" twice"));
    }
    const std::string what = absl::StrCat("feature ", f.name());
    const int edges = it->second->edges_size();
    if (!f.counts().empty() && edges == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": binned, but the version has no reference edges"));
    }
    RETURN_IF_ERROR(CheckHistogram(f.counts(), edges + 1, requests, max, what));
    const int max_samples = spec.reference_source() == v1::ReferenceStatistics::SOURCE_UNSPECIFIED
                                ? spec.sample_values()
                                : bounds.max_samples;
    if (f.samples_size() > max_samples) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": ", f.samples_size(), " samples, at most ", max_samples));
    }
    for (const float v : f.samples()) {
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": a sample is not finite"));
      }
    }
  }

  if (w.class_counts_size() > kMaxClasses) {
    return absl::InvalidArgumentError(absl::StrCat(w.class_counts_size(), " classes"));
  }
  RETURN_IF_ERROR(
      CheckHistogram(w.class_counts(), w.class_counts_size(), requests, max, "class counts"));
  RETURN_IF_ERROR(
      CheckHistogram(w.confidence_counts(), kConfidenceBins, requests, max, "confidence"));
  RETURN_IF_ERROR(CheckHistogram(w.prediction_counts(), spec.prediction_edges_size() + 1, requests,
                                 max, "predictions"));
  if (!w.prediction_counts().empty() && spec.prediction_edges().empty()) {
    return absl::InvalidArgumentError("predictions binned, but the spec has no prediction edges");
  }

  // Labelled outcomes, per class.
  const int classes = w.labelled_size();
  if (classes > kMaxClasses || w.correct_size() != classes ||
      (w.predicted_labelled_size() != classes && w.predicted_labelled_size() != 0)) {
    return absl::InvalidArgumentError(absl::StrCat("labelled outcomes for ", classes, ", ",
                                                   w.correct_size(), " and ",
                                                   w.predicted_labelled_size(), " classes"));
  }
  RETURN_IF_ERROR(CheckCounts(w.labelled(), max, "labelled"));
  RETURN_IF_ERROR(CheckCounts(w.predicted_labelled(), max, "predicted labelled"));
  RETURN_IF_ERROR(CheckCounts(w.correct(), max, "correct"));
  for (int k = 0; k < classes; ++k) {
    if (w.correct(k) > w.labelled(k) + kInFlight) {
      return absl::InvalidArgumentError(absl::StrCat("class ", k, ": ", w.correct(k),
                                                     " correct of ", w.labelled(k), " labelled"));
    }
  }
  return absl::OkStatus();
}

}  // namespace edgeloop::telemetry
