#include "agent/agent.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/hardware_profile.h"
#include "agent/signing_key_pin.h"
#include "agent/thread_priority.h"
#include "agent/trust.h"
#include "common/enrollment_token.h"
#include "common/file_util.h"
#include "common/hardware.h"
#include "common/logging.h"
#include "common/process_metrics.h"
#include "common/status.h"
#include "common/x509.h"
#include "prometheus/text_serializer.h"

#ifndef EDGELOOP_VERSION
#define EDGELOOP_VERSION "dev"
#endif

namespace edgeloop::agent {
namespace {

constexpr absl::Duration kProfileRefresh = absl::Minutes(10);
constexpr absl::Duration kCallTimeout = absl::Seconds(30);

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

std::unique_ptr<grpc::ClientContext> CallContext() {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  return c;
}

// A stable hardware serial: DMI (x86 boards), the device tree (ARM boards), else machine-id.
std::string DefaultSerial() {
  for (const char* path :
       {"/sys/class/dmi/id/product_serial", "/proc/device-tree/serial-number", "/etc/machine-id"}) {
    std::ifstream in(path);
    std::string value;
    std::getline(in, value, '\0');
    value = std::string(absl::StripAsciiWhitespace(value));
    if (!value.empty() && value != "None" && value != "Not Specified") return value.substr(0, 128);
  }
  return "";
}

}  // namespace

Agent::Agent(const AgentOptions& options) : options_(options), started_(options.clock->Now()) {
  auto& syncs = prometheus::BuildCounter()
                    .Name("edgeloop_agent_syncs_total")
                    .Help("Sync calls by result.")
                    .Register(*metrics_);
  syncs_ok_ = &syncs.Add({{"result", "ok"}});
  syncs_failed_ = &syncs.Add({{"result", "error"}});
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*metrics_).Add({});
  };
  last_sync_ = gauge("edgeloop_agent_last_sync_timestamp_seconds",
                     "When the last successful sync finished.");
  next_sync_ =
      gauge("edgeloop_agent_sync_interval_seconds", "Interval the server set for the next sync.");
  enrolled_ =
      gauge("edgeloop_agent_enrolled", "1 once the device holds a certificate from the server.");
  cert_expiry_ = gauge("edgeloop_agent_certificate_expiry_timestamp_seconds",
                       "When the device certificate expires.");
  generation_gauge_ =
      gauge("edgeloop_agent_desired_generation", "Generation of the desired state last received.");
  background_lifts_ = &prometheus::BuildCounter()
                           .Name("edgeloop_agent_background_lifts_total")
                           .Help(
                               "Times background work waited a second for a CPU that "
                               "applications kept busy and was lifted to nice 19.")
                           .Register(*metrics_)
                           .Add({});
}

Agent::~Agent() {
  Stop();
  if (watch_thread_.joinable()) watch_thread_.join();
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& options) {
  auto agent = std::unique_ptr<Agent>(new Agent(options));
  RETURN_IF_ERROR(MakeDirectories(options.state_dir, 0700));
  if (agent->options_.serial.empty()) agent->options_.serial = DefaultSerial();
  ASSIGN_OR_RETURN(std::optional<DeviceIdentity> identity, LoadIdentity(options.state_dir));
  if (identity) agent->UseIdentity(std::move(*identity));
  if (!options.enroll_only) {
    // Serve what was active before a restart, then open the local API.
    const v1::HardwareProfile profile = ReadHardwareProfile({options.state_dir, options.labels});
    ModuleManager::Options modules;
    modules.state_dir = options.state_dir;
    modules.device_target = profile.target();
    modules.download.max_kbps = options.max_download_kbps;
    modules.cache_bytes = options.module_cache_mb << 20;
    modules.memory_budget_bytes = options.memory_budget_kb << 10;
    agent->modules_ = std::make_unique<ModuleManager>(modules, &agent->host_);
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
    if (absl::Status restored = agent->modules_->Restore(); !restored.ok()) {
      Log(LogLevel::kWarning, "some modules were not restored; the next sync brings them back",
          {{"error", restored.ToString()}});
    }
    // Resume from the desired state recorded, so a restart does not look like a change.
    agent->desired_generation_ = agent->modules_->RecordedGeneration();
    Agent* raw = agent.get();
    ASSIGN_OR_RETURN(agent->local_api_,
                     LocalApi::Start(options.socket, &agent->host_, [raw](lv1::HealthResponse* h) {
                       std::lock_guard lock(raw->mu_);
                       if (raw->identity_) h->set_device_id(raw->identity_->device_id);
                       h->set_desired_generation(raw->desired_generation_);
                     }));
  }
  if (!options.metrics_listen.empty()) {
    Agent* raw = agent.get();
    ASSIGN_OR_RETURN(
        agent->metrics_endpoint_,
        MetricsEndpoint::Start(options.metrics_listen, [raw] { return raw->RenderMetrics(); }));
    RETURN_IF_ERROR(WriteFileAtomically(
        options.state_dir + "/ports.json",
        absl::StrCat("{\"metrics\": ", agent->metrics_endpoint_->port(), "}\n")));
  }
  return agent;
}

