#include "server/server.h"

#include <grpcpp/grpcpp.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status.h"
#include "registry/registry.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/grpc/admin_service.h"
#include "server/grpc/registry_service.h"
#include "server/metrics.h"
#include "server/rest/http_server.h"
#include "server/rest/routes.h"
#include "store/blob_store.h"
#include "store/database.h"
#include "store/migrations.h"

namespace edgeloop::server {

struct Server::Impl {
  ServerOptions options;
  std::unique_ptr<store::Database> db;
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<registry::Registry> registry;
  std::unique_ptr<TokenStore> tokens;
  std::unique_ptr<ServerMetrics> metrics;
  std::unique_ptr<Api> api;
  rest::Router router;
  std::unique_ptr<rest::HttpServer> http;
  std::unique_ptr<grpc_api::RegistryService> registry_service;
  std::unique_ptr<grpc_api::AdminService> admin_service;
  std::unique_ptr<grpc::Server> grpc;
  int http_port = 0;
  int grpc_port = 0;
  bool started = false;

  absl::Status Readiness() {
    RETURN_IF_ERROR(db->Ping());
    ASSIGN_OR_RETURN(int version, store::CurrentSchemaVersion(*db));
    if (version < store::SchemaMigrations().back().version) {
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
                   store::Database::Open({.url = options.db, .pool_size = options.db_pool_size}));
  ASSIGN_OR_RETURN(int schema, store::ApplyMigrations(*s->db));
  store::BlobStoreOptions blob_options;
  blob_options.url = options.blobs;
  blob_options.staging_dir = options.data_dir + "/staging";
  blob_options.database = s->db.get();
  ASSIGN_OR_RETURN(s->blobs, store::BlobStore::Create(blob_options));
  ASSIGN_OR_RETURN(s->registry,
                   registry::Registry::Create({.database = s->db.get(), .blobs = s->blobs.get()}));

  s->tokens = std::make_unique<TokenStore>(s->db.get(), SystemClock::Get());
  const char* env_token = std::getenv("EDGELOOP_ADMIN_TOKEN");
  RETURN_IF_ERROR(
      s->tokens->BootstrapAdmin(options.data_dir + "/admin.token", env_token ? env_token : ""));

  s->metrics = std::make_unique<ServerMetrics>(s->registry.get());
  s->api = std::make_unique<Api>(ApiOptions{.registry = s->registry.get(),
                                            .blobs = s->blobs.get(),
                                            .tokens = s->tokens.get(),
                                            .max_upload_bytes = options.max_upload_bytes});
  Impl* raw = s.get();
  s->router = rest::BuildRouter(s->api.get(), s->metrics.get(), [raw] { return raw->Readiness(); });
  rest::HttpServerOptions http_options;
  http_options.listen = options.http_listen;
  http_options.threads = options.http_threads;
  http_options.max_json_body_bytes = options.max_json_body_bytes;
  ASSIGN_OR_RETURN(
      s->http, rest::HttpServer::Create(http_options, &s->router, s->api.get(), s->metrics.get()));
  s->registry_service = std::make_unique<grpc_api::RegistryService>(s->api.get(), s->metrics.get());
  s->admin_service = std::make_unique<grpc_api::AdminService>(s->api.get(), s->metrics.get());
  Log(LogLevel::kInfo, "storage ready",
      {{"db", options.db.substr(0, options.db.find("://") + 3) + "…"},
       {"blobs", options.blobs},
       {"schema_version", schema}});
  return std::unique_ptr<Server>(new Server(std::move(s)));
}

absl::Status Server::Start() {
  Impl& s = *impl_;
  ASSIGN_OR_RETURN(s.http_port, s.http->Start());

  grpc::ServerBuilder builder;
  builder.AddListeningPort(s.options.grpc_listen, grpc::InsecureServerCredentials(), &s.grpc_port);
  builder.RegisterService(s.registry_service.get());
  builder.RegisterService(s.admin_service.get());
  // Uploads arrive in chunks; no single message needs more than this.
  builder.SetMaxReceiveMessageSize(16 << 20);
  s.grpc = builder.BuildAndStart();
  if (s.grpc == nullptr || s.grpc_port == 0) {
    s.http->Shutdown(absl::ZeroDuration());
    return absl::UnavailableError(
        absl::StrCat("cannot listen on --grpc-listen ", s.options.grpc_listen));
  }
  s.started = true;
  RETURN_IF_ERROR(WriteFileAtomically(
      s.options.data_dir + "/ports.json",
      absl::StrCat("{\"http\": ", s.http_port, ", \"grpc\": ", s.grpc_port, "}\n")));
  Log(LogLevel::kInfo, "edgeloop-server listening",
      {{"http_port", s.http_port}, {"grpc_port", s.grpc_port}, {"data_dir", s.options.data_dir}});
  return absl::OkStatus();
}

void Server::Shutdown() {
  Impl& s = *impl_;
  if (!s.started) return;
  s.started = false;
  const absl::Duration grace = absl::Seconds(s.options.shutdown_grace_seconds);
  Log(LogLevel::kInfo, "shutting down", {{"grace_seconds", s.options.shutdown_grace_seconds}});
  s.grpc->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(grace));
  s.http->Shutdown(grace);
  Log(LogLevel::kInfo, "stopped");
}

int Server::http_port() const { return impl_->http_port; }
int Server::grpc_port() const { return impl_->grpc_port; }

}  // namespace edgeloop::server
