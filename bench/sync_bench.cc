// sync_bench: many device identities in one process, each on its own mutual-TLS gRPC channel
// with its own client certificate, calling DeviceService.Sync against a real edgeloop-server
// (SQLite, then PostgreSQL), beside the same calls to an empty Sync handler served in this
// process with the same TLS setup, in the same run. Also reports the agent's idle resident
// memory and its binary size stripped. Prints a table, writes JSON.
//
//   build/bin/sync_bench [--seconds 3] [--clients 8] [--devices 64] [--backends sqlite,postgres]
//                        [--json bench/results/sync_bench.json]
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "bench/load.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "common/x509.h"
#include "edgeloop/v1/device.grpc.pb.h"
#include "store/testing/postgres_cluster.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"

namespace edgeloop::bench {
namespace {

struct Options : RunSettings {
  int devices = 64;
};

/// The baseline: Sync that does nothing, behind the same TLS as the real device listener.
class EmptyDeviceService final : public v1::DeviceService::Service {
  grpc::Status Sync(grpc::ServerContext*, const v1::SyncRequest*, v1::SyncResponse* out) override {
    out->set_next_sync_ms(30000);
    return grpc::Status::OK;
  }
};

struct Device {
  std::string id;
  std::string key_pem;
  std::string cert_pem;
};

std::shared_ptr<grpc::Channel> DeviceChannel(const std::string& address, const std::string& ca_pem,
                                             const Device* device) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ca_pem;
  if (device != nullptr) {
    tls.pem_private_key = device->key_pem;
    tls.pem_cert_chain = device->cert_pem;
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection per device, as in a fleet
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(tls), args);
}

v1::SyncRequest TypicalSync(const Device& d) {
  v1::SyncRequest r;
  r.set_device_id(d.id);
  v1::DeviceState* s = r.mutable_state();
  s->set_agent_version("0.1.0");
  s->set_profile_hash("sha256:4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358");
  s->mutable_health()->set_uptime_seconds(86400);
  s->mutable_health()->set_load1(0.42);
  s->mutable_health()->set_mem_available_mb(1800);
  s->mutable_health()->set_storage_free_mb(12000);
  return r;
}

/// Calls Sync for `devices`, spread over `clients` threads, each device on its own channel.
Measurement SyncLoad(const Options& options, const std::string& address, const std::string& ca_pem,
                     const std::vector<Device>& devices) {
  std::vector<std::unique_ptr<v1::DeviceService::Stub>> stubs;
  for (const Device& d : devices)
    stubs.push_back(v1::DeviceService::NewStub(DeviceChannel(address, ca_pem, &d)));
  std::atomic<int> next_client{0};
  return RunClients(options.clients, options.seconds, [&] {
    const int client = next_client++;
    auto index = std::make_shared<size_t>(client);
    return [&, index, client]() {
      const size_t i = *index % devices.size();
      *index += options.clients;
      (void)client;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::SyncResponse out;
      return stubs[i]->Sync(&context, TypicalSync(devices[i]), &out).ok();
    };
  });
}

struct Row {
  std::string backend;
  Measurement sync, baseline;
};

int64_t RssKb(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    int64_t kb = 0;
    if (line.rfind("VmRSS:", 0) == 0 &&
        absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(line.substr(6)), " kB"),
                         &kb)) {
      return kb;
    }
  }
  return 0;
}

absl::StatusOr<Row> BenchBackend(const std::string& backend, const Options& options,
                                 int64_t* agent_rss_kb) {
  tests::ServerProcess::Options server_options;
  server_options.data_dir = tests::NewTempDir("sync-bench");
  if (backend == "postgres") {
    ASSIGN_OR_RETURN(server_options.db, store::testing::NewTestDatabase());
  }
  server_options.extra_flags = {"--log-level", "warning", "--sync-capacity-per-second", "1000000"};
  tests::ServerProcess server(server_options);
  RETURN_IF_ERROR(server.Start());
  ASSIGN_OR_RETURN(std::string ca_pem, ReadFile(server_options.data_dir + "/ca/ca.pem"));

  auto created = tests::HttpClient(server.http_port())
                     .Request("POST", "/v1/enrollment-tokens",
                              absl::StrCat(R"({"maxUses":)", options.devices + 1, "}"),
                              {{"Authorization", "Bearer " + server.admin_token()}});
  v1::CreateEnrollmentTokenResponse token;
  RETURN_IF_ERROR(ParseProtoJson(created->body, &token));

  // Enroll every identity through the real server.
  auto enroll_stub =
      v1::DeviceService::NewStub(DeviceChannel(server.device_address(), ca_pem, nullptr));
  std::vector<Device> devices;
  for (int i = 0; i < options.devices; ++i) {
    ASSIGN_OR_RETURN(crypto::KeyAndCsr key, crypto::GenerateKeyAndCsr("bench"));
    v1::EnrollRequest request;
    request.set_token(token.secret());
    request.set_csr_pem(key.csr_pem);
    request.set_serial(absl::StrCat("bench-", i));
    request.mutable_profile()->set_arch("aarch64");
    request.mutable_profile()->add_isa_features("asimd");
    request.mutable_profile()->set_cores(4);
    request.mutable_profile()->set_ram_mb(3796);
    v1::EnrollResponse response;
    grpc::ClientContext context;
    grpc::Status s = enroll_stub->Enroll(&context, request, &response);
    if (!s.ok()) return absl::InternalError(absl::StrCat("enroll: ", s.error_message()));
    devices.push_back({response.device_id(), key.key_pem, response.cert_pem()});
  }

  // The baseline server: same CA, same TLS options, empty handler.
  ASSIGN_OR_RETURN(auto ca, crypto::CertificateAuthority::LoadOrCreate(
                                server_options.data_dir + "/ca", absl::Now()));
  ASSIGN_OR_RETURN(
      crypto::ServerIdentity identity,
      ca->IssueServerIdentity({"localhost", "127.0.0.1"}, absl::Now(), absl::Hours(1)));
  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.pem_root_certs = ca_pem;
  tls.pem_key_cert_pairs.push_back({identity.key_pem, identity.cert_pem + ca_pem});
  EmptyDeviceService empty;
  int baseline_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(tls), &baseline_port);
  builder.RegisterService(&empty);
  std::unique_ptr<grpc::Server> baseline = builder.BuildAndStart();

  Row row{backend, {}, {}};
  row.baseline = SyncLoad(options, absl::StrCat("127.0.0.1:", baseline_port), ca_pem, devices);
  row.sync = SyncLoad(options, server.device_address(), ca_pem, devices);
  baseline->Shutdown();

  if (agent_rss_kb != nullptr) {
    // A real agent, enrolled and idle between syncs (30 s interval).
    tests::AgentProcess::Options agent_options;
    agent_options.server = server.device_address();
    agent_options.state_dir = server_options.data_dir + "/agent";
    agent_options.enroll_token = token.secret();
    tests::AgentProcess agent(agent_options);
    agent.Start();
    if (!agent.WaitEnrolled()) return absl::InternalError("agent did not enroll: " + agent.log());
    absl::SleepFor(absl::Seconds(5));
    *agent_rss_kb = agent.running() ? RssKb(agent.pid()) : 0;
  }
  (void)server.Stop(SIGTERM);
  std::filesystem::remove_all(server_options.data_dir);
  return row;
}

}  // namespace
}  // namespace edgeloop::bench