void Agent::UseIdentity(DeviceIdentity identity) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = identity.ca_pem;
  tls.pem_private_key = identity.key_pem;
  tls.pem_cert_chain = identity.cert_pem;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(4 << 20);
  // gRPC backs off reconnecting on its own; keep that within the agent's own cap, or a
  // device would sit out minutes after the server is back.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, options_.max_backoff_seconds * 1000);
  // A server that went silent (a dropped NAT mapping, a dead link) is found by keepalive and
  // the Watch stream restarted, instead of waiting on a connection nobody answers. The server
  // accepts pings this often (--device-keepalive-seconds, at most every 30 s).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 60 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  // A channel of its own, so replacing it after a failure really starts a fresh connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(options_.server, grpc::SslCredentials(tls), args);
  // Read once per certificate: parsing PEM with OpenSSL 3 costs about half a millisecond, and
  // the sync loop asks whether renewal is due every time it wakes.
  absl::StatusOr<crypto::CertificateInfo> info = crypto::InspectCertificate(identity.cert_pem);
  absl::StatusOr<absl::Time> renew_at;
  absl::Time expires = absl::InfiniteFuture();
  if (info.ok()) {
    cert_expiry_->Set(absl::ToDoubleSeconds(info->not_after - absl::UnixEpoch()));
    renew_at = info->not_before + (info->not_after - info->not_before) * 2 / 3;
    expires = info->not_after;
  } else {
    renew_at = info.status();
  }
  enrolled_->Set(1);
  std::lock_guard lock(mu_);
  renew_at_ = std::move(renew_at);
  cert_expires_ = expires;
  identity_ = std::move(identity);
  channel_ = std::move(channel);
}

absl::Status Agent::Enroll() {
  if (options_.enroll_token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this device is not enrolled (no identity in ", options_.state_dir,
        "/identity); start it once with --enroll-token from `edgeloop token create --enroll`"));
  }
  ASSIGN_OR_RETURN(EnrollmentTokenParts token, ParseEnrollmentToken(options_.enroll_token));
  std::string ca_pem;
  if (!options_.ca_file.empty()) {
    ASSIGN_OR_RETURN(ca_pem, ReadFile(options_.ca_file));
  } else {
    ASSIGN_OR_RETURN(ca_pem, FetchPinnedCa(options_.server, token.ca_pin));
  }
  std::optional<DeviceIdentity> current;
  {
    std::lock_guard lock(mu_);
    current = identity_;
  }
  // A device that was enrolled proves itself with the key it enrolled with; a new one uses the
  // pending key, kept on disk so that a retry after a lost answer presents the same key.
  std::string key_pem;
  if (current) {
    key_pem = current->key_pem;
  } else {
    ASSIGN_OR_RETURN(key_pem, PendingKey(options_.state_dir));
  }
  ASSIGN_OR_RETURN(std::string csr_pem, crypto::CsrForKey(key_pem, "pending"));
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ca_pem;
  auto stub =
      v1::DeviceService::NewStub(grpc::CreateChannel(options_.server, grpc::SslCredentials(tls)));
  v1::EnrollRequest request;
  request.set_token(options_.enroll_token);
  request.set_csr_pem(csr_pem);
  *request.mutable_profile() = ReadHardwareProfile({options_.state_dir, options_.labels});
  request.set_serial(options_.serial);
  if (current) request.set_device_id(current->device_id);
  v1::EnrollResponse response;
  RETURN_IF_ERROR(FromGrpc(stub->Enroll(CallContext().get(), request, &response)));
  // The module signing key is pinned now, on the word of the CA the token pinned: nobody who
  // later answers as the server can swap it for a key of their own. Re-enrolling keeps the pin
  // unless the offer proves a rotation, as a sync's would.
  absl::StatusOr<std::string> signing_key = AcceptSigningKey(
      current ? current->module_signing_key : "", ca_pem, response.module_signing_key());
  if (!signing_key.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("enrollment refused: ", signing_key.status().message()));
  }
  DeviceIdentity identity{response.device_id(), key_pem, response.cert_pem(), response.ca_pem(),
                          *signing_key};
  if (current && response.device_id() != current->device_id) {
    return absl::InternalError(absl::StrCat("re-enrollment answered for device \"",
                                            response.device_id(), "\", not \"",
                                            current->device_id, "\""));
  }
  RETURN_IF_ERROR(SaveIdentity(options_.state_dir, identity));
  Log(LogLevel::kInfo, current ? "re-enrolled" : "enrolled",
      {{"device", response.device_id()}, {"server", options_.server}});
  UseIdentity(std::move(identity));
  return absl::OkStatus();
}

