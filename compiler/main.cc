// edgeloop-compile: ONNX model -> inference module for one target class.
//   edgeloop-compile model.onnx --target x86_64-v3 -o DIR
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "compiler/compile.h"
#include "common/monitored_feature.h"
#include "common/proto_json.h"
#include "compiler/compile_contract.h"
#include "compiler/onnx_import.h"
#include "compiler/syscall_filter.h"
#include "compiler/toolchain.h"

namespace {

using edgeloop::compiler::CompileExit;

// Where the report goes (--result); empty: nowhere.
std::string result_path;
edgeloop::v1::CompileReport report;

// Ends the run: the report to --result, the reason to stderr, the outcome as the exit status.
int Finish(CompileExit exit, const std::string& error = "") {
  report.set_outcome(edgeloop::compiler::OutcomeFor(exit));
  report.set_error(error);
  if (!error.empty()) std::fprintf(stderr, "edgeloop-compile: %s\n", error.c_str());
  if (!result_path.empty()) {
    absl::Status written = edgeloop::WriteFileAtomically(
        result_path, edgeloop::compiler::SerializeReport(report) + "\n", 0644);
    if (!written.ok()) {
      std::fprintf(stderr, "edgeloop-compile: cannot write the report: %s\n",
                   std::string(written.message()).c_str());
    }
  }
  return static_cast<int>(exit);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace edgeloop;
  std::vector<std::string> args;
  std::string model;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-o") a = "--out";
    if (a.rfind("--", 0) != 0 && model.empty()) {
      model = a;
    } else {
      args.push_back(a);
    }
  }
  compiler::CompileOptions options;
  int timeout_seconds = 600;
  FlagSet flags;
  flags.String("target", &options.target,
               "target class: x86_64-v1..v4, aarch64-v8, aarch64-v8.2-dotprod, armv7-neon (default "
               "x86_64-v2)");
  flags.String("out", &options.out_dir,
               "output directory (-o): module.c, module.so, manifest.json");
  flags.Int("timeout-seconds", &timeout_seconds, "give up compiling after this long (default 600)");
  bool validate = false;
  flags.Bool("validate", &validate,
             "after compiling, run the module's self-test and compare it with the reference "
             "interpreter on the validation set (or generated inputs); writes validation.json");
  std::string validation_set;
  flags.String("validation-set", &validation_set,
               "samples to validate on: an onnx.SequenceProto of input tensors [n, ...] and "
               "optional int64 \"labels\" [n] (docs/api.md)");
  int validation_samples = 256;
  flags.Int("validation-samples", &validation_samples,
            "validate on at most this many samples of the set (default 256)");
  std::string monitor;
  flags.String("monitor", &monitor,
               "the features the version's reference statistics cover: a JSON "
               "MonitoredFeatureList (telemetry.proto); default: docs/telemetry.md");
  flags.String("result", &result_path,
               "write the outcome, manifest and validation figures here as JSON (the CI stage's "
               "contract: compile.proto CompileReport)");
  bool help = false;
  absl::Status parsed = flags.Parse(args, &help);
  if (help || !parsed.ok() || model.empty() || options.out_dir.empty()) {
    std::fprintf(
        help ? stdout : stderr, "%susage: edgeloop-compile MODEL.onnx --target CLASS -o DIR\n\n%s",
        parsed.ok() ? "" : (std::string(parsed.message()) + "\n").c_str(), flags.Usage().c_str());
    if (help) return 0;
    return Finish(CompileExit::kUsage, parsed.ok() ? "a model and --out are required"
                                                   : std::string(parsed.message()));
  }
  report.set_target(options.target);
  options.timeout = absl::Seconds(timeout_seconds);
  auto bytes = ReadFile(model);
  if (!bytes.ok()) return Finish(CompileExit::kModelRejected, std::string(bytes.status().message()));
  auto result = compiler::CompileModel(*bytes, options);
  if (!result.ok()) {
    return Finish(CompileExit::kModelRejected, std::string(result.status().message()));
  }
  // Checked once the model compiled, so that a model the compiler rejects is reported as such.
  if (!monitor.empty()) {
    auto read_features = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(std::string json, ReadFile(monitor));
      v1::MonitoredFeatureList list;
      RETURN_IF_ERROR(ParseProtoJson(json, &list));
      ASSIGN_OR_RETURN(compiler::Graph graph, compiler::ImportOnnx(*bytes));
      std::vector<std::pair<std::string, std::vector<int64_t>>> inputs;
      for (const compiler::ValueInfo& info : graph.inputs) inputs.emplace_back(info.name, info.shape);
      options.monitored_features.assign(list.features().begin(), list.features().end());
      return CheckMonitoredFeatures(options.monitored_features, inputs);
    };
    if (absl::Status read = read_features(); !read.ok()) {
      return Finish(CompileExit::kUsage, absl::StrCat("--monitor: ", read.message()));
    }
  }
  report.set_manifest(result->manifest_json);
  report.set_module_digest(result->so_digest);
  report.set_module_size(result->so_bytes);
  report.set_compile_seconds(result->seconds);
  if (validate) {
    std::optional<compiler::ValidationSet> set;
    if (!validation_set.empty()) {
      auto read_set = [&]() -> absl::StatusOr<compiler::ValidationSet> {
        ASSIGN_OR_RETURN(std::string set_bytes, ReadFile(validation_set));
        ASSIGN_OR_RETURN(compiler::Graph graph, compiler::ImportOnnx(*bytes));
        return compiler::ParseValidationSet(set_bytes, graph, validation_samples);
      };
      absl::StatusOr<compiler::ValidationSet> parsed_set = read_set();
      if (!parsed_set.ok()) {
        return Finish(CompileExit::kValidationFailed,
                      absl::StrCat("validation failed: ", parsed_set.status().message()));
      }
      set = *std::move(parsed_set);
    }
    // Module code is about to run in this process (native targets; emulated ones run in
    // elm-runner, which gets the same filter): from here on it may start no process.
    auto toolchain = compiler::ToolchainFor(options.target);
    if (toolchain.ok() && toolchain->runner.empty()) {
      auto filter = compiler::SyscallFilter::NoNewProcesses(/*allow_exec=*/false);
      if (!filter.ok() || filter->Install() != 0) {
        return Finish(CompileExit::kValidationFailed,
                      "validation failed: cannot forbid new processes");
      }
    }
    auto validation = compiler::ValidateModule(*bytes, *result, options, set ? &*set : nullptr,
                                               report.mutable_reference());
    if (!validation.ok()) {
      return Finish(CompileExit::kValidationFailed,
                    absl::StrCat("validation failed: ", validation.status().message()));
    }
    std::printf("validation: %s\n", validation->c_str());
    report.set_validation(*validation);
  }
  std::printf(
      "%s: %s, %lld bytes, workspace %llu bytes, weights %llu bytes, %d operators (%d folded, %d "
      "fused), "
      "%.2f s\n",
      result->so_path.c_str(), result->so_digest.c_str(), static_cast<long long>(result->so_bytes),
      static_cast<unsigned long long>(result->workspace_bytes),
      static_cast<unsigned long long>(result->weight_bytes), result->runtime_nodes,
      result->folded_nodes, result->fused_nodes, result->seconds);
  return Finish(CompileExit::kOk);
}
