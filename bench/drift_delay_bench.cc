// drift_delay_bench: how long after the inputs of a live device shift the drift shows, through
// the whole path. A real agent serves a model to an application that calls it at a steady
// rate. After two windows of inputs like the reference's, four of its sixteen features move.
// The bench then times how long until the server's API shows the four drifted, and how long
// until its /metrics drift gauge does (what Prometheus alerts on). Each trial is a new model,
// so no trial sees another's drift. Prints a table, writes JSON.
//
//   build/bin/drift_delay_bench [--window-seconds 5] [--trials 3] [--rate 200] [--no-metrics]
//                               [--json bench/results/drift_delay_bench.json]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "agent/client/local_client.h"
#include "bench/load.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "compiler/testing/onnx_models.h"
#include "edgeloop/v1/device.pb.h"
#include "edgeloop/v1/registry.pb.h"
#include "edgeloop/v1/telemetry.pb.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"

namespace edgeloop::bench {
namespace {

constexpr int kFeatures = 16, kShifted = 4, kReference = 2000;

struct Options {
  int window_seconds = 5;
  int trials = 3;
  int rate = 200;  // calls per second from the application
  bool no_metrics = false;
  std::string json = "bench/results/drift_delay_bench.json";
};

struct Trial {
  double api_s = -1, metrics_s = -1;  // -1: not seen before the deadline
};

// Inputs uniform on [-1, 1) per feature; the first kShifted moved by +1 once shifted.
class Inputs {
 public:
  std::vector<float> Draw(bool shifted) {
    std::vector<float> x(kFeatures);
    for (int f = 0; f < kFeatures; ++f) {
      x[f] = uniform_(random_) + (shifted && f < kShifted ? 1.0f : 0.0f);
    }
    return x;
  }

 private:
  std::mt19937 random_{11};
  std::uniform_real_distribution<float> uniform_{-1, 1};
};

class Bench {
 public:
  explicit Bench(const Options& options) : options_(options) {}

  absl::Status Start() {
    tests::ServerProcess::Options server;
    server.data_dir = dir_.path();
    const std::string window = std::to_string(options_.window_seconds);
    server.extra_flags = {"--log-level",
                          "warning",
                          "--sync-interval-seconds",
                          "1",
                          "--telemetry-window-seconds",
                          window,
                          "--telemetry-bucket-seconds",
                          window,
                          "--validation-samples",
                          std::to_string(kReference)};
    server_ = std::make_unique<tests::ServerProcess>(server);
    RETURN_IF_ERROR(server_->Start());
    auth_ = {{"Authorization", "Bearer " + server_->admin_token()}};
    ASSIGN_OR_RETURN(tests::HttpResponse token,
                     Call("POST", "/v1/enrollment-tokens", R"({"maxUses":1})"));
    v1::CreateEnrollmentTokenResponse created;
    RETURN_IF_ERROR(ParseProtoJson(token.body, &created));
    tests::AgentProcess::Options agent;
    agent.server = server_->device_address();
    agent.state_dir = server.data_dir + "/agent";
    agent.enroll_token = created.secret();
    // One device: it sends as soon as a window closes (a fleet spreads reports over
    // --telemetry-spread-seconds, 10 s by default, which adds up to that much).
    // (At info level: its "monitoring" line says when a version is monitored.)
    agent.extra_flags = {"--telemetry-spread-seconds", "0"};
    agent_ = std::make_unique<tests::AgentProcess>(agent);
    agent_->Start();
    if (!agent_->WaitEnrolled()) return absl::InternalError("the agent did not enroll");
    client_ = std::make_unique<client::LocalClient>(agent.state_dir + "/agent.sock");
    return absl::OkStatus();
  }

