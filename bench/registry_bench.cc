// registry_bench: request rate and latency of the registry's read and push paths over REST
// and gRPC, each beside the authenticated no-op (/v1/ping, AdminService.Ping) on the same
// server in the same run, on SQLite and on PostgreSQL. Prints a table, writes JSON.
//
//   build/bin/registry_bench [--seconds 3] [--clients 4] [--backends sqlite,postgres]
//                            [--json bench/results/registry_bench.json]
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/load.h"
#include "common/proto_json.h"
#include "edgeloop/v1/admin.grpc.pb.h"
#include "edgeloop/v1/registry.grpc.pb.h"
#include "compiler/testing/onnx_models.h"
#include "store/testing/postgres_cluster.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"

namespace edgeloop::bench {
namespace {

using tests::HttpClient;

struct Options : RunSettings {};

struct Row {
  std::string backend, transport, operation;
  Measurement op, baseline;
};

class Target {
 public:
  Target(const tests::ServerProcess& server) : server_(server) {}

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", "Bearer " + server_.admin_token());
    return c;
  }
  std::map<std::string, std::string> Auth() const {
    return {{"Authorization", "Bearer " + server_.admin_token()}};
  }
  std::shared_ptr<grpc::Channel> Channel() const {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);  // one connection per client thread
    return grpc::CreateCustomChannel(server_.grpc_address(), grpc::InsecureChannelCredentials(),
                                     args);
  }
  int http_port() const { return server_.http_port(); }

 private:
  const tests::ServerProcess& server_;
};

std::vector<Row> BenchBackend(const std::string& backend, const Options& options,
                              const std::vector<std::string>& models) {
  tests::ServerProcess::Options server_options;
  server_options.data_dir = tests::NewTempDir("registry-bench");
  if (backend == "postgres") {
    auto url = store::testing::NewTestDatabase();
    if (!url.ok()) {
      std::fprintf(stderr, "postgres unavailable: %s\n", url.status().ToString().c_str());
      return {};
    }
    server_options.db = *url;
    server_options.blobs = "postgresql";
  }
  server_options.extra_flags = {"--log-level", "warning"};
  tests::ServerProcess server(server_options);
  if (absl::Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "server: %s\n", s.ToString().c_str());
    return {};
  }
  Target target(server);
  {
    HttpClient setup(target.http_port());
    (void)setup.Request("POST", "/v1/models", R"({"name":"bench"})", target.Auth());
    auto blob = setup.Request("POST", "/v1/blobs", models[0], target.Auth());
    v1::Blob b;
    (void)ParseProtoJson(blob->body, &b);
    (void)setup.Request("POST", "/v1/models/bench/versions",
                        absl::StrCat(R"({"onnxDigest":")", b.digest(), "\"}"), target.Auth());
  }
  const int clients = options.clients;
  const double secs = options.seconds;
  std::atomic<uint64_t> model_index{0};
  auto next_model = [&]() -> const std::string& { return models[model_index++ % models.size()]; };

  auto rest_ping = [&] {
    return [c = std::make_shared<HttpClient>(target.http_port()), &target] {
      auto r = c->Get("/v1/ping", target.Auth());
      return r.ok() && r->status == 200;
    };
  };
  auto grpc_ping = [&] {
    return [stub = std::shared_ptr<v1::AdminService::Stub>(
                v1::AdminService::NewStub(target.Channel())),
            &target] {
      v1::PingResponse out;
      return stub->Ping(target.Context().get(), v1::PingRequest(), &out).ok();
    };
  };

  std::vector<Row> rows;
  // GET version.
  {
    Row rest{backend, "REST", "GET version", {}, {}};
    rest.baseline = RunClients(clients, secs, rest_ping);
    rest.op = RunClients(clients, secs, [&] {
      return [c = std::make_shared<HttpClient>(target.http_port()), &target] {
        auto r = c->Get("/v1/models/bench/versions/1", target.Auth());
        return r.ok() && r->status == 200;
      };
    });
    rows.push_back(rest);
    Row grpc{backend, "gRPC", "GetVersion", {}, {}};
    grpc.baseline = RunClients(clients, secs, grpc_ping);
    grpc.op = RunClients(clients, secs, [&] {
      return [stub = std::shared_ptr<v1::RegistryService::Stub>(
                  v1::RegistryService::NewStub(target.Channel())),
              &target] {
        v1::GetVersionRequest request;
        request.set_model("bench");
        request.set_version(1);
        v1::ModelVersion out;
        return stub->GetVersion(target.Context().get(), request, &out).ok();
      };
    });
    rows.push_back(grpc);
  }
  // Push of a 1 MB model: upload the blob, then register the version.
  {
    Row rest{backend, "REST", "push 1 MB", {}, {}};
    rest.baseline = RunClients(clients, secs, rest_ping);
    rest.op = RunClients(clients, secs, [&] {
      return [c = std::make_shared<HttpClient>(target.http_port()), &target, &next_model] {
        auto blob = c->Request("POST", "/v1/blobs", next_model(), target.Auth());
        if (!blob.ok() || blob->status != 201) return false;
        v1::Blob b;
        if (!ParseProtoJson(blob->body, &b).ok()) return false;
        auto v = c->Request("POST", "/v1/models/bench/versions",
                            absl::StrCat(R"({"onnxDigest":")", b.digest(), "\"}"), target.Auth());
        return v.ok() && v->status == 201;
      };
    });
    rows.push_back(rest);
    Row grpc{backend, "gRPC", "push 1 MB", {}, {}};
    grpc.baseline = RunClients(clients, secs, grpc_ping);
    grpc.op = RunClients(clients, secs, [&] {
      return [stub = std::shared_ptr<v1::RegistryService::Stub>(
                  v1::RegistryService::NewStub(target.Channel())),
              &target, &next_model] {
        const std::string& bytes = next_model();
        v1::Blob blob;
        auto context = target.Context();
        auto writer = stub->UploadBlob(context.get(), &blob);
        v1::UploadBlobRequest message;
        message.mutable_header()->set_size(static_cast<int64_t>(bytes.size()));
        bool ok = writer->Write(message);
        for (size_t off = 0; ok && off < bytes.size(); off += 256 * 1024) {
          message.set_chunk(bytes.substr(off, 256 * 1024));
          ok = writer->Write(message);
        }
        writer->WritesDone();
        if (!writer->Finish().ok()) return false;
        v1::CreateVersionRequest request;
        request.set_model("bench");
        request.set_onnx_digest(blob.digest());
        v1::ModelVersion out;
        return stub->CreateVersion(target.Context().get(), request, &out).ok();
      };
    });
    rows.push_back(grpc);
  }
  (void)server.Stop(SIGTERM);
  std::filesystem::remove_all(server_options.data_dir);
  return rows;
}

}  // namespace
}  // namespace edgeloop::bench

