#include "telemetry/ingest.h"

#include <algorithm>
#include <future>

#include "absl/strings/str_cat.h"
#include "common/hardware.h"
#include "common/latency_buckets.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/telemetry_window.h"
#include "fleet/device_registry.h"
#include "registry/registry.h"
#include "telemetry/first_reference.h"

namespace edgeloop::telemetry {

const char* RefusalLabel(Refusal r) {
  switch (r) {
    case Refusal::kUnknownModel:
      return "unknown_model";
    case Refusal::kNotGiven:
      return "not_given";
    case Refusal::kInvalid:
      return "invalid";
    case Refusal::kStale:
      return "stale";
    case Refusal::kCount:
      break;
  }
  return "invalid";
}

/// One report waiting for the writer.
struct TelemetryIngest::Pending {
  std::string device_id;
  std::vector<IncomingWindow> windows;  // checked; cohort still the device's label value
  int64_t dropped = 0;
  int64_t refused = 0;
  std::string last_refusal;
  std::promise<absl::StatusOr<std::vector<bool>>> stored;  // per window: new or not
};

TelemetryIngest::TelemetryIngest(const IngestOptions& options) : options_(options) {}

TelemetryIngest::~TelemetryIngest() { Stop(); }

void TelemetryIngest::Start() {
  std::lock_guard lock(mu_);
  if (writer_.joinable()) return;
  stopping_ = false;
  writer_ = std::thread([this] { WriterLoop(); });
}

void TelemetryIngest::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  std::lock_guard lock(mu_);
  for (auto& p : queue_) p->stored.set_value(absl::UnavailableError("the server is stopping"));
  queue_.clear();
  queued_windows_ = 0;
  counts_.pending_windows = 0;
}

bool TelemetryIngest::Admit(const std::string& device_id, int windows, absl::Time now) {
  std::lock_guard lock(rate_mu_);
  if (rates_.size() > 100000) {  // forget devices whose allowance is whole again
    for (auto it = rates_.begin(); it != rates_.end();) {
      const double refill =
          absl::ToDoubleMinutes(now - it->second.at) * options_.device_windows_per_minute;
      it = it->second.tokens + refill >= options_.device_burst_windows ? rates_.erase(it)
                                                                       : std::next(it);
    }
  }
  auto [it, added] = rates_.try_emplace(device_id, Bucket{options_.device_burst_windows, now});
  Bucket& b = it->second;
  b.tokens = std::min(options_.device_burst_windows,
                      b.tokens + std::max(0.0, absl::ToDoubleMinutes(now - b.at)) *
                                     options_.device_windows_per_minute);
  b.at = now;
  if (b.tokens < windows) return false;
  b.tokens -= windows;
  return true;
}

absl::StatusOr<std::optional<TelemetryIngest::ModuleOf>> TelemetryIngest::FindModule(
    const std::string& model, int64_t version, const std::string& digest) {
  {
    std::lock_guard lock(cache_mu_);
    auto it = modules_.find(digest);
    if (it != modules_.end() && it->second.model == model) return it->second;
  }
  store::Database& db = *options_.database;
  ASSIGN_OR_RETURN(std::optional<int64_t> model_id, registry::Registry::FindModelId(db, model));
  if (!model_id.has_value()) return std::nullopt;
  ASSIGN_OR_RETURN(std::vector<registry::ArtifactRecord> artifacts,
                   registry::Registry::Artifacts(db, *model_id, version));
  for (const registry::ArtifactRecord& a : artifacts) {
    if (a.module_digest != digest) continue;
    ModuleOf found{model, *model_id, version, a.target};
    std::lock_guard lock(cache_mu_);
    modules_.emplace(digest, found);
    return found;
  }
  return ModuleOf{model, *model_id, 0, ""};  // the model, but no such module of that version
}

