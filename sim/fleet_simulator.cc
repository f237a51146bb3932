#include "sim/fleet_simulator.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/hardware_profile.h"
#include "agent/module_store.h"
#include "agent/monitoring_spec.h"
#include "agent/trust.h"
#include "common/enrollment_token.h"
#include "common/hardware.h"
#include "common/latency_buckets.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/telemetry_window.h"
#include "common/x509.h"
#include "sim/device_profiles.h"

namespace edgeloop::sim {
namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(15);
constexpr absl::Duration kRetry = absl::Seconds(2);

std::unique_ptr<grpc::ClientContext> Context() {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  return c;
}

int64_t Binomial(int64_t n, double p, std::mt19937_64& rng) {
  if (n <= 0 || p <= 0) return 0;
  if (p >= 1) return n;
  return std::binomial_distribution<int64_t>(n, p)(rng);
}

}  // namespace

// What a device runs of one model.
struct FleetSimulator::Installed {
  v1::ModuleRef ref;  // running
  int64_t window_seconds = 60;
  bool emulated = false;
  double run_us = 0;
  int64_t window_start_ms = 0;              // the open window
  std::optional<v1::ModuleStatus> failure;  // the last install that failed
  // A candidate run beside it on a sampled share of the calls (a rollout's shadow stage).
  std::optional<v1::ShadowModule> shadow;
  bool shadow_emulated = false;
  double shadow_run_us = 0;
};

// One virtual device: its identity, what it runs, and its Watch stream.
struct FleetSimulator::Device {
  int index = 0;
  std::string cohort;
  v1::HardwareProfile profile;
  std::string id, key_pem, cert_pem, signing_key_pem;
  std::unique_ptr<v1::DeviceService::Stub> stub;
  std::mt19937_64 rng;
  absl::Duration report_delay;  // after a window closes, before it is sent

  std::mutex mu;  // one task of a device at a time; guards what follows
  std::map<std::string, Installed> models;
  bool profile_sent = false;

  int64_t desired_generation = 0;  // of the desired state last applied
  bool syncing = false;     // a sync is in flight
  bool sync_again = false;  // ... and another was asked for meanwhile

  std::mutex watch_mu;            // guards what follows
  WatchReactor* watch = nullptr;  // the open stream, if any (it deletes itself)
  std::optional<v1::SyncResponse> pushed;  // the desired state a Watch event carried
  std::unique_ptr<SyncCall> synced;        // an answered sync, for the next kSyncDone
};

// A sync in flight; its answer is applied by a worker (Task::kSyncDone).
struct FleetSimulator::SyncCall {
  grpc::ClientContext context;
  v1::SyncRequest request;
  v1::SyncResponse response;
  grpc::Status status;
};

// A telemetry report in flight; deleted by its completion.
struct FleetSimulator::ReportCall {
  grpc::ClientContext context;
  v1::ReportTelemetryRequest request;
  v1::ReportTelemetryResponse response;
};

