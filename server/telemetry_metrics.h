#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "telemetry/analysis.h"
#include "telemetry/ingest.h"

namespace edgeloop::server {

/// The fleet's telemetry on /metrics: what ingestion did (windows stored, refused by reason,
/// duplicates, device drops, throttled reports, batches, queue and lag), and per model,
/// version and cohort what the devices' windows counted (calls, errors, labels, correct
/// labels, and on-device latency as a histogram on the devices' own buckets), plus each
/// version's drift over the last `drift_window` (recomputed at most every `drift_every`, so
/// scrapes do not load the database). Labels are bounded: models × versions × the cohort cap.
class TelemetryMetrics {
 public:
  TelemetryMetrics(prometheus::Registry& registry, const telemetry::TelemetryIngest* ingest,
                   const telemetry::TelemetryQueries* queries, const Clock* clock);

  /// Brings every series up to date; called at each scrape.
  void Refresh();

  static constexpr absl::Duration kDriftWindow = absl::Minutes(15);
  static constexpr absl::Duration kDriftEvery = absl::Seconds(60);

 private:
  void RefreshDrift(const std::map<telemetry::SeriesKey, telemetry::SeriesTotals>& series);

  const telemetry::TelemetryIngest& ingest_;
  const telemetry::TelemetryQueries& queries_;
  const Clock& clock_;
  std::mutex mu_;
  prometheus::Family<prometheus::Counter>* windows_;
  std::map<std::string, prometheus::Counter*> window_outcomes_;
  prometheus::Counter* device_dropped_;
  prometheus::Counter* throttled_;
  prometheus::Counter* batches_ok_;
  prometheus::Counter* batches_failed_;
  prometheus::Gauge* pending_;
  prometheus::Gauge* lag_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* errors_;
  prometheus::Family<prometheus::Counter>* labelled_;
  prometheus::Family<prometheus::Counter>* correct_;
  prometheus::Family<prometheus::Histogram>* latency_;
  std::map<telemetry::SeriesKey, telemetry::SeriesTotals> exported_;  // what the series show
  prometheus::Family<prometheus::Gauge>* drifted_features_;
  prometheus::Family<prometheus::Gauge>* drift_share_;
  prometheus::Family<prometheus::Gauge>* prediction_psi_;
  prometheus::Family<prometheus::Gauge>* reference_accuracy_;
  prometheus::Family<prometheus::Gauge>* cohort_drift_share_;
  absl::Time next_drift_ = absl::InfinitePast();
};

}  // namespace edgeloop::server
