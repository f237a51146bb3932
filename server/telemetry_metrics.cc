#include "server/telemetry_metrics.h"

#include <set>

#include "common/latency_buckets.h"
#include "common/logging.h"

namespace edgeloop::server {
namespace {

void Advance(prometheus::Counter* counter, double total) {
  if (total > counter->Value()) counter->Increment(total - counter->Value());
}

const prometheus::Histogram::BucketBoundaries& DeviceLatencyBuckets() {
  static const auto* buckets = [] {
    auto* b = new prometheus::Histogram::BucketBoundaries;
    for (const double us : kLatencyBoundsUs) b->push_back(us / 1e6);
    return b;
  }();
  return *buckets;
}

}  // namespace

TelemetryMetrics::TelemetryMetrics(prometheus::Registry& registry,
                                   const telemetry::TelemetryIngest* ingest,
                                   const telemetry::TelemetryQueries* queries, const Clock* clock)
    : ingest_(*ingest), queries_(*queries), clock_(*clock) {
  windows_ = &prometheus::BuildCounter()
                  .Name("edgeloop_telemetry_windows_total")
                  .Help(
                      "Telemetry windows devices sent, by outcome: stored, duplicate (sent "
                      "again, stored once) or refused_<reason>.")
                  .Register(registry);
  window_outcomes_["stored"] = &windows_->Add({{"outcome", "stored"}});
  window_outcomes_["duplicate"] = &windows_->Add({{"outcome", "duplicate"}});
  for (int r = 0; r < static_cast<int>(telemetry::Refusal::kCount); ++r) {
    const std::string outcome =
        std::string("refused_") + telemetry::RefusalLabel(static_cast<telemetry::Refusal>(r));
    window_outcomes_[outcome] = &windows_->Add({{"outcome", outcome}});
  }
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
  };
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
  };
  device_dropped_ = counter("edgeloop_telemetry_device_dropped_windows_total",
                            "Windows devices dropped themselves (spool full), as they reported.");
  throttled_ = counter("edgeloop_telemetry_reports_throttled_total",
                       "Reports answered RESOURCE_EXHAUSTED (device over its rate, or the "
                       "writer behind).");
  auto& batches = prometheus::BuildCounter()
                      .Name("edgeloop_telemetry_batches_total")
                      .Help("Transactions of the telemetry writer, by result.")
                      .Register(registry);
  batches_ok_ = &batches.Add({{"result", "ok"}});
  batches_failed_ = &batches.Add({{"result", "error"}});
  pending_ = gauge("edgeloop_telemetry_pending_windows", "Windows waiting for the writer.");
  lag_ = gauge("edgeloop_telemetry_ingest_lag_seconds",
               "The last batch's oldest window: from its end to its commit.");
  requests_ = &prometheus::BuildCounter()
                   .Name("edgeloop_model_requests_total")
                   .Help("Calls devices counted, by model, version and cohort.")
                   .Register(registry);
  errors_ = &prometheus::BuildCounter()
                 .Name("edgeloop_model_errors_total")
                 .Help("Calls that failed in the module on the device.")
                 .Register(registry);
  labelled_ = &prometheus::BuildCounter()
                   .Name("edgeloop_model_labelled_total")
                   .Help("Predictions labelled through Feedback.")
                   .Register(registry);
  correct_ = &prometheus::BuildCounter()
                  .Name("edgeloop_model_correct_total")
                  .Help("Labelled predictions that matched their label.")
                  .Register(registry);
  latency_ = &prometheus::BuildHistogram()
                  .Name("edgeloop_model_device_latency_seconds")
                  .Help(
                      "Run time on the device, on the devices' buckets (the sum is estimated "
                      "from bucket midpoints: devices send counts only).")
                  .Register(registry);
  drifted_features_ = &prometheus::BuildGauge()
                           .Name("edgeloop_model_drifted_features")
                           .Help(
                               "Features drifted against the version's reference over the "
                               "last 15 minutes.")
                           .Register(registry);
  drift_share_ = &prometheus::BuildGauge()
                      .Name("edgeloop_model_drifted_feature_ratio")
                      .Help(
                          "Share of the version's judged features that drifted over the last "
                          "15 minutes.")
                      .Register(registry);
  prediction_psi_ = &prometheus::BuildGauge()
                         .Name("edgeloop_model_prediction_psi")
                         .Help(
                             "PSI of the version's predictions against its reference over the "
                             "last 15 minutes.")
                         .Register(registry);
  cohort_drift_share_ = &prometheus::BuildGauge()
                             .Name("edgeloop_model_cohort_drifted_feature_ratio")
                             .Help(
                                 "Share of the version's judged features that drifted over the "
                                 "last 15 minutes on the devices of one cohort.")
                             .Register(registry);
  reference_accuracy_ = &prometheus::BuildGauge()
                             .Name("edgeloop_model_reference_accuracy")
                             .Help(
                                 "Accuracy of the version on its labelled validation set, what "
                                 "the devices' labelled accuracy is compared with.")
                             .Register(registry);
}