absl::Status TelemetryIngest::Check(const std::string& device_target, const v1::TelemetryWindow& w,
                                    absl::Time now, IncomingWindow* out, Refusal* why) {
  auto refuse = [why](Refusal r, absl::Status s) {
    *why = r;
    return s;
  };
  absl::StatusOr<std::optional<ModuleOf>> module =
      FindModule(w.model(), w.version(), w.module_digest());
  RETURN_IF_ERROR(module.status());  // the database: not the window's fault
  if (!module->has_value()) {
    return refuse(Refusal::kUnknownModel,
                  absl::NotFoundError(absl::StrCat("no model \"", w.model().substr(0, 64), "\"")));
  }
  const ModuleOf& m = **module;
  if (m.version != w.version() || !TargetRunsOn(m.target, device_target)) {
    return refuse(Refusal::kNotGiven,
                  absl::PermissionDeniedError(absl::StrCat(
                      "module ", w.module_digest().substr(0, 80), " is not a module of ", w.model(),
                      "@", w.version(), " for this device's class ", device_target)));
  }
  ASSIGN_OR_RETURN(std::optional<v1::MonitoringSpec> spec,
                   options_.specs->Spec(m.model_id, w.model(), w.version()));
  if (!spec.has_value()) {
    return refuse(Refusal::kInvalid, absl::InvalidArgumentError(absl::StrCat(
                                         w.model(), "@", w.version(), " monitors nothing")));
  }
  absl::Status checked = CheckWindow(w, *spec, now, options_.bounds);
  if (!checked.ok()) {
    return refuse(absl::IsOutOfRange(checked) ? Refusal::kStale : Refusal::kInvalid, checked);
  }
  out->model_id = m.model_id;
  out->target = device_target;
  out->window = w;
  return absl::OkStatus();
}

absl::StatusOr<v1::ReportTelemetryResponse> TelemetryIngest::Report(
    const std::string& device_id, const v1::ReportTelemetryRequest& request) {
  if (request.format() != kTelemetryFormat) {
    return absl::FailedPreconditionError(absl::StrCat("telemetry format ", request.format(),
                                                      " is unknown; this server reads ",
                                                      kTelemetryFormat));
  }
  if (request.windows_size() > kMaxReportWindows) {
    return absl::InvalidArgumentError(absl::StrCat(
        request.windows_size(), " windows in one report; at most ", kMaxReportWindows));
  }
  if (request.dropped_windows() < 0 || request.dropped_windows() > options_.bounds.max_count) {
    return absl::InvalidArgumentError("dropped_windows is not a count");
  }
  v1::ReportTelemetryResponse response;
  if (request.windows().empty() && request.dropped_windows() == 0) return response;
  const absl::Time now = options_.clock->Now();
  if (!Admit(device_id, request.windows_size(), now)) {
    ++counts_.reports_throttled;
    return absl::ResourceExhaustedError(absl::StrCat("this device sends more than ",
                                                     options_.device_windows_per_minute,
                                                     " telemetry windows a minute; slow down"));
  }
  ASSIGN_OR_RETURN(fleet::DeviceFacts device,
                   fleet::DeviceRegistry::Facts(*options_.database, device_id));

  auto pending = std::make_shared<Pending>();
  pending->device_id = device_id;
  pending->dropped = request.dropped_windows();
  std::vector<int> checked;  // request index of each pending window
  for (int i = 0; i < request.windows_size(); ++i) {
    const v1::TelemetryWindow& w = request.windows(i);
    IncomingWindow in;
    in.device_id = device_id;
    Refusal why = Refusal::kCount;  // none: a failure is the server's
    absl::Status status = Check(device.target, w, now, &in, &why);
    if (status.ok()) {
      if (auto label = device.labels.find(options_.cohort_label);
          !options_.cohort_label.empty() && label != device.labels.end()) {
        in.cohort = label->second;
      }
      pending->windows.push_back(std::move(in));
      checked.push_back(i);
      continue;
    }
    if (why == Refusal::kCount) return status;  // refuse nothing: the device sends again
    ++counts_.windows_refused[static_cast<size_t>(why)];
    ++pending->refused;
    pending->last_refusal = std::string(status.message().substr(0, 300));
    v1::ReportTelemetryResponse::Refused* r = response.add_refused();
    r->set_id(w.id().substr(0, 200));
    r->set_reason(pending->last_refusal);
  }

  std::future<absl::StatusOr<std::vector<bool>>> stored = pending->stored.get_future();
  {
    std::lock_guard lock(mu_);
    if (stopping_) return absl::UnavailableError("the server is stopping");
    const auto n = static_cast<int64_t>(pending->windows.size());
    if (queued_windows_ + n > options_.max_pending_windows) {
      ++counts_.reports_throttled;
      return absl::ResourceExhaustedError("telemetry ingestion is behind; send again later");
    }
    queued_windows_ += n;
    counts_.pending_windows = queued_windows_;
    queue_.push_back(pending);
  }
  wake_.notify_one();
  ASSIGN_OR_RETURN(std::vector<bool> fresh, stored.get());
  for (size_t k = 0; k < checked.size(); ++k) {
    response.add_stored(request.windows(checked[k]).id());
    ++(fresh[k] ? counts_.windows_stored : counts_.windows_duplicate);
  }
  counts_.windows_dropped_by_devices += pending->dropped;
  response.set_dropped_counted(pending->dropped);
  return response;
}