// The device's Watch stream: each event makes it sync now (which installs what changed).
class FleetSimulator::WatchReactor final : public grpc::ClientReadReactor<v1::WatchEvent> {
 public:
  WatchReactor(FleetSimulator* sim, Device* device) : sim_(sim), device_(device) {
    device_->stub->async()->Watch(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    ++sim_->counts_.watch_events;
    {
      std::lock_guard lock(sim_->watch_times_mu_);
      sim_->watch_times_.push_back(absl::Now());
    }
    // As the agent does: the event's desired state is applied as it is; a sync follows only
    // to report what changed.
    if (event_.has_desired()) {
      {
        std::lock_guard lock(device_->watch_mu);
        device_->pushed = std::move(*event_.mutable_desired());
      }
      sim_->Schedule(device_->index, Task::kApplyPushed, absl::Now());
    } else {
      sim_->Schedule(device_->index, Task::kSync, absl::Now());
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status&) override {
    {
      std::lock_guard lock(device_->watch_mu);
      device_->watch = nullptr;
    }
    --sim_->watches_;
    sim_->Schedule(device_->index, Task::kWatch, absl::Now() + kRetry);
    delete this;
  }
  void Cancel() { context_.TryCancel(); }

 private:
  FleetSimulator* sim_;
  Device* device_;
  grpc::ClientContext context_;
  v1::WatchRequest request_;
  v1::WatchEvent event_;
};

FleetSimulator::FleetSimulator(const SimulatorOptions& options, ScenarioRules rules)
    : options_(options),
      rules_(std::move(rules)),
      host_target_(DeriveTargetClass(agent::ReadHardwareProfile({}))),
      modules_(options.work_dir, host_target_) {}

FleetSimulator::~FleetSimulator() { Stop(); }

absl::StatusOr<std::unique_ptr<FleetSimulator>> FleetSimulator::Create(
    const SimulatorOptions& options, ScenarioRules rules) {
  if (options.devices < 1) return absl::InvalidArgumentError("--devices must be at least 1");
  if (options.threads < 1) return absl::InvalidArgumentError("--threads must be at least 1");
  std::error_code ec;
  std::filesystem::create_directories(options.work_dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create --work-dir ", options.work_dir, ": ", ec.message()));
  }
  std::unique_ptr<FleetSimulator> sim(new FleetSimulator(options, std::move(rules)));
  ASSIGN_OR_RETURN(EnrollmentTokenParts token, ParseEnrollmentToken(options.enroll_token));
  ASSIGN_OR_RETURN(sim->ca_pem_, agent::FetchPinnedCa(options.server, token.ca_pin));
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = sim->ca_pem_;
  sim->bootstrap_ =
      v1::DeviceService::NewStub(grpc::CreateChannel(options.server, grpc::SslCredentials(tls)));
  // Devices of each group in proportion to its weight, interleaved, so any prefix of the
  // fleet (a ramp-up not finished) has the mix.
  const Scenario& s = sim->rules_.scenario();
  double total = 0;
  for (const DeviceGroup& g : s.groups()) total += g.weight();
  std::vector<double> credit(s.groups_size(), 0);
  for (int i = 0; i < options.devices; ++i) {
    auto d = std::make_unique<Device>();
    d->index = i;
    d->rng.seed(0x5eed + i);
    d->report_delay =
        options.report_spread * std::uniform_real_distribution<double>(0, 1)(d->rng);
    if (s.groups_size() == 0) {
      d->profile = agent::ReadHardwareProfile({});
      d->profile.set_target(sim->host_target_);
      (*d->profile.mutable_labels())["fleetsim"] = "true";
    } else {
      int pick = 0;
      for (int g = 0; g < s.groups_size(); ++g) {
        credit[g] += s.groups(g).weight() / total;
        if (credit[g] > credit[pick]) pick = g;
      }
      credit[pick] -= 1;
      const DeviceGroup& g = s.groups(pick);
      ASSIGN_OR_RETURN(d->profile, ProfileFor(g.target(), g.ram_mb(),
                                              std::map<std::string, std::string>(
                                                  g.labels().begin(), g.labels().end())));
    }
    auto cohort = d->profile.labels().find(s.cohort_label());
    if (cohort != d->profile.labels().end()) d->cohort = cohort->second;
    sim->devices_.push_back(std::move(d));
  }
  return sim;
}

void FleetSimulator::Start() {
  started_ = absl::Now();
  sync_due_.assign(devices_.size(), absl::InfiniteFuture());
  report_due_.assign(devices_.size(), absl::InfiniteFuture());
  const absl::Duration step = options_.ramp_up / options_.devices;
  for (int i = 0; i < options_.devices; ++i) Schedule(i, Task::kEnroll, started_ + step * i);
  for (int t = 0; t < options_.threads; ++t) workers_.emplace_back([this] { Work(); });
}

void FleetSimulator::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_ && workers_.empty()) return;
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  for (auto& d : devices_) {
    std::lock_guard lock(d->watch_mu);
    if (d->watch != nullptr) d->watch->Cancel();
  }
  // Every stream and report ends before the devices (and stubs) they use go away.
  for (int k = 0; k < 1000 && (watches_ > 0 || reports_in_flight_ > 0 || syncs_in_flight_ > 0);
       ++k) {
    absl::SleepFor(absl::Milliseconds(10));
  }
}