void TelemetryMetrics::Refresh() {
  std::lock_guard lock(mu_);
  const telemetry::IngestCounts& c = ingest_.counts();
  Advance(window_outcomes_["stored"], static_cast<double>(c.windows_stored.load()));
  Advance(window_outcomes_["duplicate"], static_cast<double>(c.windows_duplicate.load()));
  for (int r = 0; r < static_cast<int>(telemetry::Refusal::kCount); ++r) {
    Advance(window_outcomes_[std::string("refused_") +
                             telemetry::RefusalLabel(static_cast<telemetry::Refusal>(r))],
            static_cast<double>(c.windows_refused[static_cast<size_t>(r)].load()));
  }
  Advance(device_dropped_, static_cast<double>(c.windows_dropped_by_devices.load()));
  Advance(throttled_, static_cast<double>(c.reports_throttled.load()));
  Advance(batches_ok_, static_cast<double>(c.batches.load()));
  Advance(batches_failed_, static_cast<double>(c.batch_failures.load()));
  pending_->Set(static_cast<double>(c.pending_windows.load()));
  lag_->Set(c.lag_seconds.load());

  const std::map<telemetry::SeriesKey, telemetry::SeriesTotals> series = ingest_.Series();
  for (const auto& [key, totals] : series) {
    const auto& [model, version, cohort] = key;
    const prometheus::Labels labels{
        {"model", model}, {"version", std::to_string(version)}, {"cohort", cohort}};
    telemetry::SeriesTotals& seen = exported_[key];
    Advance(&requests_->Add(labels), static_cast<double>(totals.requests));
    Advance(&errors_->Add(labels), static_cast<double>(totals.errors));
    Advance(&labelled_->Add(labels), static_cast<double>(totals.labelled));
    Advance(&correct_->Add(labels), static_cast<double>(totals.correct));
    // The histogram takes what the buckets grew by since the last scrape.
    std::vector<double> increments(DeviceLatencyBuckets().size() + 1, 0);
    seen.latency.resize(totals.latency.size(), 0);
    double sum = 0;
    bool grew = false;
    for (size_t k = 0; k < totals.latency.size() && k < increments.size(); ++k) {
      const int64_t delta = totals.latency[k] - seen.latency[k];
      if (delta <= 0) continue;
      grew = true;
      increments[k] = static_cast<double>(delta);
      const double low = k == 0 ? 0 : kLatencyBoundsUs[k - 1];
      const double high = k < kLatencyBoundsUs.size() ? kLatencyBoundsUs[k] : low;
      sum += static_cast<double>(delta) * (low + high) / 2 / 1e6;
    }
    if (grew) latency_->Add(labels, DeviceLatencyBuckets()).ObserveMultiple(increments, sum);
    seen = totals;
  }
  if (clock_.Now() >= next_drift_) {
    next_drift_ = clock_.Now() + kDriftEvery;
    RefreshDrift(series);
  }
}

void TelemetryMetrics::RefreshDrift(
    const std::map<telemetry::SeriesKey, telemetry::SeriesTotals>& series) {
  std::set<std::string> models;
  for (const auto& [key, totals] : series) models.insert(std::get<0>(key));
  const int64_t now_ms = absl::ToUnixMillis(clock_.Now());
  for (const std::string& model : models) {
    v1::GetModelTelemetryRequest request;
    request.set_model(model);
    request.set_from_ms(now_ms - absl::ToInt64Milliseconds(kDriftWindow));
    request.set_to_ms(now_ms + 1);
    absl::StatusOr<v1::ModelTelemetry> telemetry = queries_.Model(request);
    if (!telemetry.ok()) {
      Log(LogLevel::kWarning, "drift for /metrics not computed",
          {{"model", model}, {"error", telemetry.status().ToString()}});
      continue;
    }
    for (const v1::ModelTelemetry::Version& v : telemetry->versions()) {
      const prometheus::Labels labels{{"model", model}, {"version", std::to_string(v.version())}};
      if (v.reference_accuracy().trials() > 0) {
        reference_accuracy_->Add(labels).Set(v.reference_accuracy().value());
      }
      if (v.total().features_size() == 0) continue;  // no reference yet: nothing to say
      drifted_features_->Add(labels).Set(v.total().drifted_features());
      drift_share_->Add(labels).Set(v.total().drifted_share());
      if (v.total().has_prediction()) {
        prediction_psi_->Add(labels).Set(v.total().prediction().psi());
      }
    }
    // Then per cohort (at most --telemetry-max-cohorts of them): one query each, every version.
    std::set<std::string> cohorts;
    for (const v1::ModelTelemetry::Version& v : telemetry->versions()) {
      cohorts.insert(v.cohorts().begin(), v.cohorts().end());
    }
    cohorts.erase("");  // devices without the label: the API has no filter for them alone
    for (const std::string& cohort : cohorts) {
      request.set_cohort(cohort);
      absl::StatusOr<v1::ModelTelemetry> part = queries_.Model(request);
      if (!part.ok()) continue;
      for (const v1::ModelTelemetry::Version& v : part->versions()) {
        if (v.total().features_size() == 0) continue;
        cohort_drift_share_
            ->Add({{"model", model}, {"version", std::to_string(v.version())}, {"cohort", cohort}})
            .Set(v.total().drifted_share());
      }
    }
  }
}

}  // namespace edgeloop::server