int main(int argc, char** argv) {
  using namespace edgeloop::bench;
  Options options;
  options.clients = 8;
  options.json = "bench/results/sync_bench.json";
  if (auto exit_code = ParseRunSettings(argc, argv, &options,
                                        [&](edgeloop::FlagSet& f) {
                                          f.Int("devices", &options.devices,
                                                "device identities to enroll");
                                        });
      exit_code)
    return *exit_code;

  std::vector<Row> rows;
  int64_t agent_rss_kb = 0;
  for (const std::string& backend : options.backends) {
    auto row = BenchBackend(backend, options, rows.empty() ? &agent_rss_kb : nullptr);
    if (!row.ok()) {
      std::fprintf(stderr, "%s: %s\n", backend.c_str(), row.status().ToString().c_str());
      return 1;
    }
    rows.push_back(*row);
  }
  // The agent binary as shipped: stripped.
  const std::string agent = edgeloop::tests::BinaryPath("edgeloop-agent");
  const std::string stripped = edgeloop::tests::NewTempDir("strip") + "/edgeloop-agent";
  auto strip = edgeloop::tests::RunCommand({"/usr/bin/strip", "-o", stripped, agent});
  const int64_t unstripped_bytes = static_cast<int64_t>(std::filesystem::file_size(agent));
  const int64_t stripped_bytes =
      strip.exit_code == 0 ? static_cast<int64_t>(std::filesystem::file_size(stripped)) : -1;

  std::printf(
      "\nsync_bench: %d device identities (mTLS, one channel each), %d client threads, %.1f s "
      "each\n\n",
      options.devices, options.clients, options.seconds);
  std::printf("%-9s %10s %8s %8s | %12s %8s %8s | %7s %6s\n", "backend", "syncs/s", "p50 ms",
              "p99 ms", "empty ops/s", "p50 ms", "p99 ms", "rate x", "errors");
  std::string json = "{\"rows\":[";
  int64_t errors = 0;
  for (const Row& r : rows) {
    const double ratio = r.baseline.rate() > 0 ? r.sync.rate() / r.baseline.rate() : 0;
    std::printf("%-9s %10.1f %8.3f %8.3f | %12.1f %8.3f %8.3f | %7.3f %6lld\n", r.backend.c_str(),
                r.sync.rate(), r.sync.p50_ms, r.sync.p99_ms, r.baseline.rate(), r.baseline.p50_ms,
                r.baseline.p99_ms, ratio,
                static_cast<long long>(r.sync.errors + r.baseline.errors));
    errors += r.sync.errors + r.baseline.errors;
    absl::StrAppend(
        &json, json.back() == '[' ? "\n " : ",\n ",
        absl::StrFormat(R"({"backend":"%s","sync":%s,"empty_handler":%s,"rate_ratio":%.4f})",
                        r.backend, MeasurementJson(r.sync), MeasurementJson(r.baseline), ratio));
  }
  std::printf("\nedgeloop-agent: idle RSS %.1f MiB; binary %.2f MiB, stripped %.2f MiB\n",
              agent_rss_kb / 1024.0, unstripped_bytes / 1048576.0, stripped_bytes / 1048576.0);
  absl::StrAppend(
      &json, "\n],\n",
      absl::StrFormat(R"("agent":{"idle_rss_kb":%d,"binary_bytes":%d,"stripped_bytes":%d}})",
                      agent_rss_kb, unstripped_bytes, stripped_bytes),
      "\n");
  WriteResults(options.json, json);
  return errors == 0 ? 0 : 1;
}
