#include "server/server.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdlib>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ci/compile_jobs.h"
#include "ci/compile_pipeline.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/signing.h"
#include "common/status.h"
#include "common/x509.h"
#include "fleet/desired_change.h"
#include "fleet/device_registry.h"
#include "fleet/enrollment_tokens.h"
#include "fleet/sync_pacer.h"
#include "registry/registry.h"
#include "rollout/controller.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/grpc/admin_service.h"
#include "server/grpc/device_service.h"
#include "server/grpc/fleet_service.h"
#include "server/grpc/registry_service.h"
#include "server/grpc/rollout_service.h"
#include "server/grpc/telemetry_service.h"
#include "server/metrics.h"
#include "server/module_signing_key.h"
#include "server/rest/http_server.h"
#include "server/rest/routes.h"
#include "server/schema.h"
#include "store/blob_store.h"
#include "store/database.h"
#include "store/change_feed.h"
#include "store/leader_lock.h"
#include "store/migrations.h"
#include "telemetry/ingest.h"
#include "telemetry/monitoring_specs.h"

namespace edgeloop::server {

struct Server::Impl {
  ServerOptions options;
  std::unique_ptr<store::Database> db;
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<registry::Registry> registry;
  std::unique_ptr<TokenStore> tokens;
  std::unique_ptr<crypto::CertificateAuthority> ca;
  crypto::ServerIdentity device_identity;
  std::unique_ptr<fleet::EnrollmentTokens> enrollment_tokens;
  std::unique_ptr<fleet::SyncPacer> pacer;
  std::unique_ptr<telemetry::MonitoringSpecs> monitoring;
  std::unique_ptr<telemetry::TelemetryIngest> telemetry;
  std::unique_ptr<telemetry::TelemetryQueries> telemetry_queries;
  std::unique_ptr<fleet::Assignments> assignments;
  std::unique_ptr<fleet::DeviceRegistry> devices;
  std::unique_ptr<rollout::Controller> rollouts;
  // Which replica runs the rollout controller; its thread takes or renews the lock.
  std::unique_ptr<store::LeaderLock> leader;
  std::thread leader_thread;
  std::mutex leader_mu;
  std::condition_variable leader_wake;
  bool leader_stop = false;
  std::unique_ptr<ServerMetrics> metrics;
  std::unique_ptr<Api> api;
  rest::Router router;
  std::unique_ptr<rest::HttpServer> http;
  std::unique_ptr<grpc_api::RegistryService> registry_service;
  std::unique_ptr<grpc_api::AdminService> admin_service;
  std::unique_ptr<grpc_api::FleetService> fleet_service;
  std::unique_ptr<grpc_api::TelemetryService> telemetry_service;
  std::unique_ptr<grpc_api::RolloutService> rollout_service;
  std::unique_ptr<grpc_api::DeviceService> device_service;
  // After device_service in this list: destroyed first, so it never wakes a stream that is gone.
  std::unique_ptr<store::ChangeFeed> desired_changes;
  std::unique_ptr<grpc::Server> grpc;
  std::unique_ptr<grpc::Server> device_grpc;
  std::unique_ptr<crypto::SigningKey> signer;
  std::unique_ptr<compiler::Sandbox> sandbox;
  std::unique_ptr<ci::CompilePipeline> pipeline;
  int http_port = 0;
  int grpc_port = 0;
  int device_port = 0;
  bool started = false;

  // Takes the lead when free and keeps it while the lease renews; runs the rollout controller
  // only while leading.
  void LeaderLoop() {
    bool leading = false;
    bool first = true;
    std::unique_lock lock(leader_mu);
    while (!leader_stop) {
      lock.unlock();
      const bool lead = leader->TryHold();
      if (lead != leading || first) {
        first = false;
        if (lead) {
          rollouts->Start();
        } else if (leading) {
          rollouts->Shutdown();
        }
        Log(LogLevel::kInfo, lead ? "leading: this replica runs the rollout controller"
                                  : "following: another replica runs the rollout controller",
            {{"shared_database", leader->shared() ? "yes" : "no"}});
        leading = lead;
        metrics->SetLeader(lead);
      }
      lock.lock();
      leader_wake.wait_for(lock, std::chrono::seconds(1), [this] { return leader_stop; });
    }
    lock.unlock();
    if (leading) rollouts->Shutdown();
  }