absl::Duration FleetSimulator::Lag() {
  std::lock_guard lock(mu_);
  if (events_.empty()) return absl::ZeroDuration();
  return std::max(absl::ZeroDuration(), absl::Now() - events_.top().at);
}

std::vector<absl::Time> FleetSimulator::WatchEventTimes() const {
  std::lock_guard lock(watch_times_mu_);
  return watch_times_;
}

void FleetSimulator::Schedule(int device, Task task, absl::Time at) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    // One pending sync and one pending report per device: the earliest wins, later events for
    // them are dropped when they come due.
    if (task == Task::kSync || task == Task::kReport) {
      absl::Time& due = (task == Task::kSync ? sync_due_ : report_due_)[device];
      if (at >= due) return;
      due = at;
    }
    events_.push({at, device, task});
  }
  wake_.notify_one();
}

void FleetSimulator::Work() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (events_.empty()) {
      wake_.wait(lock);
      continue;
    }
    const absl::Time now = absl::Now();
    if (events_.top().at > now) {
      wake_.wait_for(lock, absl::ToChronoNanoseconds(events_.top().at - now));
      continue;
    }
    const Event e = events_.top();
    events_.pop();
    if (e.task == Task::kSync || e.task == Task::kReport) {
      absl::Time& due = (e.task == Task::kSync ? sync_due_ : report_due_)[e.device];
      if (e.at != due) continue;  // superseded by an earlier one
      due = absl::InfiniteFuture();
    }
    lock.unlock();
    Device& d = *devices_[e.device];
    {
      std::lock_guard device(d.mu);
      switch (e.task) {
        case Task::kEnroll:
          Enroll(d);
          break;
        case Task::kSync:
          Sync(d);
          break;
        case Task::kSyncDone:
          SyncDone(d);
          break;
        case Task::kReport:
          Report(d);
          break;
        case Task::kWatch:
          Watch(d);
          break;
        case Task::kApplyPushed:
          ApplyPushed(d);
          break;
      }
    }
    lock.lock();
  }
}

void FleetSimulator::Enroll(Device& d) {
  absl::StatusOr<crypto::KeyAndCsr> key = crypto::GenerateKeyAndCsr("pending");
  if (!key.ok()) {
    ++counts_.enroll_failed;
    return;
  }
  v1::EnrollRequest request;
  request.set_token(options_.enroll_token);
  request.set_csr_pem(key->csr_pem);
  *request.mutable_profile() = d.profile;
  request.set_serial(absl::StrCat("fleetsim-", d.index));
  v1::EnrollResponse response;
  grpc::Status s = bootstrap_->Enroll(Context().get(), request, &response);
  if (!s.ok()) {
    ++counts_.enroll_failed;
    Log(LogLevel::kWarning, "enroll failed", {{"device", d.index}, {"error", s.error_message()}});
    Schedule(d.index, Task::kEnroll, absl::Now() + kRetry);
    return;
  }
  d.id = response.device_id();
  d.key_pem = key->key_pem;
  d.cert_pem = response.cert_pem();
  // A simulator trusts the key the server it enrolled with names; an agent pins it (trust.h).
  d.signing_key_pem = response.module_signing_key().key_pem();
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ca_pem_;
  tls.pem_private_key = d.key_pem;
  tls.pem_cert_chain = d.cert_pem;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(4 << 20);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own, as a device
  d.stub = v1::DeviceService::NewStub(
      grpc::CreateCustomChannel(options_.server, grpc::SslCredentials(tls), args));
  ++counts_.enrolled;
  Schedule(d.index, Task::kSync, absl::Now());
}

