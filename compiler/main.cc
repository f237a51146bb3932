// edgeloop-compile: ONNX model -> inference module for one target class.
//   edgeloop-compile model.onnx --target x86_64-v3 -o DIR
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "compiler/compile.h"
#include "compiler/onnx_import.h"
#include "compiler/syscall_filter.h"
#include "compiler/toolchain.h"

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
  bool help = false;
  absl::Status parsed = flags.Parse(args, &help);
  if (help || !parsed.ok() || model.empty() || options.out_dir.empty()) {
    std::fprintf(
        help ? stdout : stderr, "%susage: edgeloop-compile MODEL.onnx --target CLASS -o DIR\n\n%s",
        parsed.ok() ? "" : (std::string(parsed.message()) + "\n").c_str(), flags.Usage().c_str());
    return help ? 0 : 2;
  }
  options.timeout = absl::Seconds(timeout_seconds);
  auto bytes = ReadFile(model);
  if (!bytes.ok()) {
    std::fprintf(stderr, "edgeloop-compile: %s\n", std::string(bytes.status().message()).c_str());
    return 1;
  }
  auto result = compiler::CompileModel(*bytes, options);
  if (!result.ok()) {
    std::fprintf(stderr, "edgeloop-compile: %s\n", std::string(result.status().message()).c_str());
    return 1;
  }
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
        std::fprintf(stderr, "edgeloop-compile: validation failed: %s\n",
                     std::string(parsed_set.status().message()).c_str());
        return 3;
      }
      set = *std::move(parsed_set);
    }
    // Module code is about to run in this process (native targets; emulated ones run in
    // elm-runner, which gets the same filter): from here on it may start no process.
    auto toolchain = compiler::ToolchainFor(options.target);
    if (toolchain.ok() && toolchain->runner.empty()) {
      auto filter = compiler::SyscallFilter::NoNewProcesses(/*allow_exec=*/false);
      if (!filter.ok() || filter->Install() != 0) {
        std::fprintf(stderr, "edgeloop-compile: validation failed: cannot forbid new processes\n");
        return 3;
      }
    }
    auto validation =
        compiler::ValidateModule(*bytes, *result, options, set ? &*set : nullptr);
    if (!validation.ok()) {
      std::fprintf(stderr, "edgeloop-compile: validation failed: %s\n",
                   std::string(validation.status().message()).c_str());
      return 3;
    }
    std::printf("validation: %s\n", validation->c_str());
  }
  std::printf(
      "%s: %s, %lld bytes, workspace %llu bytes, weights %llu bytes, %d operators (%d folded, %d "
      "fused), "
      "%.2f s\n",
      result->so_path.c_str(), result->so_digest.c_str(), static_cast<long long>(result->so_bytes),
      static_cast<unsigned long long>(result->workspace_bytes),
      static_cast<unsigned long long>(result->weight_bytes), result->runtime_nodes,
      result->folded_nodes, result->fused_nodes, result->seconds);
  return 0;
}
