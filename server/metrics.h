#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "fleet/device_registry.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "registry/registry.h"
#include "server/rollout_metrics.h"
#include "server/telemetry_metrics.h"

namespace edgeloop::server {

/// "GET", "POST", ... for the methods HTTP defines that the API may use; "other" for the rest.
absl::string_view MethodLabel(absl::string_view method);

/// The server's Prometheus metrics: requests per transport, route and code, latency
/// histograms, registry sizes and process metrics. Routes are the templates
/// ("/v1/models/{model}"), never raw paths, and methods come from a fixed set (MethodLabel),
/// so label cardinality stays bounded. Thread-safe.
class ServerMetrics {
 public:
  ServerMetrics(registry::Registry* registry, fleet::DeviceRegistry* devices,
                const telemetry::TelemetryIngest* ingest,
                const telemetry::TelemetryQueries* queries, rollout::Controller* rollouts);

  void ObserveHttp(absl::string_view method, absl::string_view route, int code,
                   absl::Duration elapsed);
  void ObserveGrpc(absl::string_view method, absl::string_view code, absl::Duration elapsed);
  /// Device Watch streams open now.
  void SetWatchStreams(size_t open) { watch_streams_->Set(static_cast<double>(open)); }

  /// Whether this replica leads (runs the rollout controller).
  void SetLeader(bool leading) { leader_->Set(leading ? 1 : 0); }

  /// The text exposition (format 0.0.4) of everything, sizes read at call time.
  std::string Render();

 private:
  void RefreshDevices();

  registry::Registry* registry_;
  fleet::DeviceRegistry* devices_;
  std::shared_ptr<prometheus::Registry> prometheus_;
  prometheus::Family<prometheus::Counter>* http_requests_;
  prometheus::Family<prometheus::Histogram>* http_latency_;
  prometheus::Family<prometheus::Counter>* grpc_requests_;
  prometheus::Family<prometheus::Histogram>* grpc_latency_;
  prometheus::Gauge* models_;
  prometheus::Gauge* versions_;
  prometheus::Gauge* aliases_;
  prometheus::Gauge* registry_errors_;
  prometheus::Gauge* watch_streams_;
  prometheus::Gauge* leader_;
  std::unique_ptr<TelemetryMetrics> telemetry_;
  std::unique_ptr<RolloutMetrics> rollouts_;
  prometheus::Family<prometheus::Gauge>* devices_gauge_;
  std::mutex devices_mu_;
  std::map<std::string, prometheus::Gauge*> device_series_;  // every label set ever exported
};

}  // namespace edgeloop::server