void FleetSimulator::Sync(Device& d) {
  if (d.stub == nullptr) return;
  const absl::Duration elapsed = Elapsed();
  if (rules_.Faulty("offline", d.index, d.cohort, "", 0, elapsed) ||
      rules_.Faulty("flap", d.index, d.cohort, "", 0, elapsed)) {
    Schedule(d.index, Task::kSync, absl::Now() + absl::Seconds(1));
    return;
  }
  if (d.syncing) {  // what it reports may have changed since that one was sent
    d.sync_again = true;
    return;
  }
  auto call = std::make_unique<SyncCall>();
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  v1::SyncRequest& request = call->request;
  v1::DeviceState& state = *request.mutable_state();
  state.set_agent_version("fleetsim");
  state.set_profile_hash(ProfileHash(d.profile));
  if (!d.profile_sent) *request.mutable_profile() = d.profile;
  for (const auto& [model, m] : d.models) {
    if (!m.ref.digest().empty()) {
      v1::ModuleStatus* running = state.add_modules();
      running->mutable_module()->set_model(m.ref.model());
      running->mutable_module()->set_version(m.ref.version());
      running->mutable_module()->set_digest(m.ref.digest());
      running->mutable_module()->set_target(m.ref.target());
      running->set_state("running");
    }
    if (m.shadow) {
      v1::ModuleStatus* shadowing = state.add_modules();
      *shadowing->mutable_module() = m.shadow->module();
      shadowing->mutable_module()->clear_manifest();
      shadowing->mutable_module()->clear_signature();
      shadowing->mutable_module()->clear_monitoring();
      shadowing->mutable_module()->clear_monitoring_signature();
      shadowing->set_state("shadowing");
    }
    if (m.failure) *state.add_modules() = *m.failure;
  }
  // On gRPC's callback API, as the reports: a worker blocked on each sync's round trip held
  // up every device behind it (a wave's devices took seconds to report what they installed).
  d.syncing = true;
  ++syncs_in_flight_;
  SyncCall* raw = call.release();
  d.stub->async()->Sync(&raw->context, &raw->request, &raw->response,
                        [this, &d, raw](grpc::Status s) {
                          raw->status = std::move(s);
                          {
                            std::lock_guard lock(d.watch_mu);
                            d.synced.reset(raw);
                          }
                          Schedule(d.index, Task::kSyncDone, absl::Now());
                          --syncs_in_flight_;
                        });
}

void FleetSimulator::SyncDone(Device& d) {
  std::unique_ptr<SyncCall> call;
  {
    std::lock_guard lock(d.watch_mu);
    call = std::move(d.synced);
  }
  if (call == nullptr) return;
  d.syncing = false;
  const bool again = std::exchange(d.sync_again, false);
  if (!call->status.ok()) {
    ++counts_.syncs_failed;
    Schedule(d.index, Task::kSync, absl::Now() + kRetry);
    return;
  }
  ++counts_.syncs;
  const v1::SyncResponse& response = call->response;
  d.profile_sent = !response.send_profile();
  const bool changed = ApplyDesired(d, response);
  if (options_.watch) Watch(d);
  // Report what changed at once (as an agent's next sync would), then on the server's pacing.
  Schedule(d.index, Task::kSync,
           changed || again ? absl::Now()
                            : absl::Now() + absl::Milliseconds(response.next_sync_ms()));
  Schedule(d.index, Task::kReport, absl::Now() + absl::Seconds(1));
}

void FleetSimulator::ApplyPushed(Device& d) {
  std::optional<v1::SyncResponse> pushed;
  {
    std::lock_guard lock(d.watch_mu);
    pushed.swap(d.pushed);
  }
  // Generations only grow: a push older than what a sync brought since is stale.
  if (!pushed || pushed->desired_generation() <= d.desired_generation) return;
  if (ApplyDesired(d, *pushed)) Schedule(d.index, Task::kSync, absl::Now());
}