int main(int argc, char** argv) {
  using namespace edgeloop::bench;
  Options options;
  options.json = "bench/results/registry_bench.json";
  if (auto exit_code = ParseRunSettings(argc, argv, &options); exit_code) return *exit_code;

  // Eight distinct 1 MB models, so pushes are not all the same bytes.
  std::vector<std::string> models;
  for (uint32_t seed = 1; seed <= 8; ++seed)
    models.push_back(edgeloop::compiler::testing::OnnxOfAtLeast(1 << 20, seed));

  std::vector<Row> rows;
  for (const std::string& backend : options.backends) {
    auto part = BenchBackend(backend, options, models);
    if (part.empty()) return 1;
    rows.insert(rows.end(), part.begin(), part.end());
  }

  std::printf("\nregistry_bench: %d clients, %.1f s per measurement, model %zu bytes\n\n",
              options.clients, options.seconds, models[0].size());
  std::printf("%-9s %-5s %-11s %10s %8s %8s | %10s %8s %8s | %7s %6s\n", "backend", "via",
              "operation", "ops/s", "p50 ms", "p99 ms", "ping ops/s", "p50 ms", "p99 ms", "rate x",
              "errors");
  std::string json = "[";
  for (const Row& r : rows) {
    double ratio = r.baseline.rate() > 0 ? r.op.rate() / r.baseline.rate() : 0;
    std::printf("%-9s %-5s %-11s %10.1f %8.3f %8.3f | %10.1f %8.3f %8.3f | %7.3f %6lld\n",
                r.backend.c_str(), r.transport.c_str(), r.operation.c_str(), r.op.rate(),
                r.op.p50_ms, r.op.p99_ms, r.baseline.rate(), r.baseline.p50_ms, r.baseline.p99_ms,
                ratio, static_cast<long long>(r.op.errors + r.baseline.errors));
    absl::StrAppend(
        &json, json.size() > 1 ? ",\n " : "\n ",
        absl::StrFormat(
            R"({"backend":"%s","transport":"%s","operation":"%s","op":%s,"baseline":%s,"rate_ratio":%.4f})",
            r.backend, r.transport, r.operation, MeasurementJson(r.op), MeasurementJson(r.baseline),
            ratio));
  }
  json += "\n]\n";
  std::printf("\n");
  WriteResults(options.json, json);
  int64_t errors = 0;
  for (const Row& r : rows) errors += r.op.errors + r.baseline.errors;
  return errors == 0 ? 0 : 1;
}
