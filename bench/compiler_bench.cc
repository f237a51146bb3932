// Batch-1, single-thread latency of edgeloop's compiled modules against OpenCV DNN (reading the
// same ONNX file) and PyTorch (the same weights; bench/torch_latency.py), in one run, for an MLP
// and a small CNN. Also reports each module's size, workspace, weights and compile time, and
// checks that the three engines agree on the output.
//
//   build/bin/compiler_bench [--seconds 2] [--targets x86_64-v2,host] [--work-dir DIR]
//                            [--json bench/results/compiler_bench.json]
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/dnn.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "agent/hardware_profile.h"
#include "bench/load.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/hardware.h"
#include "common/status.h"
#include "compiler/compile.h"
#include "compiler/module_loader.h"
#include "compiler/testing/onnx_models.h"
#include "tests/testing/server_process.h"

namespace edgeloop::bench {
namespace {

struct Latency {
  double p50_us = 0, mean_us = 0, min_us = 0;
  int64_t calls = 0;
};

// Warm-up, then calls `fn` back to back for `seconds`, timing each call.
Latency Measure(const std::function<void()>& fn, double seconds) {
  for (int i = 0; i < 50; ++i) fn();
  std::vector<double> samples;
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    const auto start = Clock::now();
    fn();
    samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  std::sort(samples.begin(), samples.end());
  Latency l;
  l.calls = static_cast<int64_t>(samples.size());
  l.p50_us = samples[samples.size() / 2];
  l.min_us = samples.front();
  for (double s : samples) l.mean_us += s / samples.size();
  return l;
}

Latency LatencyFromJson(const std::string& json, const std::string& key) {
  // torch_latency.py prints flat numbers under fixed keys; a scan is enough.
  Latency l;
  const size_t at = json.find("\"" + key + "\"");
  if (at == std::string::npos) return l;
  auto number = [&](const std::string& field) {
    const size_t f = json.find("\"" + field + "\": ", at);
    return f == std::string::npos ? 0.0 : std::strtod(json.c_str() + f + field.size() + 4, nullptr);
  };
  l.p50_us = number("p50_us");
  l.mean_us = number("mean_us");
  l.min_us = number("min_us");
  l.calls = static_cast<int64_t>(number("calls"));
  return l;
}

std::vector<float> OutputFromJson(const std::string& json) {
  std::vector<float> out;
  const size_t at = json.find("\"output\": [");
  if (at == std::string::npos) return out;
  const size_t end = json.find(']', at);
  for (absl::string_view v :
       absl::StrSplit(json.substr(at + 11, end - at - 11), ',', absl::SkipWhitespace())) {
    out.push_back(std::strtof(std::string(v).c_str(), nullptr));
  }
  return out;
}

double MaxAbsDiff(const std::vector<float>& a, const float* b, size_t n) {
  if (a.size() != n) return INFINITY;
  double d = 0;
  for (size_t i = 0; i < n; ++i) d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
  return d;
}

// One model compiled for one target class, with the other engines' numbers for the same model.
struct Row {
  std::string model, target;
  compiler::CompileResult compiled;
  Latency module, opencv, torch_eager, torch_script;
  double opencv_diff = 0, torch_diff = 0;
};

struct Options {
  double seconds = 2;
  std::string targets = "x86_64-v2,host";
  std::string json = "bench/results/compiler_bench.json";
  std::string torch_script = EDGELOOP_TORCH_LATENCY_PY;
  std::string python = "/usr/bin/python3";  // Debian's, where python3-torch lives
  std::string work_dir;                      // kept when given (ONNX files, module.c, .so)
};

absl::StatusOr<std::vector<Row>> Run(const std::string& name, const std::string& onnx,
                                     const std::vector<std::string>& targets,
                                     const Options& options, const std::string& dir) {
  const std::string onnx_path = dir + "/" + name + ".onnx";
  RETURN_IF_ERROR(WriteFileAtomically(onnx_path, onnx));
  std::vector<Row> rows;
  std::vector<float> input, output;
  std::vector<int> dims;
  for (const std::string& target : targets) {
    Row row;
    row.model = name;
    row.target = target;
    compiler::CompileOptions compile;
    compile.target = target;
    compile.out_dir = dir + "/" + name + "." + target;
    ASSIGN_OR_RETURN(row.compiled, compiler::CompileModel(onnx, compile));
    ASSIGN_OR_RETURN(auto loaded, compiler::LoadedModule::Load(row.compiled.so_path));
    const elm_module& m = loaded->module();
    if (input.empty()) {
      // One deterministic input, shared by every engine.
      size_t in_n = 1, out_n = 1;
      for (int k = 0; k < m.inputs[0].rank; ++k) {
        dims.push_back(static_cast<int>(m.inputs[0].dims[k]));
        in_n *= m.inputs[0].dims[k];
      }
      for (int k = 0; k < m.outputs[0].rank; ++k) out_n *= m.outputs[0].dims[k];
      input.resize(in_n);
      output.resize(out_n);
      uint32_t state = 7;
      for (float& v : input) {
        state = state * 1664525u + 1013904223u;
        v = static_cast<float>(state >> 8) / static_cast<float>(1 << 24) * 2.0f - 1.0f;
      }
    }
    std::vector<char> workspace(m.workspace_bytes + 64);
    void* ws = workspace.data() + (64 - reinterpret_cast<uintptr_t>(workspace.data()) % 64) % 64;
    const void* ins[] = {input.data()};
    void* outs[] = {output.data()};
    row.module = Measure([&] { m.run(ws, ins, outs); }, options.seconds);
    rows.push_back(std::move(row));
  }

  cv::dnn::Net net = cv::dnn::readNetFromONNX(onnx_path);
  net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  const cv::Mat blob(static_cast<int>(dims.size()), dims.data(), CV_32F, input.data());
  cv::Mat cv_out;
  const Latency opencv = Measure(
      [&] {
        net.setInput(blob);
        cv_out = net.forward();
      },
      options.seconds);
  const double opencv_diff = MaxAbsDiff(
      std::vector<float>(cv_out.begin<float>(), cv_out.end<float>()), output.data(), output.size());

  const std::string input_path = dir + "/" + name + ".input";
  RETURN_IF_ERROR(WriteFileAtomically(
      input_path, std::string(reinterpret_cast<const char*>(input.data()),
                              input.size() * sizeof(float))));
  const tests::CommandResult torch =
      tests::RunCommand({options.python, options.torch_script, "--model", onnx_path, "--input",
                         input_path, "--seconds", absl::StrCat(options.seconds)});
  if (torch.exit_code != 0) {
    return absl::InternalError(absl::StrCat("torch_latency.py failed: ", torch.err));
  }
  for (Row& row : rows) {
    row.opencv = opencv;
    row.opencv_diff = opencv_diff;
    row.torch_eager = LatencyFromJson(torch.out, "eager");
    row.torch_script = LatencyFromJson(torch.out, "torchscript");
    row.torch_diff = MaxAbsDiff(OutputFromJson(torch.out), output.data(), output.size());
  }
  return rows;
}

std::string LatencyJson(const Latency& l) {
  return absl::StrFormat(R"({"p50_us":%.2f,"mean_us":%.2f,"min_us":%.2f,"calls":%d})", l.p50_us,
                         l.mean_us, l.min_us, l.calls);
}

int Main(int argc, char** argv) {
  Options options;
  FlagSet flags;
  flags.Double("seconds", &options.seconds, "seconds of calls per engine and model");
  flags.String("targets", &options.targets,
               "comma-separated target classes to compile for; host = this machine's");
  flags.String("json", &options.json, "where to write the results");
  flags.String("torch-script", &options.torch_script, "path of torch_latency.py");
  flags.String("python", &options.python, "Python interpreter with torch and onnx");
  flags.String("work-dir", &options.work_dir,
               "keep the models and generated modules here (default: a temporary directory)");
  if (std::optional<int> exit_code = ParseFlags(flags, argc, argv)) return *exit_code;
  std::vector<std::string> targets;
  for (absl::string_view t : absl::StrSplit(options.targets, ',', absl::SkipEmpty())) {
    std::string target =
        t == "host" ? DeriveTargetClass(agent::ReadHardwareProfile(agent::ProfileOptions{}))
                    : std::string(t);
    if (std::find(targets.begin(), targets.end(), target) == targets.end())
      targets.push_back(target);
  }
  cv::setNumThreads(1);
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  const std::string dir =
      options.work_dir.empty() ? tests::NewTempDir("compiler_bench") : options.work_dir;

  const std::vector<std::pair<std::string, std::string>> models = {
      // MLPs from weights that stay in L1 to 1 MB that streams from L2 on every call.
      {"mlp-s", compiler::testing::MlpOnnx(std::vector<int>{32, 64, 32, 4})},
      {"mlp", compiler::testing::MlpOnnx(std::vector<int>{64, 128, 64, 10})},
      {"mlp-l", compiler::testing::MlpOnnx(std::vector<int>{256, 512, 256, 10})},
      {"cnn", compiler::testing::CnnOnnx()},
  };
  std::vector<Row> rows;
  for (const auto& [name, onnx] : models) {
    absl::StatusOr<std::vector<Row>> model_rows = Run(name, onnx, targets, options, dir);
    if (!model_rows.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(),
                   std::string(model_rows.status().message()).c_str());
      return 1;
    }
    rows.insert(rows.end(), model_rows->begin(), model_rows->end());
  }
  if (options.work_dir.empty()) std::filesystem::remove_all(dir);