bool Agent::NeedsEnrollment() {
  std::lock_guard lock(mu_);
  if (!identity_) return true;
  return !options_.enroll_token.empty() && options_.clock->Now() >= cert_expires_;
}

v1::DeviceHealth Agent::Health() const {
  v1::DeviceHealth health;
  health.set_uptime_seconds(absl::ToDoubleSeconds(options_.clock->Now() - started_));
  double load[1] = {0};
  if (::getloadavg(load, 1) == 1) health.set_load1(load[0]);
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    int64_t kb = 0;
    if (absl::StartsWith(line, "MemAvailable:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::StripSuffix(line.substr(13), "kB")),
                         &kb)) {
      health.set_mem_available_mb(kb / 1024);
    }
  }
  struct statvfs fs;
  if (::statvfs(options_.state_dir.c_str(), &fs) == 0) {
    health.set_storage_free_mb(static_cast<int64_t>(fs.f_bavail * fs.f_frsize / (1024 * 1024)));
  }
  return health;
}

absl::Status Agent::SyncOnce() {
  if (options_.clock->Now() - profile_read_ > kProfileRefresh) {
    profile_ = ReadHardwareProfile({options_.state_dir, options_.labels});
    std::string hash = ProfileHash(profile_);
    if (hash != profile_hash_) send_profile_ = true;
    profile_hash_ = std::move(hash);
    profile_read_ = options_.clock->Now();
  }
  std::shared_ptr<grpc::Channel> channel;
  v1::SyncRequest request;
  {
    std::lock_guard lock(mu_);
    channel = channel_;
    request.set_device_id(identity_->device_id);
  }
  v1::DeviceState* state = request.mutable_state();
  state->set_agent_version(EDGELOOP_VERSION);
  state->set_profile_hash(profile_hash_);
  *state->mutable_health() = Health();
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
  syncs_ok_->Increment();
  last_sync_->Set(absl::ToDoubleSeconds(options_.clock->Now() - absl::UnixEpoch()));
  next_sync_->Set(static_cast<double>(response.next_sync_ms()) / 1000.0);
  // The server asked for the profile: send it right away rather than a whole interval later.
  if (send_profile_) {
    std::lock_guard lock(mu_);
    sync_requested_ = true;
  }
  next_interval_ = absl::Milliseconds(std::max<int64_t>(response.next_sync_ms(), 100));
  return absl::OkStatus();
}

std::string Agent::TrustedSigningKey(const v1::SyncResponse& desired) {
  v1::SigningKeyTrust offer = desired.module_signing_key_trust();
  if (offer.key_pem().empty()) offer.set_key_pem(desired.module_signing_key());
  std::lock_guard lock(mu_);
  const std::string pinned = identity_->module_signing_key;
  absl::StatusOr<std::string> accepted = AcceptSigningKey(pinned, identity_->ca_pem, offer);
  if (!accepted.ok()) {
    if (offer.key_pem() != refused_signing_key_) {
      Log(LogLevel::kError, "module signing key refused",
          {{"offered", offer.key_pem()}, {"error", accepted.status().ToString()}});
      refused_signing_key_ = offer.key_pem();
    }
    return pinned;
  }
  if (*accepted != pinned) {
    DeviceIdentity updated = *identity_;
    updated.module_signing_key = *accepted;
    if (absl::Status saved = SaveIdentity(options_.state_dir, updated); !saved.ok()) {
      Log(LogLevel::kWarning, "could not pin the new module signing key",
          {{"error", saved.ToString()}});
      return pinned;
    }
    Log(LogLevel::kInfo, pinned.empty() ? "module signing key pinned" : "module signing key rotated",
        {{"key", *accepted}});
    identity_->module_signing_key = *accepted;
  }
  return *accepted;
}

