#include "agent/agent_metrics.h"

#include <sstream>

#include "agent/thread_priority.h"
#include "common/process_metrics.h"
#include "prometheus/text_serializer.h"

namespace edgeloop::agent {

AgentMetrics::AgentMetrics() {
  auto& syncs = prometheus::BuildCounter()
                    .Name("edgeloop_agent_syncs_total")
                    .Help("Sync calls by result.")
                    .Register(*registry);
  syncs_ok = &syncs.Add({{"result", "ok"}});
  syncs_failed = &syncs.Add({{"result", "error"}});
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry).Add({});
  };
  last_sync = gauge("edgeloop_agent_last_sync_timestamp_seconds",
                    "When the last successful sync finished.");
  next_sync =
      gauge("edgeloop_agent_sync_interval_seconds", "Interval the server set for the next sync.");
  enrolled =
      gauge("edgeloop_agent_enrolled", "1 once the device holds a certificate from the server.");
  cert_expiry = gauge("edgeloop_agent_certificate_expiry_timestamp_seconds",
                      "When the device certificate expires.");
  desired_generation =
      gauge("edgeloop_agent_desired_generation", "Generation of the desired state last received.");
  telemetry_windows = gauge("edgeloop_agent_telemetry_windows",
                            "Closed telemetry windows on disk, waiting for the server.");
  telemetry_spool_bytes =
      gauge("edgeloop_agent_telemetry_spool_bytes", "Bytes of those windows (capped).");
  telemetry_windows_dropped =
      gauge("edgeloop_agent_telemetry_windows_dropped",
            "Windows dropped because the spool was full, not yet reported to the server.");
  auto& reports = prometheus::BuildCounter()
                      .Name("edgeloop_agent_telemetry_reports_total")
                      .Help("ReportTelemetry calls by result.")
                      .Register(*registry);
  telemetry_reports_ok = &reports.Add({{"result", "ok"}});
  telemetry_reports_failed = &reports.Add({{"result", "error"}});
  auto& sent = prometheus::BuildCounter()
                   .Name("edgeloop_agent_telemetry_windows_sent_total")
                   .Help("Telemetry windows the server answered for, by outcome.")
                   .Register(*registry);
  telemetry_windows_sent = &sent.Add({{"outcome", "stored"}});
  telemetry_windows_refused = &sent.Add({{"outcome", "refused"}});
  module_calls_ = &prometheus::BuildCounter()
                       .Name("edgeloop_agent_model_calls_total")
                       .Help("Calls the loaded module of each model version served.")
                       .Register(*registry);
  module_errors_ = &prometheus::BuildCounter()
                        .Name("edgeloop_agent_model_errors_total")
                        .Help("Of those, calls that failed in the module.")
                        .Register(*registry);
  module_run_seconds_ = &prometheus::BuildCounter()
                             .Name("edgeloop_agent_model_run_seconds_total")
                             .Help("Time the module spent running those calls.")
                             .Register(*registry);
  background_lifts = &prometheus::BuildCounter()
                          .Name("edgeloop_agent_background_lifts_total")
                          .Help(
                              "Times background work waited a second for a CPU that "
                              "applications kept busy and was lifted to nice 19.")
                          .Register(*registry)
                          .Add({});
}

void AgentMetrics::SetModules(
    const std::map<std::pair<std::string, int64_t>, ModuleCounts>& modules) {
  for (auto it = module_series_.begin(); it != module_series_.end();) {
    auto now = modules.find(it->first);
    // Gone, or loaded anew (its counts went back): the old series goes.
    if (now == modules.end() || now->second.calls < it->second.calls->Value()) {
      module_calls_->Remove(it->second.calls);
      module_errors_->Remove(it->second.errors);
      module_run_seconds_->Remove(it->second.run_seconds);
      it = module_series_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [key, counts] : modules) {
    auto [it, added] = module_series_.try_emplace(key);
    if (added) {
      const prometheus::Labels labels{{"model", key.first},
                                      {"version", std::to_string(key.second)}};
      it->second = {&module_calls_->Add(labels), &module_errors_->Add(labels),
                    &module_run_seconds_->Add(labels)};
    }
    ModuleSeries& series = it->second;
    auto advance = [](prometheus::Counter* c, double to) {
      if (to > c->Value()) c->Increment(to - c->Value());
    };
    advance(series.calls, static_cast<double>(counts.calls));
    advance(series.errors, static_cast<double>(counts.errors));
    advance(series.run_seconds, counts.run_seconds);
  }
}

std::string AgentMetrics::Render() {
  background_lifts->Increment(static_cast<double>(BackgroundPriority::Lifts()) -
                              background_lifts->Value());
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry->Collect());
  return out.str() + ProcessMetricsText();
}

}  // namespace edgeloop::agent
