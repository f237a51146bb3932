#include "agent/agent.h"

#include <pthread.h>

#include "absl/strings/str_cat.h"
#include "agent/device_call.h"
#include "agent/device_health.h"
#include "agent/hardware_profile.h"
#include "agent/thread_priority.h"
#include "common/file_util.h"
#include "common/hardware.h"
#include "common/logging.h"
#include "common/status.h"

#ifndef EDGELOOP_VERSION
#define EDGELOOP_VERSION "dev"
#endif

namespace edgeloop::agent {
namespace {

constexpr absl::Duration kProfileRefresh = absl::Minutes(10);

}  // namespace

Agent::Agent(const AgentOptions& options)
    : options_(options),
      started_(options.clock->Now()),
      credentials_({options.server, options.state_dir, options.enroll_token, options.ca_file,
                    options.serial, options.labels, options.max_backoff_seconds, options.clock},
                   metrics_.enrolled, metrics_.cert_expiry) {}

Agent::~Agent() {
  Stop();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (telemetry_thread_.joinable()) telemetry_thread_.join();
  if (telemetry_) telemetry_->CloseAll();  // what the open windows counted is kept
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& options) {
  auto agent = std::unique_ptr<Agent>(new Agent(options));
  RETURN_IF_ERROR(MakeDirectories(options.state_dir, 0700));
  RETURN_IF_ERROR(agent->credentials_.Load());
  if (!options.enroll_only) {
    // Serve what was active before a restart, then open the local API.
    const v1::HardwareProfile profile = ReadHardwareProfile({options.state_dir, options.labels});
    ModuleManager::Options modules;
    modules.state_dir = options.state_dir;
    modules.device_target = profile.target();
    modules.download.max_kbps = options.max_download_kbps;
    modules.cache_bytes = options.module_cache_mb << 20;
    modules.memory_budget_bytes = options.memory_budget_kb << 10;
    agent->modules_ = std::make_unique<ModuleManager>(modules, &agent->host_, &agent->shadow_);
    agent->host_.SetShadowRunner(&agent->shadow_);
    ModelHost::RollbackPolicy policy;
    policy.enabled = options.rollback_min_calls > 0;
    policy.min_calls = options.rollback_min_calls;
    policy.max_error_rate = options.rollback_error_rate;
    policy.max_latency_ratio = options.rollback_latency_ratio;
    policy.latency_slack_us = options.rollback_latency_slack_us;
    Agent* self = agent.get();
    agent->host_.SetRollbackPolicy(
        policy, [self](const v1::ModuleRef& refused, const std::string& why) {
          self->modules_->OnLocalRollback(refused, why);
          std::lock_guard lock(self->mu_);  // report it with the next sync, right away
          self->sync_requested_ = true;
          self->wake_.notify_all();
        });
    ASSIGN_OR_RETURN(agent->telemetry_,
                     DeviceTelemetry::Open({.state_dir = options.state_dir,
                                            .spool_bytes = options.telemetry_spool_kb << 10,
                                            .clock = options.clock}));
    agent->host_.SetLabelCallback(
        [self](uint64_t counters, int64_t predicted, int64_t label, absl::Time at) {
          self->telemetry_->Label(counters, predicted, label, at);
        });
    if (absl::Status restored = agent->modules_->Restore(); !restored.ok()) {
      Log(LogLevel::kWarning, "some modules were not restored; the next sync brings them back",
          {{"error", restored.ToString()}});
    }
    agent->telemetry_->Attach(agent->host_);
    // Resume from the desired state recorded, so a restart does not look like a change.
    agent->desired_generation_ = agent->modules_->RecordedGeneration();
    Agent* raw = agent.get();
    ASSIGN_OR_RETURN(agent->local_api_,
                     LocalApi::Start(options.socket, &agent->host_, [raw](lv1::HealthResponse* h) {
                       h->set_device_id(raw->credentials_.device_id());
                       h->set_desired_generation(raw->desired_generation_);
                     }));
  }
  if (!options.metrics_listen.empty()) {
    Agent* raw = agent.get();
    ASSIGN_OR_RETURN(
        agent->metrics_endpoint_, MetricsEndpoint::Start(options.metrics_listen, [raw] {
          if (raw->telemetry_) {
            TelemetrySpool& spool = raw->telemetry_->spool();
            raw->metrics_.telemetry_windows->Set(static_cast<double>(spool.windows()));
            raw->metrics_.telemetry_spool_bytes->Set(static_cast<double>(spool.bytes()));
            raw->metrics_.telemetry_windows_dropped->Set(static_cast<double>(spool.dropped()));
          }
          std::map<std::pair<std::string, int64_t>, AgentMetrics::ModuleCounts> modules;
          for (const ModelHost::Loaded& l : raw->host_.LoadedModels()) {
            for (const std::shared_ptr<ServingModel>& m : {l.active, l.previous}) {
              if (!m) continue;
              const ServingModel::Stats stats = m->stats();
              AgentMetrics::ModuleCounts& c = modules[{m->ref().model(), m->ref().version()}];
              c.calls += stats.calls;
              c.errors += stats.errors;
              c.run_seconds += stats.mean_run_us * static_cast<double>(stats.calls) / 1e6;
            }
          }
          raw->metrics_.SetModules(modules);
          return raw->metrics_.Render();
        }));
    RETURN_IF_ERROR(WriteFileAtomically(
        options.state_dir + "/ports.json",
        absl::StrCat("{\"metrics\": ", agent->metrics_endpoint_->port(), "}\n")));
  }
  return agent;
}

absl::Status Agent::SyncOnce() {
  if (options_.clock->Now() - profile_read_ > kProfileRefresh) {
    profile_ = ReadHardwareProfile({options_.state_dir, options_.labels});
    std::string hash = ProfileHash(profile_);
    if (hash != profile_hash_) send_profile_ = true;
    profile_hash_ = std::move(hash);
    profile_read_ = options_.clock->Now();
  }
  const std::shared_ptr<grpc::Channel> channel = credentials_.channel();
  v1::SyncRequest request;
  request.set_device_id(credentials_.device_id());
  v1::DeviceState* state = request.mutable_state();
  state->set_agent_version(EDGELOOP_VERSION);
  state->set_profile_hash(profile_hash_);
  *state->mutable_health() = ReadDeviceHealth(options_.state_dir, options_.clock->Now() - started_);
  modules_->Report(state);
  if (send_profile_) *request.mutable_profile() = profile_;
  v1::SyncResponse response;
  RETURN_IF_ERROR(
      FromGrpc(v1::DeviceService::NewStub(channel)->Sync(CallContext().get(), request, &response)));
  send_profile_ = response.send_profile();
  ASSIGN_OR_RETURN(bool changed, ApplyDesired(response, "sync"));
  if (changed) {
    std::lock_guard lock(mu_);
    sync_requested_ = true;
  }
  metrics_.syncs_ok->Increment();
  metrics_.last_sync->Set(absl::ToDoubleSeconds(options_.clock->Now() - absl::UnixEpoch()));
  metrics_.next_sync->Set(static_cast<double>(response.next_sync_ms()) / 1000.0);
  // The server asked for the profile: send it right away rather than a whole interval later.
  if (send_profile_) {
    std::lock_guard lock(mu_);
    sync_requested_ = true;
  }
  next_interval_ = absl::Milliseconds(std::max<int64_t>(response.next_sync_ms(), 100));
  return absl::OkStatus();
}

absl::StatusOr<bool> Agent::ApplyDesired(const v1::SyncResponse& desired, const char* source) {
  if (desired.desired_generation() != desired_generation_.load()) {
    Log(LogLevel::kInfo, "desired state changed",
        {{"generation", desired.desired_generation()},
         {"modules", desired.desired_modules_size()},
         {"from", source}});
    desired_generation_ = desired.desired_generation();
    metrics_.desired_generation->Set(static_cast<double>(desired.desired_generation()));
  }
  // Modules are checked against the key this device pinned; the server's offer replaces it only
  // when the CA endorsed it or the pinned key handed over to it.
  v1::SyncResponse checked = desired;
  checked.set_module_signing_key(credentials_.TrustedSigningKey(desired));
  // Install what the server wants (downloads run here, never on request threads).
  v1::DeviceState before;
  modules_->Report(&before);
  modules_
      ->Reconcile(
          checked,
          [this](const std::string& digest, int64_t offset, const ModuleStore::ChunkSink& sink) {
            return FetchModule(digest, offset, sink);
          })
      .IgnoreError();  // failures are logged and reported per module
  telemetry_->SetSpecs(checked);
  telemetry_->Attach(host_);
  v1::DeviceState after;
  modules_->Report(&after);
  return after.SerializeAsString() != before.SerializeAsString();
}

absl::Status Agent::ApplyPushed(absl::Time* sync_at) {
  std::optional<v1::SyncResponse> pushed;
  {
    std::lock_guard lock(mu_);
    pushed.swap(pushed_);
  }
  // Generations only grow: a push older than what a sync brought since is stale.
  if (!pushed || pushed->desired_generation() <= desired_generation_.load()) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(bool changed, ApplyDesired(*pushed, "watch"));
  if (changed) *sync_at = absl::InfinitePast();  // report what runs now at once
  return absl::OkStatus();
}

absl::Status Agent::FetchModule(const std::string& digest, int64_t offset,
                                const ModuleStore::ChunkSink& sink) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(30)));
  const std::shared_ptr<grpc::Channel> channel = credentials_.channel();
  {
    std::lock_guard lock(mu_);
    if (stopping_) return absl::CancelledError("stopping");
    fetch_context_ = &context;
  }
  v1::FetchModuleRequest request;
  request.set_digest(digest);
  request.set_offset(offset);
  auto reader = v1::DeviceService::NewStub(channel)->FetchModule(&context, request);
  v1::ModuleChunk chunk;
  absl::Status written;
  while (written.ok() && reader->Read(&chunk)) written = sink(chunk.offset(), chunk.data());
  if (!written.ok()) context.TryCancel();
  const grpc::Status finished = reader->Finish();
  {
    std::lock_guard lock(mu_);
    fetch_context_ = nullptr;
  }
  RETURN_IF_ERROR(written);
  return FromGrpc(finished);
}

