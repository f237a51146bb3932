#include "agent/device_telemetry.h"

#include <set>

#include "agent/monitoring_spec.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/telemetry_window.h"

namespace edgeloop::agent {

absl::StatusOr<std::unique_ptr<DeviceTelemetry>> DeviceTelemetry::Open(const Options& options) {
  const std::string dir = options.state_dir + "/telemetry";
  ASSIGN_OR_RETURN(std::unique_ptr<TelemetrySpool> spool,
                   TelemetrySpool::Open(dir + "/windows", options.spool_bytes));
  std::unique_ptr<DeviceTelemetry> telemetry(new DeviceTelemetry(options, std::move(spool)));
  if (auto saved = ReadFile(dir + "/specs.pb"); saved.ok()) {
    v1::SyncResponse specs;
    if (specs.ParseFromString(*saved)) {
      telemetry->SetSpecs(specs);  // verified again, as the modules are
    } else {
      Log(LogLevel::kWarning,
          "ignored an unreadable telemetry spec file; the next sync sends them");
    }
  }
  return telemetry;
}

void DeviceTelemetry::SetSpecs(const v1::SyncResponse& desired) {
  std::lock_guard lock(mu_);
  bool changed = desired.module_signing_key() != signing_key_;
  signing_key_ = desired.module_signing_key();
  for (const v1::ModuleRef& ref : desired.desired_modules()) {
    const Key key{ref.model(), ref.version()};
    if (auto it = specs_.find(key); it != specs_.end() &&
                                    it->second.monitoring() == ref.monitoring() &&
                                    it->second.monitoring_signature() == ref.monitoring_signature())
      continue;
    absl::StatusOr<std::optional<v1::MonitoringSpec>> spec =
        VerifyMonitoringSpec(ref, desired.module_signing_key());
    if (!spec.ok()) {
      Log(LogLevel::kWarning, "monitoring spec refused; this version is not monitored",
          {{"model", ref.model()},
           {"version", ref.version()},
           {"error", spec.status().ToString()}});
      continue;
    }
    if (!spec->has_value()) continue;
    v1::ModuleRef kept;
    kept.set_model(ref.model());
    kept.set_version(ref.version());
    kept.set_monitoring(ref.monitoring());
    kept.set_monitoring_signature(ref.monitoring_signature());
    specs_[key] = std::move(kept);
    verified_[key] = **spec;
    changed = true;
  }
  if (changed) {
    if (absl::Status saved = SaveSpecs(); !saved.ok()) {
      Log(LogLevel::kWarning, "could not save the monitoring specs", {{"error", saved.ToString()}});
    }
  }
}

absl::Status DeviceTelemetry::SaveSpecs() {
  v1::SyncResponse specs;
  specs.set_module_signing_key(signing_key_);
  for (const auto& [key, ref] : specs_) *specs.add_desired_modules() = ref;
  return WriteFileAtomically(options_.state_dir + "/telemetry/specs.pb", specs.SerializeAsString(),
                             0600);
}

void DeviceTelemetry::Attach(ModelHost& host) {
  std::lock_guard lock(mu_);
  std::set<Key> loaded;
  const absl::Time now = options_.clock->Now();
  for (const ModelHost::Loaded& l : host.LoadedModels()) {
    for (const std::shared_ptr<ServingModel>& model : {l.active, l.previous}) {
      if (!model) continue;
      const Key key{model->ref().model(), model->ref().version()};
      loaded.insert(key);
      auto spec = verified_.find(key);
      if (spec == verified_.end()) continue;
      const WindowCounters* current = model->counters();
      if (current != nullptr &&
          current->spec().SerializeAsString() == spec->second.SerializeAsString())
        continue;
      auto counters = std::make_shared<WindowCounters>(spec->second, model->ref().digest(),
                                                       model->module(), now);
      counters_[counters->id()] = counters;
      model->Monitor(std::move(counters));
      Log(LogLevel::kInfo, "monitoring",
          {{"model", key.first},
           {"version", key.second},
           {"features", spec->second.features_size()},
           {"window_s", spec->second.window_seconds()},
           {"reference", v1::ReferenceStatistics::Source_Name(spec->second.reference_source())}});
    }
  }
  // Specs of versions no longer loaded go (a desired one not installed yet comes again with
  // the next sync).
  bool pruned = false;
  for (auto it = verified_.begin(); it != verified_.end();) {
    if (loaded.count(it->first)) {
      ++it;
      continue;
    }
    specs_.erase(it->first);
    it = verified_.erase(it);
    pruned = true;
  }
  if (pruned) SaveSpecs().IgnoreError();
}

void DeviceTelemetry::Close(absl::Time now, bool all) {
  std::vector<std::shared_ptr<WindowCounters>> open;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, counters] : counters_) open.push_back(counters);
  }
  for (const std::shared_ptr<WindowCounters>& counters : open) {
    // At shutdown the open window closes now, with what it has.
    const absl::Time at = all ? std::max(now, counters->window_end()) : now;
    std::optional<v1::TelemetryWindow> window = counters->CloseIfDue(at);
    if (all && window.has_value()) window->set_end_ms(absl::ToUnixMillis(now));
    if (window.has_value()) {
      if (absl::Status kept = spool_->Append(*window); !kept.ok()) {
        Log(LogLevel::kWarning, "could not keep a telemetry window",
            {{"window", window->id()}, {"error", kept.ToString()}});
      }
    }
  }
  std::lock_guard lock(mu_);
  for (auto it = counters_.begin(); it != counters_.end();) {
    // Only we hold it: its module is unloaded (a module keeps every counters it was given).
    if (it->second.use_count() == 1) {
      it = counters_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::Time DeviceTelemetry::CloseDue() {
  Close(options_.clock->Now(), false);
  std::lock_guard lock(mu_);
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, counters] : counters_) next = std::min(next, counters->window_end());
  return next;
}

std::vector<v1::TelemetryWindow> DeviceTelemetry::Ready(int max_windows, int64_t max_bytes) {
  std::set<std::string> open;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, counters] : counters_) {
      const absl::Time start = counters->window_end() - counters->window();
      open.insert(TelemetryWindowId(counters->spec().model(), counters->spec().version(),
                                    absl::ToUnixMillis(start)));
    }
  }
  std::vector<v1::TelemetryWindow> ready = spool_->Batch(max_windows, max_bytes);
  std::erase_if(ready, [&](const v1::TelemetryWindow& w) { return open.count(w.id()) > 0; });
  return ready;
}

void DeviceTelemetry::CloseAll() { Close(options_.clock->Now(), true); }

void DeviceTelemetry::Label(uint64_t counters_id, int64_t predicted, int64_t label,
                            absl::Time predicted_at) {
  std::shared_ptr<WindowCounters> counters;
  {
    std::lock_guard lock(mu_);
    auto it = counters_.find(counters_id);
    if (it == counters_.end()) return;  // that version's windows are all closed
    counters = it->second;
  }
  if (options_.clock->Now() - predicted_at > counters->window()) {
    counters->RecordLateLabel();
  } else {
    counters->RecordLabel(predicted, label);
  }
}

}  // namespace edgeloop::agent