bool FleetSimulator::ApplyDesired(Device& d, const v1::SyncResponse& response) {
  d.desired_generation = std::max(d.desired_generation, response.desired_generation());
  std::set<std::string> desired;
  bool changed = false;
  for (const v1::ModuleRef& ref : response.desired_modules()) {
    desired.insert(ref.model());
    auto it = d.models.find(ref.model());
    // As the agent does: the same bytes under another version are another module.
    const bool have = it != d.models.end() && it->second.ref.digest() == ref.digest() &&
                      it->second.ref.version() == ref.version();
    const bool refused = it != d.models.end() && it->second.failure.has_value() &&
                         it->second.failure->module().digest() == ref.digest();
    if (!have && !refused) {
      Install(d, ref);
      changed = true;
    }
  }
  for (auto it = d.models.begin(); it != d.models.end();) {
    if (desired.count(it->first)) {
      ++it;
    } else {
      it = d.models.erase(it);
      changed = true;
    }
  }
  std::set<std::string> shadowed;
  for (const v1::ShadowModule& shadow : response.shadow_modules()) {
    auto it = d.models.find(shadow.module().model());
    if (it == d.models.end() || it->second.ref.digest().empty()) continue;  // nothing serves
    shadowed.insert(shadow.module().model());
    const auto& have = it->second.shadow;
    const bool refused = it->second.failure.has_value() &&
                         it->second.failure->module().digest() == shadow.module().digest();
    if ((have && have->module().digest() == shadow.module().digest() &&
         have->module().version() == shadow.module().version()) ||
        refused) {
      continue;
    }
    InstallShadow(d, shadow);
    changed = true;
  }
  for (auto& [model, m] : d.models) {
    if (m.shadow && !shadowed.count(model)) {
      m.shadow.reset();
      changed = true;
    }
  }
  return changed;
}

void FleetSimulator::Watch(Device& d) {
  if (d.stub == nullptr) return;
  std::lock_guard lock(d.watch_mu);
  if (d.watch != nullptr) return;
  ++watches_;
  d.watch = new WatchReactor(this, &d);  // deletes itself when the stream ends
}

absl::Status FleetSimulator::Fetch(Device& d, const v1::ModuleRef& ref, const std::string& path) {
  v1::FetchModuleRequest request;
  request.set_digest(ref.digest());
  auto context = Context();
  auto reader = d.stub->FetchModule(context.get(), request);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  v1::ModuleChunk chunk;
  while (reader->Read(&chunk)) out.write(chunk.data().data(), chunk.data().size());
  out.close();
  grpc::Status s = reader->Finish();
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("fetch: ", s.error_message()));
  if (!out) return absl::DataLossError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<FleetSimulator::Installed> FleetSimulator::Prepare(Device& d,
                                                                  const v1::ModuleRef& ref) {
  if (rules_.Faulty("fail_install", d.index, d.cohort, ref.model(), ref.version(), Elapsed())) {
    return absl::UnavailableError("simulated install failure (fleetsim scenario)");
  }
  RETURN_IF_ERROR(agent::VerifyManifest(ref, d.signing_key_pem));
  Installed next;
  next.ref = ref;
  absl::StatusOr<std::optional<v1::MonitoringSpec>> spec =
      agent::VerifyMonitoringSpec(ref, d.signing_key_pem);
  if (spec.ok() && spec->has_value() && (*spec)->window_seconds() > 0) {
    next.window_seconds = (*spec)->window_seconds();
  }
  if (TargetRunsOn(ref.target(), host_target_)) {
    ASSIGN_OR_RETURN(ModuleCache::Loaded loaded,
                     modules_.Get(ref, d.signing_key_pem,
                                  [&](const std::string& path) { return Fetch(d, ref, path); }));
    next.run_us = loaded.mean_run_us;
  } else {
    next.emulated = true;
  }
  return next;
}

namespace {

v1::ModuleStatus Failure(const v1::ModuleRef& ref, const absl::Status& why) {
  v1::ModuleStatus failure;
  failure.mutable_module()->set_model(ref.model());
  failure.mutable_module()->set_version(ref.version());
  failure.mutable_module()->set_digest(ref.digest());
  failure.mutable_module()->set_target(ref.target());
  failure.set_state("failed");
  failure.set_message(std::string(why.message()).substr(0, 500));
  return failure;
}

}  // namespace

