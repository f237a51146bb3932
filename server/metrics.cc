#include "server/metrics.h"

#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/process_metrics.h"
#include "prometheus/text_serializer.h"

namespace edgeloop::server {
namespace {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return *buckets;
}

}  // namespace

ServerMetrics::ServerMetrics(registry::Registry* registry, fleet::DeviceRegistry* devices,
                             const telemetry::TelemetryIngest* ingest,
                             const telemetry::TelemetryQueries* queries,
                             rollout::Controller* rollouts)
    : registry_(registry),
      devices_(devices),
      prometheus_(std::make_shared<prometheus::Registry>()),
      telemetry_(
          std::make_unique<TelemetryMetrics>(*prometheus_, ingest, queries, SystemClock::Get())),
      rollouts_(rollouts == nullptr ? nullptr
                                    : std::make_unique<RolloutMetrics>(*prometheus_, rollouts,
                                                                       SystemClock::Get())) {
  http_requests_ = &prometheus::BuildCounter()
                        .Name("edgeloop_http_requests_total")
                        .Help("REST requests by method, route template and HTTP status code.")
                        .Register(*prometheus_);
  http_latency_ = &prometheus::BuildHistogram()
                       .Name("edgeloop_http_request_duration_seconds")
                       .Help("REST request latency by method, route template and HTTP status code.")
                       .Register(*prometheus_);
  grpc_requests_ = &prometheus::BuildCounter()
                        .Name("edgeloop_grpc_requests_total")
                        .Help("gRPC calls by method and status code.")
                        .Register(*prometheus_);
  grpc_latency_ = &prometheus::BuildHistogram()
                       .Name("edgeloop_grpc_request_duration_seconds")
                       .Help("gRPC call latency by method and status code.")
                       .Register(*prometheus_);
  auto& sizes = prometheus::BuildGauge()
                    .Name("edgeloop_registry_objects")
                    .Help("Objects in the model registry by kind.")
                    .Register(*prometheus_);
  models_ = &sizes.Add({{"kind", "model"}});
  versions_ = &sizes.Add({{"kind", "version"}});
  aliases_ = &sizes.Add({{"kind", "alias"}});
  registry_errors_ =
      &prometheus::BuildGauge()
           .Name("edgeloop_registry_scrape_error")
           .Help("1 when the last scrape could not read registry sizes from the database.")
           .Register(*prometheus_)
           .Add({});
  watch_streams_ = &prometheus::BuildGauge()
                        .Name("edgeloop_device_watch_streams")
                        .Help("Device Watch streams open on this replica.")
                        .Register(*prometheus_)
                        .Add({});
  leader_ = &prometheus::BuildGauge()
                 .Name("edgeloop_leader")
                 .Help("1 on the replica that runs the rollout controller (holds the leader "
                       "lock), 0 on the others.")
                 .Register(*prometheus_)
                 .Add({});
  devices_gauge_ = &prometheus::BuildGauge()
                        .Name("edgeloop_devices")
                        .Help("Enrolled devices by status, target class and connectivity.")
                        .Register(*prometheus_);
}

void ServerMetrics::RefreshDevices() {
  auto counts = devices_->Counts();
  if (!counts.ok()) return;
  std::lock_guard lock(devices_mu_);
  // Series that have no devices any more read 0 rather than keep their last value.
  for (auto& [key, gauge] : device_series_) gauge->Set(0);
  for (const fleet::FleetCount& c : *counts) {
    const std::string connectivity = c.online ? "online" : "offline";
    const std::string key = absl::StrCat(c.status, "|", c.target, "|", connectivity);
    auto it = device_series_.find(key);
    if (it == device_series_.end()) {
      prometheus::Gauge* gauge = &devices_gauge_->Add(
          {{"status", c.status}, {"target", c.target}, {"connectivity", connectivity}});
      it = device_series_.emplace(key, gauge).first;
    }
    it->second->Increment(static_cast<double>(c.devices));
  }
}

// The method label comes from a fixed set: a client inventing methods must not be able to
// grow the number of series (each one costs memory here and in every Prometheus scraping us).
absl::string_view MethodLabel(absl::string_view method) {
  for (absl::string_view known : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
    if (method == known) return known;
  return "other";
}

void ServerMetrics::ObserveHttp(absl::string_view method, absl::string_view route, int code,
                                absl::Duration elapsed) {
  const prometheus::Labels labels{{"method", std::string(MethodLabel(method))},
                                  {"route", std::string(route)},
                                  {"code", std::to_string(code)}};
  http_requests_->Add(labels).Increment();
  http_latency_->Add(labels, LatencyBuckets()).Observe(absl::ToDoubleSeconds(elapsed));
}

void ServerMetrics::ObserveGrpc(absl::string_view method, absl::string_view code,
                                absl::Duration elapsed) {
  const prometheus::Labels labels{{"method", std::string(method)}, {"code", std::string(code)}};
  grpc_requests_->Add(labels).Increment();
  grpc_latency_->Add(labels, LatencyBuckets()).Observe(absl::ToDoubleSeconds(elapsed));
}

std::string ServerMetrics::Render() {
  auto sizes = registry_->Sizes();
  if (sizes.ok()) {
    models_->Set(static_cast<double>(sizes->models));
    versions_->Set(static_cast<double>(sizes->versions));
    aliases_->Set(static_cast<double>(sizes->aliases));
  }
  registry_errors_->Set(sizes.ok() ? 0 : 1);
  RefreshDevices();
  telemetry_->Refresh();
  if (rollouts_) rollouts_->Refresh();
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, prometheus_->Collect());
  return out.str() + ProcessMetricsText();
}

}  // namespace edgeloop::server
