#pragma once

#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace edgeloop::agent {

/// The agent's own series on its /metrics endpoint (the process's are appended).
struct AgentMetrics {
  AgentMetrics();
  /// The text exposition of every series, process metrics included.
  std::string Render();

  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Counter* syncs_ok;
  prometheus::Counter* syncs_failed;
  prometheus::Gauge* last_sync;
  prometheus::Gauge* next_sync;
  prometheus::Gauge* enrolled;
  prometheus::Gauge* cert_expiry;
  prometheus::Gauge* desired_generation;
  prometheus::Counter* background_lifts;
  // The telemetry spool, read when scraped.
  prometheus::Gauge* telemetry_windows;
  prometheus::Gauge* telemetry_spool_bytes;
  prometheus::Gauge* telemetry_windows_dropped;
  // What the sender has done.
  prometheus::Counter* telemetry_reports_ok;
  prometheus::Counter* telemetry_reports_failed;
  prometheus::Counter* telemetry_windows_sent;
  prometheus::Counter* telemetry_windows_refused;
};

}  // namespace edgeloop::agent