  absl::Status Readiness() {
    RETURN_IF_ERROR(db->Ping());
    ASSIGN_OR_RETURN(int version, store::CurrentSchemaVersion(*db));
    if (version < ServerSchema().back().version) {
      return absl::UnavailableError(
          absl::StrCat("schema at version ", version, ", migrations pending"));
    }
    return absl::OkStatus();
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const ServerOptions& options) {
  auto s = std::make_unique<Impl>();
  s->options = options;
  RETURN_IF_ERROR(MakeDirectories(options.data_dir, 0700));

  ASSIGN_OR_RETURN(s->db,
                   store::Database::Open(
                       {.url = options.db,
                        .pool_size = options.db_pool_size,
                        .acquire_timeout = absl::Seconds(options.db_acquire_timeout_seconds),
                        .statement_timeout = absl::Seconds(options.db_statement_timeout_seconds)}));
  // SQLite serves one node: a second server on the same file stops here, saying so.
  if (options.role != "worker") {
    ASSIGN_OR_RETURN(s->leader, store::LeaderLock::Create(options.db));
  }
  ASSIGN_OR_RETURN(int schema, store::ApplyMigrations(*s->db, ServerSchema()));
  store::BlobStoreOptions blob_options;
  blob_options.url = options.blobs;
  blob_options.staging_dir = options.data_dir + "/staging";
  blob_options.database = s->db.get();
  ASSIGN_OR_RETURN(s->blobs, store::BlobStore::Create(blob_options));
  // The registry shows each version's compile jobs beside its modules; the CI stage owns them.
  store::Database* db = s->db.get();
  ASSIGN_OR_RETURN(s->registry, registry::Registry::Create(
                                    {.database = db,
                                     .blobs = s->blobs.get(),
                                     .compile_jobs = [db](int64_t model_id, int64_t version) {
                                       return ci::CompileJobs::ForVersion(*db, model_id, version);
                                     }}));

  s->tokens = std::make_unique<TokenStore>(s->db.get(), SystemClock::Get());
  const char* env_token = std::getenv("EDGELOOP_ADMIN_TOKEN");
  RETURN_IF_ERROR(
      s->tokens->BootstrapAdmin(options.data_dir + "/admin.token", env_token ? env_token : ""));

  // Device identity: the CA signs device certificates and this server's TLS certificate for
  // the device listener, issued afresh at each start for the configured host names.
  const absl::Time now = absl::Now();
  ASSIGN_OR_RETURN(s->ca,
                   crypto::CertificateAuthority::LoadOrCreate(options.data_dir + "/ca", now));
  std::vector<std::string> hosts = absl::StrSplit(options.device_hostnames, ',', absl::SkipEmpty());
  ASSIGN_OR_RETURN(s->device_identity,
                   s->ca->IssueServerIdentity(hosts, now, absl::Hours(24 * 365)));
  s->enrollment_tokens =
      std::make_unique<fleet::EnrollmentTokens>(s->db.get(), SystemClock::Get(), s->ca->pin());
  s->pacer = std::make_unique<fleet::SyncPacer>(
      absl::Seconds(options.sync_interval_seconds), options.sync_capacity_per_second,
      SystemClock::Get(), static_cast<uint64_t>(absl::ToUnixNanos(now)));
  // Module manifests are signed with this key; devices pin it at enrollment (the CA endorses
  // it) and follow a rotation only when the old key signed the hand-over.
  ASSIGN_OR_RETURN(ModuleSigningKey signing, LoadModuleSigningKey(options.data_dir, *s->ca, *s->db,
                                                                  options.rotate_signing_key));
  s->signer = std::move(signing.signer);
  s->monitoring = std::make_unique<telemetry::MonitoringSpecs>(telemetry::MonitoringOptions{
      .database = s->db.get(),
      .clock = SystemClock::Get(),
      .signer = s->signer.get(),
      .window = absl::Seconds(std::max(1, options.telemetry_window_seconds))});
  s->assignments = std::make_unique<fleet::Assignments>(
      s->db.get(), SystemClock::Get(),
      [monitoring = s->monitoring.get()](int64_t model_id, v1::ModuleRef& ref) -> absl::Status {
        ASSIGN_OR_RETURN(auto spec, monitoring->For(model_id, ref.model(), ref.version()));
        if (spec.has_value()) {
          ref.set_monitoring(std::move(spec->bytes));
          ref.set_monitoring_signature(std::move(spec->signature));
        }
        return absl::OkStatus();
      },
      // Rollouts decide beside the direct assignments (fleet::Assignments::DesiredFor).
      [db](const std::string& device_id, const fleet::Attributes& attributes) {
        return rollout::Controller::Overrides(*db, device_id, attributes);
      });
  s->devices = std::make_unique<fleet::DeviceRegistry>(
      fleet::DeviceRegistryOptions{.database = s->db.get(),
                                   .ca = s->ca.get(),
                                   .tokens = s->enrollment_tokens.get(),
                                   .pacer = s->pacer.get(),
                                   .assignments = s->assignments.get(),
                                   .clock = SystemClock::Get(),
                                   .cert_validity = options.device_cert_validity,
                                   .offline_after = absl::Seconds(options.offline_after_seconds),
                                   .module_signing_key = signing.trust});

  telemetry::IngestOptions ingest;
  ingest.database = s->db.get();
  ingest.clock = SystemClock::Get();
  ingest.specs = s->monitoring.get();
  ingest.cohort_label = options.telemetry_cohort_label;
  ingest.max_cohorts = options.telemetry_max_cohorts;
  ingest.bucket = absl::Seconds(options.telemetry_bucket_seconds);
  ingest.raw_retention = absl::Hours(options.telemetry_raw_retention_hours);
  ingest.aggregate_retention = absl::Hours(24 * options.telemetry_aggregate_retention_days);
  ingest.device_windows_per_minute = options.telemetry_device_windows_per_minute;
  ingest.reference_min_samples = options.telemetry_reference_min_samples;
  // A window older than the raw retention would be pruned at once: refused as stale instead.
  ingest.bounds.max_age = ingest.raw_retention;
  s->telemetry = std::make_unique<telemetry::TelemetryIngest>(ingest);
  s->telemetry_queries = std::make_unique<telemetry::TelemetryQueries>(
      telemetry::TelemetryQueryOptions{.database = s->db.get(),
                                       .clock = SystemClock::Get(),
                                       .drift = {},
                                       .cohort_label = options.telemetry_cohort_label,
                                       .bucket = ingest.bucket});

  fleet::DeviceRegistry* devices = s->devices.get();
  s->rollouts = std::make_unique<rollout::Controller>(rollout::ControllerOptions{
      .database = db,
      .clock = SystemClock::Get(),
      .telemetry = s->telemetry_queries.get(),
      .on_desired_change = [devices] { devices->WakeAllWatchers(); },
      .on_devices_change = [devices](const std::vector<std::string>& ids) {
        devices->WakeWatchers(ids);
      },
      .tick = absl::Milliseconds(std::max(10, options.rollout_interval_ms))});

  s->metrics = std::make_unique<ServerMetrics>(s->registry.get(), s->devices.get(),
                                               s->telemetry.get(), s->telemetry_queries.get(),
                                               s->rollouts.get());

  // The CI stage: modules are compiled by edgeloop-compile from the same build, next to us.
  ci::CompilePipelineOptions pipeline;
  ci::WorkerOptions& worker = pipeline.worker;
  worker.database = s->db.get();
  worker.blobs = s->blobs.get();
  worker.signer = s->signer.get();
  pipeline.planner.database = s->db.get();
  pipeline.planner.more_versions = [](store::Reader& tx) {
    return rollout::RolloutStore::Candidates(tx);
  };
  pipeline.planner.default_targets =
      absl::StrSplit(options.compile_targets, ',', absl::SkipEmpty());
  std::error_code ec;
  worker.compile_binary =
      !options.compile_binary.empty()
          ? options.compile_binary
          : (std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "edgeloop-compile")
                .string();
  // Every compile runs untrusted input (and, validating, the module built from it): sandboxed.
  compiler::SandboxOptions sandbox_options;
  ASSIGN_OR_RETURN(sandbox_options.mode, compiler::ParseSandboxMode(options.compile_sandbox));
  sandbox_options.scratch_root = options.data_dir + "/compile";
  sandbox_options.limits.cpu_time = worker.compile_timeout + absl::Minutes(1);
  ASSIGN_OR_RETURN(s->sandbox, compiler::Sandbox::Create(sandbox_options));
  Log(s->sandbox->controls().namespaces && s->sandbox->controls().seccomp ? LogLevel::kInfo
                                                                          : LogLevel::kWarning,
      "compile sandbox", {{"controls", s->sandbox->controls().Describe()}});
  worker.sandbox = s->sandbox.get();
  char host[256] = "host";
  ::gethostname(host, sizeof host);
  worker.worker_id = absl::StrCat(host, ":", ::getpid());
  pipeline.workers = options.compile_workers;
  worker.validation_samples = options.validation_samples;
  // A version that becomes ready (or a module for a class that joined later) may be what
  // assigned devices wait for.
  worker.on_desired_state_changed = [devices] { devices->WakeAllWatchers(); };
  s->pipeline = std::make_unique<ci::CompilePipeline>(pipeline);
  s->api = std::make_unique<Api>(ApiOptions{.registry = s->registry.get(),
                                            .blobs = s->blobs.get(),
                                            .tokens = s->tokens.get(),
                                            .devices = s->devices.get(),
                                            .enrollment_tokens = s->enrollment_tokens.get(),
                                            .assignments = s->assignments.get(),
                                            .telemetry = s->telemetry_queries.get(),
                                            .rollouts = s->rollouts.get(),
                                            .max_upload_bytes = options.max_upload_bytes});
  Impl* raw = s.get();
  s->router = rest::BuildRouter(s->api.get(), s->metrics.get(), [raw] { return raw->Readiness(); });
  rest::HttpServerOptions http_options;
  http_options.listen = options.http_listen;
  http_options.threads = options.http_threads;
  http_options.max_json_body_bytes = options.max_json_body_bytes;
  http_options.idle_timeout_seconds = options.http_idle_timeout_seconds;
  http_options.body_timeout_seconds = options.http_body_timeout_seconds;
  http_options.max_connections = options.http_max_connections;
  ASSIGN_OR_RETURN(
      s->http, rest::HttpServer::Create(http_options, &s->router, s->api.get(), s->metrics.get()));
  s->registry_service = std::make_unique<grpc_api::RegistryService>(s->api.get(), s->metrics.get());
  s->admin_service = std::make_unique<grpc_api::AdminService>(s->api.get(), s->metrics.get());
  s->fleet_service = std::make_unique<grpc_api::FleetService>(s->api.get(), s->metrics.get());
  s->telemetry_service =
      std::make_unique<grpc_api::TelemetryService>(s->api.get(), s->metrics.get());
  s->rollout_service = std::make_unique<grpc_api::RolloutService>(s->api.get(), s->metrics.get());
  s->device_service = std::make_unique<grpc_api::DeviceService>(
      s->devices.get(), s->assignments.get(), s->blobs.get(), s->telemetry.get(), s->metrics.get(),
      grpc_api::DeviceServiceOptions{.streams_per_device = options.device_streams_per_device,
                                     .watch = {.poll_interval = absl::Seconds(
                                                   options.watch_poll_seconds),
                                               .check_threads = options.watch_check_threads}});
  // Desired-state changes made through any replica wake this one's Watch streams at once.
  fleet::DeviceRegistry* registry = s->devices.get();
  ASSIGN_OR_RETURN(s->desired_changes,
                   store::ChangeFeed::Listen(
                       options.db, fleet::kDesiredChangeChannel, [registry](absl::string_view p) {
                         std::vector<std::string> ids = fleet::ParseDesiredChange(p);
                         if (ids.empty()) {
                           registry->WakeAllWatchers();
                         } else {
                           registry->WakeWatchers(ids);
                         }
                       }));
  Log(LogLevel::kInfo, "storage ready",
      {{"db", options.db.substr(0, options.db.find("://") + 3) + "…"},
       {"blobs", options.blobs},
       {"schema_version", schema}});
  return std::unique_ptr<Server>(new Server(std::move(s)));
}

absl::Status Server::Start() {
  Impl& s = *impl_;
  s.pipeline->Start();
  if (s.options.role == "worker") {
    s.started = true;
    Log(LogLevel::kInfo, "edgeloop-server compile worker running",
        {{"data_dir", s.options.data_dir}});
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(s.http_port, s.http->Start());
  s.telemetry->Start();

  grpc::ServerBuilder builder;
  builder.AddListeningPort(s.options.grpc_listen, grpc::InsecureServerCredentials(), &s.grpc_port);
  // gRPC sets SO_REUSEPORT by default, and with it Linux may hand a port-0 bind a port another
  // process of the same user already listens on, splitting connections between the two. A
  // listener of its own, or a clear failure to bind.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(s.registry_service.get());
  builder.RegisterService(s.admin_service.get());
  builder.RegisterService(s.fleet_service.get());
  builder.RegisterService(s.telemetry_service.get());
  builder.RegisterService(s.rollout_service.get());
  // Uploads arrive in chunks; no single message needs more than this.
  builder.SetMaxReceiveMessageSize(16 << 20);
  s.grpc = builder.BuildAndStart();
  if (s.grpc == nullptr || s.grpc_port == 0) {
    s.http->Shutdown(absl::ZeroDuration());
    return absl::UnavailableError(
        absl::StrCat("cannot listen on --grpc-listen ", s.options.grpc_listen));
  }

  // Devices: TLS always; a client certificate is optional at the handshake (Enroll has none
  // yet) but verified against the CA when presented, and required by every call but Enroll.
  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.pem_root_certs = s.ca->cert_pem();
  // The chain includes the CA so an agent holding only the token's pin can find and check it.
  tls.pem_key_cert_pairs.push_back(
      {s.device_identity.key_pem, s.device_identity.cert_pem + s.ca->cert_pem()});
  grpc::ServerBuilder device_builder;
  device_builder.AddListeningPort(s.options.device_listen, grpc::SslServerCredentials(tls),
                                  &s.device_port);
  device_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  device_builder.RegisterService(s.device_service.get());
  device_builder.SetMaxReceiveMessageSize(1 << 20);
  // Enroll, Sync, Renew and FetchModule run on threads from this quota (a call beyond it is
  // answered RESOURCE_EXHAUSTED); Watch streams hold none (callback API).
  grpc::ResourceQuota quota("device-calls");
  quota.SetMaxThreads(s.options.device_threads);
  device_builder.SetResourceQuota(quota);
  // A peer that stops answering (power cut, NAT dropped the mapping) is found by keepalive
  // pings and its streams end, instead of being held open for ever. Agents ping as often.
  const int keepalive_ms = s.options.device_keepalive_seconds * 1000;
  device_builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_ms);
  device_builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, std::min(keepalive_ms, 20000));
  device_builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  device_builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                                    std::min(keepalive_ms, 30000));
  // Streams one connection may carry at once (HTTP/2 SETTINGS); per device, across
  // connections, DeviceStreamLimit caps them.
  device_builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 100);
  s.device_grpc = device_builder.BuildAndStart();
  if (s.device_grpc == nullptr || s.device_port == 0) {
    s.grpc->Shutdown();
    s.http->Shutdown(absl::ZeroDuration());
    return absl::UnavailableError(
        absl::StrCat("cannot listen on --device-listen ", s.options.device_listen));
  }
  s.leader_stop = false;
  s.leader_thread = std::thread([&s] { s.LeaderLoop(); });
  s.started = true;
  RETURN_IF_ERROR(
      WriteFileAtomically(s.options.data_dir + "/ports.json",
                          absl::StrCat("{\"http\": ", s.http_port, ", \"grpc\": ", s.grpc_port,
                                       ", \"device\": ", s.device_port, "}\n")));
  Log(LogLevel::kInfo, "edgeloop-server listening",
      {{"http_port", s.http_port},
       {"grpc_port", s.grpc_port},
       {"device_port", s.device_port},
       {"ca_pin", s.ca->pin()},
       {"data_dir", s.options.data_dir}});
  return absl::OkStatus();
}

void Server::Shutdown() {
  Impl& s = *impl_;
  if (!s.started) return;
  s.started = false;
  const absl::Duration grace = absl::Seconds(s.options.shutdown_grace_seconds);
  s.pipeline->Shutdown();
  if (s.options.role == "worker") return;
  Log(LogLevel::kInfo, "shutting down", {{"grace_seconds", s.options.shutdown_grace_seconds}});
  {
    std::lock_guard lock(s.leader_mu);
    s.leader_stop = true;
  }
  s.leader_wake.notify_all();
  if (s.leader_thread.joinable()) s.leader_thread.join();
  s.device_service->Stop();
  s.device_grpc->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(grace));
  // After the device listener: reports still in flight get their answer first.
  s.telemetry->Stop();
  s.grpc->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(grace));
  s.http->Shutdown(grace);
  Log(LogLevel::kInfo, "stopped");
}

int Server::http_port() const { return impl_->http_port; }
int Server::grpc_port() const { return impl_->grpc_port; }
int Server::device_port() const { return impl_->device_port; }

}  // namespace edgeloop::server