void TelemetryIngest::WriterLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    const absl::Time now = options_.clock->Now();
    if (now >= next_prune_) {
      next_prune_ = now + options_.prune_every;
      lock.unlock();
      absl::StatusOr<int64_t> pruned;
      absl::Status status =
          store::RunInTransaction(*options_.database, [&](store::Transaction& tx) {
            pruned = WindowStore::Prune(tx, absl::ToUnixMillis(now - options_.raw_retention),
                                        absl::ToUnixMillis(now - options_.aggregate_retention));
            return pruned.status();
          });
      if (!status.ok()) {
        Log(LogLevel::kWarning, "telemetry retention sweep failed", {{"error", status.ToString()}});
      } else if (*pruned > 0) {
        Log(LogLevel::kInfo, "telemetry retention sweep", {{"rows_deleted", *pruned}});
      }
      lock.lock();
      continue;
    }
    if (!awaiting_.empty() && now >= next_reference_) {
      // Then on to the queue: a version short of raw values must not hold up the reports.
      next_reference_ = now + options_.reference_every;
      lock.unlock();
      TakeReferences();
      lock.lock();
      if (stopping_) break;
    }
    if (queue_.empty()) {
      wake_.wait_for(lock, std::chrono::seconds(1));
      continue;
    }
    // Whole reports, up to the batch size (a report larger than it goes alone).
    std::vector<std::shared_ptr<Pending>> batch;
    int64_t windows = 0;
    while (!queue_.empty() &&
           (batch.empty() || windows + static_cast<int64_t>(queue_.front()->windows.size()) <=
                                 options_.max_batch_windows)) {
      windows += static_cast<int64_t>(queue_.front()->windows.size());
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    lock.unlock();
    absl::Status status = Write(batch);
    if (status.ok()) {
      for (const auto& p : batch) {
        for (const IncomingWindow& w : p->windows) {
          if (std::any_of(w.window.features().begin(), w.window.features().end(),
                          [](const auto& f) { return f.samples_size() > 0; })) {
            awaiting_.emplace(std::pair{w.model_id, w.window.version()}, w.window.model());
          }
        }
      }
    }
    lock.lock();
    queued_windows_ -= windows;
    counts_.pending_windows = queued_windows_;
    if (!status.ok()) {
      ++counts_.batch_failures;
      Log(LogLevel::kWarning, "telemetry batch not stored",
          {{"reports", batch.size()}, {"windows", windows}, {"error", status.ToString()}});
      for (auto& p : batch) p->stored.set_value(status);
    }
  }
}

std::map<SeriesKey, SeriesTotals> TelemetryIngest::Series() const {
  std::lock_guard lock(series_mu_);
  return series_;
}

void TelemetryIngest::TakeReferences() {
  for (auto it = awaiting_.begin(); it != awaiting_.end();) {
    const auto [model_id, version] = it->first;
    absl::StatusOr<bool> done = TakeReference(model_id, it->second, version);
    if (!done.ok()) {
      Log(LogLevel::kWarning, "could not take a reference from the first windows",
          {{"model", it->second}, {"version", version}, {"error", done.status().ToString()}});
    }
    it = done.ok() && *done ? awaiting_.erase(it) : std::next(it);
  }
}