absl::Duration Agent::Backoff() {
  const int exponent = std::min(failures_, 16);
  absl::Duration cap = absl::Seconds(options_.max_backoff_seconds);
  absl::Duration base = std::min(cap, absl::Milliseconds(500) * (1 << exponent));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return base * jitter(random_);
}

bool Agent::Wait(absl::Time* until) {
  std::unique_lock lock(mu_);
  // Relative to the injected clock; a condition variable can only wait on real time.
  // Capped so that no conversion overflows; waking early only means looking again.
  const absl::Duration left =
      std::clamp(*until - options_.clock->Now(), absl::ZeroDuration(), absl::Hours(1));
  wake_.wait_for(lock, absl::ToChronoMilliseconds(left),
                 [&] { return stopping_.load() || sync_requested_ || pushed_.has_value(); });
  if (sync_requested_) *until = absl::InfinitePast();
  sync_requested_ = false;
  return !stopping_;
}

void Agent::WatchLoop() {
  while (!stopping_) {
    const std::shared_ptr<grpc::Channel> channel = credentials_.channel();
    grpc::ClientContext* context = nullptr;
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;  // checked under the lock Stop() takes, so no stream outlives it
      watch_context_ = std::make_unique<grpc::ClientContext>();
      context = watch_context_.get();
    }
    v1::WatchRequest request;
    request.set_known_generation(desired_generation_);
    auto reader = v1::DeviceService::NewStub(channel)->Watch(context, request);
    v1::WatchEvent event;
    while (reader->Read(&event)) {
      if (event.desired_generation() == desired_generation_) continue;
      std::lock_guard lock(mu_);
      if (event.has_desired()) {
        pushed_ = std::move(*event.mutable_desired());  // the sync thread installs it
      } else {
        sync_requested_ = true;  // only the generation: sync to learn the state
      }
      wake_.notify_all();
    }
    reader->Finish();
    std::unique_lock lock(mu_);
    // Watch is a shortcut, not the source of truth: Sync keeps running if it is down.
    wake_.wait_for(lock, std::chrono::seconds(5), [&] { return stopping_.load(); });
  }
}