  absl::StatusOr<Trial> Run(int trial) {
    const std::string model = absl::StrCat("drift", trial);
    RETURN_IF_ERROR(Serve(model));
    std::atomic<bool> shifted{false}, stop{false};
    std::thread application([&] {
      Inputs inputs;
      const absl::Duration every = absl::Seconds(1) / options_.rate;
      absl::Time next = absl::Now();
      while (!stop) {
        client_->Predict(model, {{"input", {1, kFeatures}, inputs.Draw(shifted)}}).IgnoreError();
        next += every;
        absl::SleepFor(next - absl::Now());
      }
    });
    const absl::Duration window = absl::Seconds(options_.window_seconds);
    absl::SleepFor(2 * window);
    const absl::Time shift = absl::Now();
    shifted = true;
    Trial t;
    const absl::Time deadline = shift + absl::Seconds(150) + 4 * window;
    while (absl::Now() < deadline && (t.api_s < 0 || (!options_.no_metrics && t.metrics_s < 0))) {
      if (t.api_s < 0 && ApiShowsDrift(model)) t.api_s = absl::ToDoubleSeconds(absl::Now() - shift);
      if (!options_.no_metrics && t.metrics_s < 0 && MetricsShowDrift(model)) {
        t.metrics_s = absl::ToDoubleSeconds(absl::Now() - shift);
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    stop = true;
    application.join();
    return t;
  }

 private:
  absl::StatusOr<tests::HttpResponse> Call(const std::string& method, const std::string& target,
                                           const std::string& body = "") {
    ASSIGN_OR_RETURN(tests::HttpResponse r,
                     tests::HttpClient(server_->http_port()).Request(method, target, body, auth_));
    if (r.status >= 300) {
      return absl::InternalError(absl::StrCat(method, " ", target, ": ", r.status, " ", r.body));
    }
    return r;
  }

  // Registers `model` with a validation set of kReference samples, assigns it to the device
  // and waits until the device serves and monitors it.
  absl::Status Serve(const std::string& model) {
    Inputs inputs;
    std::vector<float> set;
    std::vector<int64_t> labels;
    for (int k = 0; k < kReference; ++k) {
      const std::vector<float> x = inputs.Draw(false);
      set.insert(set.end(), x.begin(), x.end());
      labels.push_back(k % 4);
    }
    RETURN_IF_ERROR(
        Call("POST", "/v1/models", absl::StrCat(R"({"name":")", model, "\"}")).status());
    auto upload = [&](const std::string& bytes) -> absl::StatusOr<std::string> {
      ASSIGN_OR_RETURN(tests::HttpResponse r, Call("POST", "/v1/blobs", bytes));
      v1::Blob blob;
      RETURN_IF_ERROR(ParseProtoJson(r.body, &blob));
      return blob.digest();
    };
    ASSIGN_OR_RETURN(std::string onnx,
                     upload(compiler::testing::MlpOnnx(std::vector<int>{kFeatures, 32, 4}, 1)));
    ASSIGN_OR_RETURN(std::string validation, upload(compiler::testing::ValidationSetOnnx(
                                                 "input", {kReference, kFeatures}, set, labels)));
    ASSIGN_OR_RETURN(tests::HttpResponse pushed,
                     Call("POST", absl::StrCat("/v1/models/", model, "/versions"),
                          absl::StrCat(R"({"onnxDigest":")", onnx, R"(","validationDigest":")",
                                       validation, "\"}")));
    v1::ModelVersion version;
    RETURN_IF_ERROR(ParseProtoJson(pushed.body, &version));
    version_ = version.version();
    const absl::Time deadline = absl::Now() + absl::Seconds(120);
    while (version.status() != v1::READY) {
      if (version.status() == v1::FAILED || absl::Now() > deadline) {
        return absl::InternalError(absl::StrCat("version not built: ", version.status_message()));
      }
      absl::SleepFor(absl::Milliseconds(100));
      ASSIGN_OR_RETURN(tests::HttpResponse r,
                       Call("GET", absl::StrCat("/v1/models/", model, "/versions/", version_)));
      RETURN_IF_ERROR(ParseProtoJson(r.body, &version));
    }
    RETURN_IF_ERROR(Call("POST", "/v1/assignments",
                         absl::StrCat(R"({"model":")", model, R"(","deviceId":")",
                                      agent_->device_id(), R"(","version":")", version_, "\"}"))
                        .status());
    while (absl::Now() < deadline) {
      if (absl::StrContains(agent_->log(), absl::StrCat(R"("model":")", model, R"(","version":)",
                                                        version_, R"(,"features")"))) {
        return absl::OkStatus();
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return absl::DeadlineExceededError("the device never monitored the model");
  }

  // What an operator watching `edgeloop telemetry show MODEL --since 3W` sees: the four moved
  // features drifted over the windows that started in the last three window lengths. (The API
  // sums the buckets that start in the range: the last two closed windows, once stored.)
  bool ApiShowsDrift(const std::string& model) {
    const int64_t now = absl::ToUnixMillis(absl::Now());
    auto r = Call("GET", absl::StrCat("/v1/models/", model,
                                      "/telemetry?from=", now - 3000 * options_.window_seconds));
    v1::ModelTelemetry t;
    if (!r.ok() || !ParseProtoJson(r->body, &t).ok() || t.versions().empty()) return false;
    const v1::TelemetrySummary& s = t.versions(0).total();
    int moved = 0;
    for (int f = 0; f < std::min(kShifted, s.features_size()); ++f)
      moved += s.features(f).drifted();
    return moved == kShifted;
  }

  // What Prometheus scrapes: the version's drift gauge counting the four.
  bool MetricsShowDrift(const std::string& model) {
    auto r = tests::HttpClient(server_->http_port()).Get("/metrics");
    if (!r.ok()) return false;
    const std::string series = absl::StrCat("edgeloop_model_drifted_features{model=\"", model,
                                            "\",version=\"", version_, "\"} ");
    const size_t at = r->body.find(series);
    if (at == std::string::npos) return false;
    return std::atoi(r->body.c_str() + at + series.size()) >= kShifted;
  }

  Options options_;
  tests::TempDir dir_{"drift-delay-bench"};  // outlives the processes writing into it
  std::unique_ptr<tests::ServerProcess> server_;
  std::unique_ptr<tests::AgentProcess> agent_;
  std::unique_ptr<client::LocalClient> client_;
  std::map<std::string, std::string> auth_;
  int64_t version_ = 0;
};

std::string Seconds(double s) { return s < 0 ? "not seen" : absl::StrFormat("%.2f", s); }

}  // namespace
}  // namespace edgeloop::bench

int main(int argc, char** argv) {
  using namespace edgeloop::bench;
  Options options;
  edgeloop::FlagSet flags;
  flags.Int("window-seconds", &options.window_seconds, "telemetry window length (default 5)");
  flags.Int("trials", &options.trials, "shifts measured, one model each (default 3)");
  flags.Int("rate", &options.rate, "application calls per second (default 200)");
  flags.Bool("no-metrics", &options.no_metrics,
             "time only the API (the /metrics gauge is recomputed once a minute)");
  flags.String("json", &options.json,
               "results file (default bench/results/drift_delay_bench.json)");
  if (std::optional<int> exit_code = ParseFlags(flags, argc, argv)) return *exit_code;
  if (options.window_seconds < 1 || options.trials < 1 || options.rate < 1) {
    std::fprintf(stderr, "drift_delay_bench: --window-seconds, --trials and --rate must be >= 1\n");
    return 2;
  }

  Bench bench(options);
  if (absl::Status s = bench.Start(); !s.ok()) {
    std::fprintf(stderr, "drift_delay_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  std::vector<Trial> trials;
  for (int k = 1; k <= options.trials; ++k) {
    absl::StatusOr<Trial> t = bench.Run(k);
    if (!t.ok()) {
      std::fprintf(stderr, "drift_delay_bench: trial %d: %s\n", k, t.status().ToString().c_str());
      return 1;
    }
    trials.push_back(*t);
  }

  std::printf(
      "\ndrift_delay_bench: %d s windows, %d calls/s, 4 of 16 features moved by half "
      "their range\n\n",
      options.window_seconds, options.rate);
  std::printf("%-6s %22s %26s\n", "trial", "API shows drift (s)", "/metrics gauge shows (s)");
  std::string json = absl::StrCat("{\"window_seconds\":", options.window_seconds,
                                  ",\"rate\":", options.rate, ",\"trials\":[");
  bool seen = true;
  for (size_t k = 0; k < trials.size(); ++k) {
    const Trial& t = trials[k];
    std::printf("%-6zu %22s %26s\n", k + 1, Seconds(t.api_s).c_str(),
                options.no_metrics ? "-" : Seconds(t.metrics_s).c_str());
    absl::StrAppend(&json, k ? "," : "", "{\"api_s\":", t.api_s, ",\"metrics_s\":", t.metrics_s,
                    "}");
    seen = seen && t.api_s >= 0 && (options.no_metrics || t.metrics_s >= 0);
  }
  absl::StrAppend(&json, "]}\n");
  edgeloop::bench::WriteResults(options.json, json);
  return seen ? 0 : 1;
}
