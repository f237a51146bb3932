#include "telemetry/analysis.h"

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/telemetry_window.h"
#include "registry/registry.h"
#include "telemetry/accuracy.h"
#include "telemetry/latency_histogram.h"
#include "telemetry/window_store.h"

namespace edgeloop::telemetry {
namespace {

template <typename Counts>
std::vector<double> AsDoubles(const Counts& counts) {
  return std::vector<double>(counts.begin(), counts.end());
}

template <typename Counts>
int64_t Total(const Counts& counts) {
  int64_t n = 0;
  for (const int64_t c : counts) n += c;
  return n;
}

void SetProportion(int64_t successes, int64_t trials, v1::Proportion* out) {
  const Proportion p = Wilson(successes, trials);
  out->set_successes(p.successes);
  out->set_trials(p.trials);
  out->set_value(p.value);
  out->set_low(p.low);
  out->set_high(p.high);
}

// PSI, JS and KS of `actual` against `reference` (same bins, both non-empty); false when they
// cannot be compared.
template <typename A, typename B>
bool Compare(const A& reference, const B& actual, v1::FeatureDrift* out) {
  if (reference.size() != actual.size() || Total(reference) <= 0 || Total(actual) <= 0) {
    return false;
  }
  const std::vector<double> r = AsDoubles(reference), a = AsDoubles(actual);
  absl::StatusOr<double> psi = Psi(r, a);
  absl::StatusOr<double> js = JensenShannonDistance(r, a);
  absl::StatusOr<KsResult> ks = KolmogorovSmirnov(r, a);
  if (!psi.ok() || !js.ok() || !ks.ok()) return false;
  out->set_count(Total(actual));
  out->set_psi(*psi);
  out->set_jensen_shannon(*js);
  out->set_ks_statistic(ks->statistic);
  out->set_ks_p_value(ks->p_value);
  return true;
}

// Benjamini-Hochberg adjusted p-values: p_(i) * m / i, made monotone from the largest rank
// down and capped at 1 (as statsmodels' fdr_bh reports them).
std::vector<double> AdjustedP(const std::vector<double>& p) {
  const size_t m = p.size();
  std::vector<size_t> order(m);
  for (size_t i = 0; i < m; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  std::vector<double> adjusted(m);
  double running = 1.0;
  for (size_t rank = m; rank >= 1; --rank) {
    const size_t i = order[rank - 1];
    running = std::min(running, p[i] * static_cast<double>(m) / static_cast<double>(rank));
    adjusted[i] = running;
  }
  return adjusted;
}

}  // namespace

v1::TelemetrySummary Summarize(const v1::TelemetryWindow& sum, int64_t windows,
                               const v1::ReferenceStatistics* reference,
                               const DriftThresholds& thresholds) {
  v1::TelemetrySummary s;
  s.set_start_ms(sum.start_ms());
  s.set_end_ms(sum.end_ms());
  s.set_windows(windows);
  s.set_requests(sum.requests());
  SetProportion(sum.errors(), sum.requests(), s.mutable_errors());
  const std::vector<int64_t> latency(sum.latency_counts().begin(), sum.latency_counts().end());
  if (Total(latency) > 0) {
    s.set_latency_p50_us(LatencyQuantile(latency, 0.5).value_or(0));
    s.set_latency_p95_us(LatencyQuantile(latency, 0.95).value_or(0));
    s.set_latency_p99_us(LatencyQuantile(latency, 0.99).value_or(0));
  }
  SetProportion(Total(sum.correct()), Total(sum.labelled()), s.mutable_accuracy());
  s.set_late_labels(sum.late_labels());
  *s.mutable_class_counts() = sum.class_counts();
  for (const v1::TelemetryWindow::Shadow& shadow : sum.shadows()) {
    v1::ShadowSummary* out = s.add_shadows();
    out->set_version(shadow.version());
    out->set_requests(shadow.requests());
    SetProportion(shadow.agreed(), shadow.requests(), out->mutable_agreement());
    out->set_errors(shadow.errors());
    out->set_skipped(shadow.skipped());
    const std::vector<int64_t> run(shadow.latency_counts().begin(), shadow.latency_counts().end());
    if (Total(run) > 0) out->set_latency_p95_us(LatencyQuantile(run, 0.95).value_or(0));
  }
  if (reference == nullptr) return s;

  std::map<std::string, const v1::TelemetryWindow::Feature*> measured;
  for (const auto& f : sum.features()) measured[f.name()] = &f;
  std::vector<double> p_values;
  for (const v1::FeatureReference& ref : reference->features()) {
    auto it = measured.find(ref.feature().name());
    if (it == measured.end()) continue;
    v1::FeatureDrift drift;
    drift.set_feature(ref.feature().name());
    if (!Compare(ref.counts(), it->second->counts(), &drift)) continue;
    p_values.push_back(drift.ks_p_value());
    *s.add_features() = std::move(drift);
  }
  const std::vector<bool> rejected = BenjaminiHochberg(p_values, thresholds.ks_alpha);
  const std::vector<double> adjusted = AdjustedP(p_values);
  int drifted = 0, judged = 0;
  for (int i = 0; i < s.features_size(); ++i) {
    v1::FeatureDrift* f = s.mutable_features(i);
    f->set_ks_p_adjusted(adjusted[static_cast<size_t>(i)]);
    f->set_too_few(f->count() < thresholds.min_count);
    if (f->too_few()) continue;
    ++judged;
    f->set_drifted(f->psi() >= thresholds.psi || f->jensen_shannon() >= thresholds.jensen_shannon ||
                   rejected[static_cast<size_t>(i)]);
    if (f->drifted()) ++drifted;
  }
  s.set_drifted_features(drifted);
  if (judged > 0) s.set_drifted_share(static_cast<double>(drifted) / judged);
  v1::FeatureDrift prediction;
  prediction.set_feature("prediction");
  const bool compared =
      reference->classifier()
          ? Compare(reference->class_counts(), sum.class_counts(), &prediction)
          : Compare(reference->prediction_counts(), sum.prediction_counts(), &prediction);
  if (compared) {
    // Classes have no order, so KS says nothing about them; PSI and JS do.
    if (reference->classifier()) {
      prediction.set_ks_statistic(0);
      prediction.set_ks_p_value(1);
    }
    prediction.set_ks_p_adjusted(prediction.ks_p_value());
    prediction.set_too_few(prediction.count() < thresholds.min_count);
    prediction.set_drifted(!prediction.too_few() &&
                           (prediction.psi() >= thresholds.psi ||
                            prediction.jensen_shannon() >= thresholds.jensen_shannon ||
                            prediction.ks_p_value() < thresholds.ks_alpha));
    *s.mutable_prediction() = std::move(prediction);
  }
  return s;
}

absl::StatusOr<v1::ModelTelemetry> TelemetryQueries::Model(
    const v1::GetModelTelemetryRequest& request) const {
  store::Database& db = *options_.database;
  ASSIGN_OR_RETURN(std::optional<int64_t> model_id,
                   registry::Registry::FindModelId(db, request.model()));
  if (!model_id.has_value()) {
    return absl::NotFoundError(absl::StrCat("no model \"", request.model().substr(0, 64), "\""));
  }
  const int64_t to =
      request.to_ms() > 0 ? request.to_ms() : absl::ToUnixMillis(options_.clock->Now()) + 1;
  const int64_t from = request.from_ms() > 0 ? request.from_ms() : to - 3600 * 1000;
  if (from >= to) {
    return absl::InvalidArgumentError(
        absl::StrCat("from (", from, ") must be before to (", to, ")"));
  }
  const int64_t bucket_ms = absl::ToInt64Milliseconds(options_.bucket);
  int64_t step = request.step_seconds() * 1000;
  if (request.step_seconds() < 0) return absl::InvalidArgumentError("step must not be negative");
  if (step > 0) {
    step = std::max(step, bucket_ms);
    if ((to - from) / step > kMaxPoints) {
      return absl::InvalidArgumentError(absl::StrCat("step ", request.step_seconds(),
                                                     " s gives more than ", kMaxPoints,
                                                     " points; choose a longer one"));
    }
  }
  ASSIGN_OR_RETURN(const v1::DriftSettings overrides, DriftSettingsStore::Overrides(db, *model_id));
  const DriftThresholds thresholds = WithOverrides(options_.drift, overrides);
  std::optional<int64_t> version;
  if (request.version() > 0) version = request.version();
  std::optional<std::string> cohort;
  if (!request.cohort().empty()) cohort = request.cohort();
  ASSIGN_OR_RETURN(std::vector<Aggregate> aggregates,
                   WindowStore::Aggregates(db, *model_id, version, cohort, from, to));

  struct Sums {
    v1::TelemetryWindow total;
    int64_t windows = 0;
    std::map<int64_t, std::pair<v1::TelemetryWindow, int64_t>> points;  // by point start
    std::set<std::string> cohorts, targets;
  };
  std::map<int64_t, Sums> by_version;
  for (const Aggregate& a : aggregates) {
    Sums& s = by_version[a.version];
    MergeWindow(s.total, a.summary, 0);
    s.windows += a.windows;
    s.cohorts.insert(a.cohort);
    s.targets.insert(a.target);
    if (step > 0) {
      const int64_t at = from + (a.bucket_ms - from) / step * step;
      auto& [point, n] = s.points[at];
      MergeWindow(point, a.summary, 0);
      point.set_start_ms(at);
      point.set_end_ms(std::min(at + step, to));
      n += a.windows;
    }
  }
  v1::ModelTelemetry out;
  out.set_model(request.model());
  out.set_from_ms(from);
  out.set_to_ms(to);
  *out.mutable_drift() = ToProto(thresholds);
  out.set_cohort_label(options_.cohort_label);
  for (auto& [number, sums] : by_version) {
    ASSIGN_OR_RETURN(std::optional<v1::ReferenceStatistics> reference,
                     registry::Registry::Reference(db, *model_id, number));
    const v1::ReferenceStatistics* ref = reference.has_value() ? &*reference : nullptr;
    v1::ModelTelemetry::Version* v = out.add_versions();
    v->set_version(number);
    if (ref != nullptr) {
      v->set_reference_source(ref->source());
      if (ref->labelled() > 0) {
        SetProportion(ref->correct(), ref->labelled(), v->mutable_reference_accuracy());
      }
    }
    sums.total.set_start_ms(from);
    sums.total.set_end_ms(to);
    *v->mutable_total() = Summarize(sums.total, sums.windows, ref, thresholds);
    for (const auto& [at, point] : sums.points) {
      *v->add_points() = Summarize(point.first, point.second, ref, thresholds);
    }
    for (const std::string& c : sums.cohorts) v->add_cohorts(c);
    for (const std::string& t : sums.targets) v->add_targets(t);
  }
  return out;
}

absl::StatusOr<v1::TelemetrySummary> TelemetryQueries::DevicesSummary(
    int64_t model_id, int64_t version, const std::set<std::string>* devices, int64_t from_ms,
    int64_t to_ms) const {
  store::Database& db = *options_.database;
  ASSIGN_OR_RETURN(const v1::DriftSettings overrides, DriftSettingsStore::Overrides(db, model_id));
  ASSIGN_OR_RETURN(std::optional<v1::ReferenceStatistics> reference,
                   registry::Registry::Reference(db, model_id, version));
  ASSIGN_OR_RETURN(WindowSum sum,
                   WindowStore::SumWindows(db, model_id, version, devices, from_ms, to_ms));
  sum.sum.set_start_ms(from_ms);
  sum.sum.set_end_ms(to_ms);
  return Summarize(sum.sum, sum.windows, reference.has_value() ? &*reference : nullptr,
                   WithOverrides(options_.drift, overrides));
}

absl::StatusOr<v1::DeviceTelemetryReport> TelemetryQueries::Device(
    const v1::GetDeviceTelemetryRequest& request) const {
  store::Database& db = *options_.database;
  const int64_t to =
      request.to_ms() > 0 ? request.to_ms() : absl::ToUnixMillis(options_.clock->Now()) + 1;
  const int64_t from = request.from_ms() > 0 ? request.from_ms() : to - 24 * 3600 * 1000;
  if (request.limit() < 0 || request.limit() > 500) {
    return absl::InvalidArgumentError("limit must be 1 to 500");
  }
  const int limit = request.limit() > 0 ? request.limit() : 20;
  v1::DeviceTelemetryReport out;
  out.set_device_id(request.device_id());
  ASSIGN_OR_RETURN(std::optional<DeviceReports> reports,
                   WindowStore::Reports(db, request.device_id()));
  if (reports.has_value()) {
    out.set_windows_stored(reports->windows_stored);
    out.set_windows_refused(reports->windows_refused);
    out.set_windows_dropped(reports->windows_dropped);
    out.set_last_report_ms(reports->last_report_ms);
    out.set_last_refusal(reports->last_refusal);
  }
  ASSIGN_OR_RETURN(std::vector<v1::TelemetryWindow> windows,
                   WindowStore::DeviceWindows(db, request.device_id(), from, to, limit));
  for (v1::TelemetryWindow& w : windows) *out.add_windows() = std::move(w);
  return out;
}

absl::StatusOr<v1::ModelDriftSettings> TelemetryQueries::DriftSettings(
    const std::string& model) const {
  store::Database& db = *options_.database;
  ASSIGN_OR_RETURN(std::optional<int64_t> model_id, registry::Registry::FindModelId(db, model));
  if (!model_id.has_value()) {
    return absl::NotFoundError(absl::StrCat("no model \"", model.substr(0, 64), "\""));
  }
  v1::ModelDriftSettings out;
  out.set_model(model);
  ASSIGN_OR_RETURN(*out.mutable_overrides(), DriftSettingsStore::Overrides(db, *model_id));
  *out.mutable_defaults() = ToProto(options_.drift);
  *out.mutable_effective() = ToProto(WithOverrides(options_.drift, out.overrides()));
  return out;
}

absl::StatusOr<v1::ModelDriftSettings> TelemetryQueries::SetDriftSettings(
    const v1::SetDriftSettingsRequest& request) const {
  RETURN_IF_ERROR(CheckDriftOverrides(request.overrides()));
  store::Database& db = *options_.database;
  ASSIGN_OR_RETURN(std::optional<int64_t> model_id,
                   registry::Registry::FindModelId(db, request.model()));
  if (!model_id.has_value()) {
    return absl::NotFoundError(absl::StrCat("no model \"", request.model().substr(0, 64), "\""));
  }
  RETURN_IF_ERROR(store::RunInTransaction(db, [&](store::Transaction& tx) {
    return DriftSettingsStore::SetOverrides(tx, *model_id, request.overrides(),
                                            absl::ToUnixMillis(options_.clock->Now()));
  }));
  return DriftSettings(request.model());
}

}  // namespace edgeloop::telemetry