absl::StatusOr<bool> TelemetryIngest::TakeReference(int64_t model_id, const std::string& model,
                                                    int64_t version) {
  store::Database& db = *options_.database;
  ASSIGN_OR_RETURN(std::optional<v1::ReferenceStatistics> existing,
                   registry::Registry::Reference(db, model_id, version));
  if (existing.has_value()) return true;  // its validation set's, or another replica took it
  ASSIGN_OR_RETURN(std::optional<v1::MonitoringSpec> spec,
                   options_.specs->Spec(model_id, model, version));
  if (!spec.has_value() || spec->features().empty()) return true;  // nothing to take
  ASSIGN_OR_RETURN(
      std::vector<v1::TelemetryWindow> windows,
      WindowStore::VersionWindows(db, model_id, version, options_.reference_max_windows));
  ASSIGN_OR_RETURN(std::optional<v1::ReferenceStatistics> reference,
                   ReferenceFromWindows(windows, *spec, options_.reference_min_samples));
  if (!reference.has_value()) return false;  // not enough yet
  const int64_t now_ms = absl::ToUnixMillis(options_.clock->Now());
  bool set = false;
  RETURN_IF_ERROR(store::RunInTransaction(db, [&](store::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(set,
                     registry::Registry::SetReference(tx, model_id, version, *reference, now_ms));
    return absl::OkStatus();
  }));
  if (set) {
    Log(LogLevel::kInfo, "reference taken from the devices' first windows",
        {{"model", model},
         {"version", version},
         {"windows", static_cast<int64_t>(windows.size())},
         {"calls", reference->samples()}});
    // Devices syncing with this replica get the edges at once, not when the provisional spec
    // would have expired.
    options_.specs->Forget(model_id, version);
    if (options_.on_reference) options_.on_reference(model_id, version);
  }
  return true;
}

absl::Status TelemetryIngest::Write(std::vector<std::shared_ptr<Pending>>& batch) {
  const int64_t now_ms = absl::ToUnixMillis(options_.clock->Now());
  std::vector<bool> fresh;
  std::set<std::string> new_cohorts;
  std::vector<IncomingWindow> all;  // with their cohorts as filed
  RETURN_IF_ERROR(store::RunInTransaction(*options_.database, [&](store::Transaction& tx) {
    new_cohorts.clear();
    all.clear();
    for (const auto& p : batch) {
      for (const IncomingWindow& w : p->windows) {
        all.push_back(w);
        std::string& cohort = all.back().cohort;
        if (cohort.empty() || cohorts_.count(cohort) > 0 || new_cohorts.count(cohort) > 0) {
          continue;
        }
        ASSIGN_OR_RETURN(std::string filed,
                         WindowStore::Cohort(tx, cohort, options_.max_cohorts, now_ms));
        if (filed == cohort) new_cohorts.insert(cohort);
        cohort = std::move(filed);
      }
    }
    ASSIGN_OR_RETURN(
        fresh, WindowStore::Store(tx, options_.database->dialect(), all, options_.bucket, now_ms));
    size_t at = 0;
    for (const auto& p : batch) {
      int64_t stored = 0;
      for (size_t k = 0; k < p->windows.size(); ++k) stored += fresh[at + k] ? 1 : 0;
      at += p->windows.size();
      RETURN_IF_ERROR(WindowStore::CountReport(tx, p->device_id, stored, p->refused, p->dropped,
                                               p->last_refusal, now_ms));
    }
    return absl::OkStatus();
  }));
  cohorts_.insert(new_cohorts.begin(), new_cohorts.end());
  ++counts_.batches;
  {
    std::lock_guard lock(series_mu_);
    for (size_t i = 0; i < all.size(); ++i) {
      if (!fresh[i]) continue;
      const v1::TelemetryWindow& w = all[i].window;
      SeriesTotals& t = series_[{w.model(), w.version(), all[i].cohort}];
      ++t.windows;
      t.requests += w.requests();
      t.errors += w.errors();
      for (const int64_t n : w.labelled()) t.labelled += n;
      for (const int64_t n : w.correct()) t.correct += n;
      t.latency.resize(kLatencyBuckets, 0);
      for (int k = 0; k < w.latency_counts_size() && k < static_cast<int>(kLatencyBuckets); ++k) {
        t.latency[static_cast<size_t>(k)] += w.latency_counts(k);
      }
    }
  }
  int64_t oldest_end = now_ms;
  size_t at = 0;
  for (auto& p : batch) {
    for (const IncomingWindow& w : p->windows) oldest_end = std::min(oldest_end, w.window.end_ms());
    p->stored.set_value(
        std::vector<bool>(fresh.begin() + static_cast<std::ptrdiff_t>(at),
                          fresh.begin() + static_cast<std::ptrdiff_t>(at + p->windows.size())));
    at += p->windows.size();
  }
  counts_.lag_seconds = static_cast<double>(now_ms - oldest_end) / 1000.0;
  return absl::OkStatus();
}

}  // namespace edgeloop::telemetry