void FleetSimulator::Install(Device& d, const v1::ModuleRef& ref) {
  Installed& slot = d.models[ref.model()];
  absl::StatusOr<Installed> next = Prepare(d, ref);
  if (!next.ok()) {
    ++counts_.installs_failed;
    slot.failure = Failure(ref, next.status());  // the module it ran keeps serving
    return;
  }
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  next->window_start_ms = now_ms - now_ms % 1000;
  slot = *std::move(next);
  ++counts_.installs;
}

void FleetSimulator::InstallShadow(Device& d, const v1::ShadowModule& shadow) {
  Installed& slot = d.models.at(shadow.module().model());
  absl::StatusOr<Installed> candidate = Prepare(d, shadow.module());
  if (!candidate.ok()) {
    ++counts_.installs_failed;
    slot.failure = Failure(shadow.module(), candidate.status());
    slot.shadow.reset();
    return;
  }
  slot.shadow = shadow;
  slot.shadow_emulated = candidate->emulated;
  slot.shadow_run_us = candidate->run_us;
  ++counts_.shadows;
}

v1::TelemetryWindow FleetSimulator::Window(Device& d, const std::string& model, int64_t start_ms,
                                           int64_t end_ms, std::mt19937_64& rng) {
  const Installed& m = d.models.at(model);
  const absl::Duration elapsed = Elapsed();
  const ModelBehaviour b = rules_.BehaviourOf(model, m.ref.version(), d.cohort, elapsed);
  const Scenario& s = rules_.scenario();
  v1::TelemetryWindow w;
  w.set_id(TelemetryWindowId(model, m.ref.version(), start_ms));
  w.set_model(model);
  w.set_version(m.ref.version());
  w.set_module_digest(m.ref.digest());
  w.set_start_ms(start_ms);
  w.set_end_ms(end_ms);
  w.set_emulated(m.emulated);
  const double seconds = static_cast<double>(end_ms - start_ms) / 1000;
  const int64_t calls =
      std::poisson_distribution<int64_t>(std::max(s.calls_per_second() * seconds, 1e-9))(rng);
  w.set_requests(calls);
  w.set_errors(Binomial(calls, b.error_rate, rng));
  double slow = 1;
  rules_.Faulty("slow", d.index, d.cohort, model, m.ref.version(), elapsed, &slow);
  const double mean_us = (m.emulated ? b.latency_us : m.run_us) * slow;
  std::vector<int64_t> latency(kLatencyBuckets, 0);
  // Run times spread ±30 % around the mean; at most 256 draws, the rest in proportion.
  std::uniform_real_distribution<double> jitter(0.7, 1.3);
  const int64_t draws = std::min<int64_t>(calls, 256);
  for (int64_t k = 0; k < draws; ++k) {
    latency[LatencyBucket(mean_us * jitter(rng))] += calls / draws + (k < calls % draws ? 1 : 0);
  }
  if (calls > 0) {
    for (int64_t c : latency) w.add_latency_counts(c);
  }
  const int64_t labelled = Binomial(calls, s.labelled_share(), rng);
  w.add_labelled(labelled);
  w.add_correct(Binomial(labelled, b.accuracy, rng));
  if (m.shadow) {
    // The candidate's own behaviour says how often it agrees and how fast it runs.
    const v1::ModuleRef& candidate = m.shadow->module();
    const ModelBehaviour c = rules_.BehaviourOf(model, candidate.version(), d.cohort, elapsed);
    v1::TelemetryWindow::Shadow* sh = w.add_shadows();
    sh->set_version(candidate.version());
    sh->set_module_digest(candidate.digest());
    const int64_t shadowed = Binomial(calls, m.shadow->sample_ratio(), rng);
    sh->set_requests(shadowed);
    sh->set_errors(Binomial(shadowed, c.error_rate, rng));
    sh->set_agreed(Binomial(shadowed - sh->errors(), c.agreement, rng));
    std::vector<int64_t> run(kLatencyBuckets, 0);
    const double candidate_us = m.shadow_emulated ? c.latency_us : m.shadow_run_us;
    run[LatencyBucket(candidate_us * slow)] = shadowed;
    for (int64_t n : run) sh->add_latency_counts(n);
  }
  return w;
}