absl::Status Agent::Run() {
  // Syncing, downloading and loading modules run on this thread (and the watch thread it
  // starts); applications' calls are served by the local API's threads. Those come first.
  BackgroundPriority background;
  ::pthread_setname_np(::pthread_self(), "agent-sync");  // for top -H, perf and the like
  if (!BackgroundPriority::Available()) {
    Log(LogLevel::kWarning,
        "background work runs at normal priority: this process may not take a thread out of "
        "SCHED_IDLE again (run it with RLIMIT_NICE allowing nice 0, e.g. systemd LimitNICE=+0), "
        "so swaps under load cost the applications more latency");
  }
  if (credentials_.LapsedWithoutToken()) {
    Log(LogLevel::kError,
        "this device's certificate has expired and the server will refuse it; restart the "
        "agent with --enroll-token (a new token from `edgeloop token create --enroll`) to "
        "re-enroll as the same device",
        {{"device", credentials_.device_id()}});
  }
  while (!stopping_ && credentials_.NeedsEnrollment()) {
    const bool enrolled_before = credentials_.enrolled();
    absl::Status enrolled = credentials_.Enroll();
    if (enrolled.ok()) break;
    const bool permanent = absl::IsFailedPrecondition(enrolled) ||
                           absl::IsInvalidArgument(enrolled) ||
                           absl::IsPermissionDenied(enrolled) || absl::IsUnauthenticated(enrolled);
    if (permanent && enrolled_before) {
      // The models it has keep serving; only syncing waits for a token that works.
      Log(LogLevel::kError, "re-enrollment refused; serving what is installed",
          {{"error", enrolled.ToString()}});
      break;
    }
    if (permanent) return enrolled;  // a token that failed will not succeed on retry
    ++failures_;
    Log(LogLevel::kWarning, "enrollment failed, retrying", {{"error", enrolled.ToString()}});
    absl::Time retry = options_.clock->Now() + Backoff();
    if (!Wait(&retry)) return absl::OkStatus();
  }
  failures_ = 0;
  if (options_.enroll_only || stopping_) return absl::OkStatus();
  watch_thread_ = std::thread([this] {
    BackgroundPriority background;
    ::pthread_setname_np(::pthread_self(), "agent-watch");
    WatchLoop();
  });
  telemetry_thread_ = std::thread([this] {
    BackgroundPriority background;
    ::pthread_setname_np(::pthread_self(), "agent-telemetry");
    TelemetryLoop();
  });
  absl::Time sync_at = absl::InfinitePast();  // now
  while (!stopping_) {
    absl::Status status = credentials_.RenewIfDue();
    if (status.ok()) status = ApplyPushed(&sync_at);
    if (status.ok() && options_.clock->Now() >= sync_at) {
      status = SyncOnce();
      sync_at = options_.clock->Now() + next_interval_;
    }
    if (status.ok()) {
      if (failures_ > 0)
        Log(LogLevel::kInfo, "server reachable again", {{"after_failures", failures_}});
      failures_ = 0;
    } else {
      metrics_.syncs_failed->Increment();
      ++failures_;
      const absl::Duration wait = Backoff();
      sync_at = options_.clock->Now() + wait;
      if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) {
        // gRPC's own reconnect schedule (and its resolver's) can lag well behind ours once the
        // server is back; a new channel connects on the next attempt.
        credentials_.Reconnect();
      }
      Log(absl::IsPermissionDenied(status) ? LogLevel::kError : LogLevel::kWarning, "sync failed",
          {{"error", status.ToString()}, {"retry_in_ms", absl::ToInt64Milliseconds(wait)}});
    }
    Wait(&sync_at);
  }
  return absl::OkStatus();
}

void Agent::TelemetryLoop() {
  sender_ = std::make_unique<TelemetrySender>(
      TelemetrySender::Options{.clock = options_.clock,
                               .max_backoff = absl::Seconds(options_.max_backoff_seconds),
                               .spread = absl::Seconds(options_.telemetry_spread_seconds)},
      telemetry_.get(), [this] { return credentials_.channel(); }, &metrics_);
  while (!stopping_) {
    // Closing first: what the sender then finds final includes every window just closed.
    const absl::Time next = std::min(telemetry_->CloseDue(), sender_->SendDue());
    // Windows end on whole seconds of the clock; a second's wait bounds how late one closes
    // (and lets a test's clock move on).
    const absl::Time wake = std::min(next, options_.clock->Now() + absl::Seconds(1));
    std::unique_lock lock(mu_);
    wake_.wait_for(
        lock,
        absl::ToChronoNanoseconds(std::max(wake - options_.clock->Now(), absl::Milliseconds(10))),
        [this] { return stopping_.load(); });
  }
}

void Agent::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (watch_context_) watch_context_->TryCancel();
    if (fetch_context_) fetch_context_->TryCancel();
  }
  wake_.notify_all();
}

}  // namespace edgeloop::agent
