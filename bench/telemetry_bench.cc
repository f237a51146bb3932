// What device telemetry costs a call: the agent's real Predict path (ModelHost, a compiled
// module loaded as the agent loads it) with and without the version's window counters, side
// by side in alternating rounds, for an MLP (16 features, each input element) and a small CNN
// (3 per-channel means over a 3x32x32 image), on 1 and 2 calling threads. Also the cost of
// WindowCounters::Record alone.
//
//   build/bin/telemetry_bench [--seconds 1] [--rounds 5] [--work-dir DIR]
//                             [--json bench/results/telemetry_bench.json]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/hardware_profile.h"
#include "agent/model_host.h"
#include "agent/module_file.h"
#include "agent/serving_model.h"
#include "agent/window_counters.h"
#include "bench/load.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/hardware.h"
#include "common/monitored_feature.h"
#include "common/random.h"
#include "common/status.h"
#include "compiler/compile.h"
#include "compiler/testing/onnx_models.h"

namespace edgeloop::bench {
namespace {

using Clock = std::chrono::steady_clock;
namespace lv1 = ::edgeloop::local::v1;

struct Model {
  std::string name, onnx, input;
  std::vector<int64_t> dims;
};

// The version's spec as the server would make it: its default features, edges spread over
// the inputs' range (the binning costs the same whatever the edges are).
v1::MonitoringSpec SpecFor(const Model& m) {
  v1::MonitoringSpec spec;
  spec.set_model(m.name);
  spec.set_version(1);
  spec.set_window_seconds(60);
  spec.set_reference_source(v1::ReferenceStatistics::VALIDATION_SET);
  for (const v1::MonitoredFeature& f : DefaultMonitoredFeatures({{m.input, m.dims}})) {
    v1::MonitoringSpec::Feature* out = spec.add_features();
    *out->mutable_feature() = f;
    for (int e = 0; e <= 10; ++e) out->add_edges(-1.0 + 0.2 * e);
  }
  return spec;
}

// Calls per second of `threads` threads calling Predict for `seconds`.
double Throughput(agent::ModelHost& host, const lv1::PredictRequest& request, int threads,
                  double seconds) {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> calls{0};
  std::vector<std::thread> workers;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      int64_t mine = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (!host.Predict(request).ok()) std::abort();
        ++mine;
      }
      calls += mine;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& w : workers) w.join();
  return static_cast<double>(calls) / std::chrono::duration<double>(Clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::Status Run(double seconds, int rounds, std::string work_dir, const std::string& json_path) {
  if (work_dir.empty())
    work_dir = absl::StrCat(std::filesystem::temp_directory_path().string(), "/telemetry-bench-",
                            RandomHex(4));
  RETURN_IF_ERROR(MakeDirectories(work_dir));
  const std::string target = DeriveTargetClass(agent::ReadHardwareProfile(agent::ProfileOptions{}));

  const std::vector<Model> models = {
      {"mlp", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1), "input", {1, 16}},
      {"cnn", compiler::testing::CnnOnnx(1), "image", {1, 3, 32, 32}},
  };
  std::printf("%-4s %-8s %7s %14s %14s %9s %12s\n", "model", "features", "threads",
              "without call/s", "with call/s", "overhead", "Record ns");
  std::string json = "[";
  for (const Model& m : models) {
    compiler::CompileOptions options;
    options.target = target;
    options.out_dir = absl::StrCat(work_dir, "/", m.name);
    ASSIGN_OR_RETURN(compiler::CompileResult compiled, compiler::CompileModel(m.onnx, options));
    v1::ModuleRef ref;
    ref.set_model(m.name);
    ref.set_version(1);
    ref.set_target(target);
    ref.set_digest(compiled.so_digest);
    ASSIGN_OR_RETURN(agent::ModuleFile plain_file, agent::ModuleFile::Open(compiled.so_path));
    ASSIGN_OR_RETURN(agent::ModuleFile monitored_file, agent::ModuleFile::Open(compiled.so_path));
    ASSIGN_OR_RETURN(auto plain, agent::ServingModel::Load(ref, std::move(plain_file), target));
    ASSIGN_OR_RETURN(auto monitored,
                     agent::ServingModel::Load(ref, std::move(monitored_file), target));
    const v1::MonitoringSpec spec = SpecFor(m);
    auto counters = std::make_shared<agent::WindowCounters>(spec, ref.digest(), monitored->module(),
                                                            absl::Now());
    monitored->Monitor(counters);
    agent::ModelHost without, with;
    without.SetRollbackPolicy({.enabled = false}, nullptr);
    with.SetRollbackPolicy({.enabled = false}, nullptr);
    without.Activate(plain);
    with.Activate(monitored);

    lv1::PredictRequest request;
    request.set_model(m.name);
    lv1::Tensor* input = request.add_inputs();
    input->set_name(m.input);
    input->set_dtype(lv1::FLOAT32);
    int64_t n = 1;
    for (int64_t d : m.dims) {
      input->add_dims(d);
      n *= d;
    }
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k)
      x[static_cast<size_t>(k)] = static_cast<float>((k * 7) % 11 - 5) / 5.0f;
    input->set_data(x.data(), x.size() * 4);

    // Record alone, on a module-sized input and a probability vector (both models end in
    // Softmax) as output.
    const elm_tensor& out0 = monitored->module().outputs[0];
    std::vector<float> out(static_cast<size_t>(out0.dims[out0.rank - 1]));
    std::fill(out.begin(), out.end(), 1.0f / static_cast<float>(out.size()));
    const void* ins[1] = {x.data()};
    void* outs[1] = {out.data()};
    constexpr int kRecords = 200000;
    const auto r0 = Clock::now();
    for (int k = 0; k < kRecords; ++k) counters->Record(ins, outs, absl::Microseconds(20), true);
    const double record_ns =
        std::chrono::duration<double, std::nano>(Clock::now() - r0).count() / kRecords;

    for (int threads : {1, 2}) {
      std::vector<double> a, b;
      for (int r = 0; r < rounds; ++r) {  // alternating, so drift in the machine hits both
        a.push_back(Throughput(without, request, threads, seconds));
        b.push_back(Throughput(with, request, threads, seconds));
      }
      const double wa = Median(a), wb = Median(b);
      const double overhead = (wa / wb - 1) * 100;
      std::printf("%-4s %8d %7d %14.0f %14.0f %8.1f%% %12.0f\n", m.name.c_str(),
                  spec.features_size(), threads, wa, wb, overhead, record_ns);
      absl::StrAppend(
          &json, json.size() > 1 ? "," : "",
          absl::StrFormat(R"({"model":"%s","features":%d,"threads":%d,)"
                          R"("without_calls_per_s":%.0f,"with_calls_per_s":%.0f,)"
                          R"("overhead_percent":%.2f,"record_ns":%.0f})",
                          m.name, spec.features_size(), threads, wa, wb, overhead, record_ns));
    }
  }
  json += "]\n";
  if (!WriteResults(json_path, json)) return absl::InternalError("the results were not written");
  std::filesystem::remove_all(work_dir);
  return absl::OkStatus();
}

}  // namespace
}  // namespace edgeloop::bench

int main(int argc, char** argv) {
  double seconds = 1;
  int rounds = 5;
  std::string work_dir, json_path;
  edgeloop::FlagSet flags;
  flags.Double("seconds", &seconds, "seconds per measurement (default 1)");
  flags.Int("rounds", &rounds, "alternating rounds of with and without (default 5)");
  flags.String("work-dir", &work_dir, "where modules are built (default a temporary dir)");
  flags.String("json", &json_path, "also write the results here");
  if (std::optional<int> exit_code = edgeloop::bench::ParseFlags(flags, argc, argv)) {
    return *exit_code;
  }
  absl::Status s = edgeloop::bench::Run(seconds, rounds, work_dir, json_path);
  if (!s.ok()) {
    std::fprintf(stderr, "telemetry_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