  std::printf(
      "\nbatch 1, one thread, p50 latency in µs (ratio = other engine's p50 / edgeloop module's)\n"
      "%-5s %-10s %10s %10s %7s %10s %7s %10s %7s %9s %10s %9s %8s\n",
      "model", "target", "edgeloop", "opencv", "ratio", "torch", "ratio", "torchscr", "ratio",
      "module_KB", "workspace", "weights_KB", "compile_s");
  for (const Row& r : rows) {
    std::printf("%-5s %-10s %10.1f %10.1f %6.1fx %10.1f %6.1fx %10.1f %6.1fx %9.1f %10lu %9.1f %8.2f\n",
                r.model.c_str(), r.target.c_str(), r.module.p50_us, r.opencv.p50_us,
                r.opencv.p50_us / r.module.p50_us, r.torch_eager.p50_us,
                r.torch_eager.p50_us / r.module.p50_us, r.torch_script.p50_us,
                r.torch_script.p50_us / r.module.p50_us, r.compiled.so_bytes / 1024.0,
                static_cast<unsigned long>(r.compiled.workspace_bytes),
                r.compiled.weight_bytes / 1024.0, r.compiled.seconds);
  }
  std::printf("output max |diff| vs edgeloop:");
  for (const Row& r : rows) {
    if (r.target == targets.front())
      std::printf("  %s opencv %.2g torch %.2g", r.model.c_str(), r.opencv_diff, r.torch_diff);
  }
  std::printf("\n");