void FleetSimulator::Report(Device& d) {
  if (d.stub == nullptr) return;
  const absl::Duration elapsed = Elapsed();
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  int64_t next_ms = now_ms + 60'000;
  const bool offline = rules_.Faulty("offline", d.index, d.cohort, "", 0, elapsed) ||
                       rules_.Faulty("flap", d.index, d.cohort, "", 0, elapsed);
  v1::ReportTelemetryRequest request;
  request.set_format(1);
  for (auto& [model, m] : d.models) {
    if (m.ref.digest().empty()) continue;
    const int64_t length = m.window_seconds * 1000;
    // Windows end on multiples of their length; the first one starts at the install. (Its
    // close is judged by its end, not by start + length: judged so, a window begun mid-second
    // looked due before it had closed, and its device rescheduled itself in a busy loop.)
    while (request.windows_size() < 64) {
      const int64_t end = (m.window_start_ms / length + 1) * length;
      if (end > now_ms) break;
      v1::TelemetryWindow w = Window(d, model, m.window_start_ms, end, d.rng);
      if (w.requests() > 0 && !offline) *request.add_windows() = std::move(w);
      m.window_start_ms = end;
    }
    next_ms = std::min(next_ms, (m.window_start_ms / length + 1) * length);
  }
  if (request.windows_size() > 0) {
    counts_.windows_sent += request.windows_size();
    // On gRPC's callback API: the server answers a report only after its group commit, and a
    // fleet's reports waiting on that in the workers would hold up the syncs behind them (a
    // released wave then waited a minute for its devices to hear of it).
    auto* call = new ReportCall;
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    call->request = std::move(request);
    ++reports_in_flight_;
    d.stub->async()->ReportTelemetry(
        &call->context, &call->request, &call->response, [this, call](grpc::Status s) {
          if (s.ok()) {
            counts_.windows_stored += call->response.stored_size();
          } else {
            ++counts_.reports_failed;
          }
          delete call;
          --reports_in_flight_;
        });
  }
  // A little after the next window ends, so it has closed, and after this device's spread.
  Schedule(d.index, Task::kReport,
           absl::FromUnixMillis(next_ms) + absl::Milliseconds(50) + d.report_delay);
}

std::map<std::string, int64_t> FleetSimulator::Running() const {
  std::map<std::string, int64_t> out;
  for (const auto& d : devices_) {
    std::lock_guard lock(d->mu);
    for (const auto& [model, m] : d->models) {
      if (!m.ref.digest().empty()) ++out[absl::StrCat(model, " v", m.ref.version())];
    }
  }
  return out;
}

std::string FleetSimulator::Summary() const {
  std::ostringstream out;
  const SimulatorCounts& c = counts_;
  out << absl::StrFormat("edgeloop-fleetsim: %d devices for %s (this host: %s)\n", options_.devices,
                         absl::FormatDuration(absl::Trunc(Elapsed(), absl::Seconds(1))),
                         host_target_);
  out << absl::StrFormat("%-22s %10s\n", "COUNT", "VALUE");
  for (const auto& [name, value] :
       std::vector<std::pair<const char*, int64_t>>{{"enrolled", c.enrolled.load()},
                                                    {"enroll failures", c.enroll_failed.load()},
                                                    {"syncs", c.syncs.load()},
                                                    {"sync failures", c.syncs_failed.load()},
                                                    {"watch events", c.watch_events.load()},
                                                    {"installs", c.installs.load()},
                                                    {"install failures", c.installs_failed.load()},
                                                    {"shadows started", c.shadows.load()},
                                                    {"windows sent", c.windows_sent.load()},
                                                    {"windows stored", c.windows_stored.load()},
                                                    {"report failures", c.reports_failed.load()},
                                                    {"modules loaded", modules_.fetched()}}) {
    out << absl::StrFormat("%-22s %10d\n", name, value);
  }
  out << absl::StrFormat("%-22s %10s\n", "RUNNING", "DEVICES");
  for (const auto& [version, n] : Running()) out << absl::StrFormat("%-22s %10d\n", version, n);
  return out.str();
}

}  // namespace edgeloop::sim