absl::StatusOr<bool> Agent::ApplyDesired(const v1::SyncResponse& desired, const char* source) {
  if (desired.desired_generation() != desired_generation_.load()) {
    Log(LogLevel::kInfo, "desired state changed",
        {{"generation", desired.desired_generation()},
         {"modules", desired.desired_modules_size()},
         {"from", source}});
    desired_generation_ = desired.desired_generation();
    generation_gauge_->Set(static_cast<double>(desired.desired_generation()));
  }
  // Modules are checked against the key this device pinned; the server's offer replaces it only
  // when the CA endorsed it or the pinned key handed over to it.
  v1::SyncResponse checked = desired;
  checked.set_module_signing_key(TrustedSigningKey(desired));
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
  std::shared_ptr<grpc::Channel> channel;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return absl::CancelledError("stopping");
    channel = channel_;
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

absl::Status Agent::RenewIfDue() {
  DeviceIdentity identity;
  absl::StatusOr<absl::Time> due;
  {
    std::lock_guard lock(mu_);
    identity = *identity_;
    due = renew_at_;
  }
  RETURN_IF_ERROR(due.status());
  if (options_.clock->Now() < *due) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string csr, crypto::CsrForKey(identity.key_pem, identity.device_id));
  v1::RenewRequest request;
  request.set_csr_pem(csr);
  v1::RenewResponse response;
  std::shared_ptr<grpc::Channel> channel;
  {
    std::lock_guard lock(mu_);
    channel = channel_;
  }
  RETURN_IF_ERROR(FromGrpc(
      v1::DeviceService::NewStub(channel)->Renew(CallContext().get(), request, &response)));
  identity.cert_pem = response.cert_pem();
  RETURN_IF_ERROR(SaveIdentity(options_.state_dir, identity));
  Log(LogLevel::kInfo, "certificate renewed", {{"device", identity.device_id}});
  UseIdentity(std::move(identity));
  return absl::OkStatus();
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
    std::shared_ptr<grpc::Channel> channel;
    grpc::ClientContext* context = nullptr;
    {
      std::lock_guard lock(mu_);
      channel = channel_;
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
  {
    std::lock_guard lock(mu_);
    if (identity_ && options_.enroll_token.empty() && options_.clock->Now() >= cert_expires_) {
      Log(LogLevel::kError,
          "this device's certificate has expired and the server will refuse it; restart the "
          "agent with --enroll-token (a new token from `edgeloop token create --enroll`) to "
          "re-enroll as the same device",
          {{"device", identity_->device_id}});
    }
  }
  while (!stopping_ && NeedsEnrollment()) {
    const bool enrolled_before = identity_.has_value();
    absl::Status enrolled = Enroll();
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
  absl::Time sync_at = absl::InfinitePast();  // now
  while (!stopping_) {
    absl::Status status = RenewIfDue();
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
      syncs_failed_->Increment();
      ++failures_;
      const absl::Duration wait = Backoff();
      sync_at = options_.clock->Now() + wait;
      if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) {
        // gRPC's own reconnect schedule (and its resolver's) can lag well behind ours once the
        // server is back; a new channel connects on the next attempt.
        std::optional<DeviceIdentity> identity;
        {
          std::lock_guard lock(mu_);
          identity = identity_;
        }
        UseIdentity(std::move(*identity));
      }
      Log(absl::IsPermissionDenied(status) ? LogLevel::kError : LogLevel::kWarning, "sync failed",
          {{"error", status.ToString()}, {"retry_in_ms", absl::ToInt64Milliseconds(wait)}});
    }
    Wait(&sync_at);
  }
  return absl::OkStatus();
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

std::string Agent::RenderMetrics() {
  background_lifts_->Increment(static_cast<double>(BackgroundPriority::Lifts()) -
                               background_lifts_->Value());
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, metrics_->Collect());
  return out.str() + ProcessMetricsText();
}

}  // namespace edgeloop::agent