  std::string json = "{\"rows\":[";
  for (const Row& r : rows) {
    absl::StrAppend(
        &json, json.back() == '[' ? "\n " : ",\n ",
        absl::StrFormat(
            R"({"model":"%s","target":"%s","edgeloop":%s,"opencv":%s,"torch_eager":%s,"torchscript":%s,)"
            R"("module_bytes":%d,"workspace_bytes":%d,"weight_bytes":%d,"compile_seconds":%.3f,)"
            R"("opencv_max_abs_diff":%g,"torch_max_abs_diff":%g})",
            r.model, r.target, LatencyJson(r.module), LatencyJson(r.opencv),
            LatencyJson(r.torch_eager), LatencyJson(r.torch_script), r.compiled.so_bytes,
            r.compiled.workspace_bytes, r.compiled.weight_bytes, r.compiled.seconds,
            r.opencv_diff, r.torch_diff));
  }
  absl::StrAppend(&json, "\n]}\n");
  WriteResults(options.json, json);
  // The engines must agree, or the timings compare different computations.
  for (const Row& r : rows) {
    if (!(r.opencv_diff < 1e-4 && r.torch_diff < 1e-4)) {
      std::fprintf(stderr, "%s: outputs disagree\n", r.model.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace edgeloop::bench

int main(int argc, char** argv) { return edgeloop::bench::Main(argc, argv); }
