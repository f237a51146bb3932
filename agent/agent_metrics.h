#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace edgeloop::agent {

/// The agent's own series on its /metrics endpoint (the process's are appended).
struct AgentMetrics {
  AgentMetrics();
  /// The text exposition of every series, process metrics included.
  std::string Render();

  /// What each loaded module (by model and version) has served since it was loaded: calls,
  /// failed calls and run time. A module loaded anew starts again from 0, which Prometheus
  /// reads as a counter reset; a version no longer loaded loses its series.
  struct ModuleCounts {
    int64_t calls = 0, errors = 0;
    double run_seconds = 0;
  };
  void SetModules(const std::map<std::pair<std::string, int64_t>, ModuleCounts>& modules);

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

 private:
  struct ModuleSeries {
    prometheus::Counter* calls;
    prometheus::Counter* errors;
    prometheus::Counter* run_seconds;
  };
  prometheus::Family<prometheus::Counter>* module_calls_;
  prometheus::Family<prometheus::Counter>* module_errors_;
  prometheus::Family<prometheus::Counter>* module_run_seconds_;
  std::map<std::pair<std::string, int64_t>, ModuleSeries> module_series_;
};

}  // namespace edgeloop::agent
