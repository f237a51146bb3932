// ONNX's own backend test cases (Debian's libonnx-testdata): every case whose operators are
// all supported must match ONNX's expected outputs (rtol 1e-3, atol 1e-7). Runs the reference
// interpreter; compiled modules are checked against the same cases as the backends land.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "compiler/compile.h"
#include "compiler/module_loader.h"
#include "compiler/module_runner.h"
#include "compiler/onnx_import.h"
#include "compiler/reference_interpreter.h"
#include "compiler/toolchain.h"
#include "gtest/gtest.h"

namespace edgeloop::compiler {
namespace {
namespace fs = std::filesystem;

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Close(double actual, double expected) {
  if (std::isnan(actual) || std::isnan(expected)) return std::isnan(actual) && std::isnan(expected);
  if (std::isinf(expected)) return actual == expected;
  return std::abs(actual - expected) <= 1e-7 + 1e-3 * std::abs(expected);
}

enum class Outcome { kPassed, kFailed, kSkipped };

absl::Status Compare(const std::vector<const Tensor*>& actual,
                     const std::vector<Tensor>& expected) {
  for (size_t k = 0; k < expected.size(); ++k) {
    if (actual[k]->shape != expected[k].shape)
      return absl::InternalError(absl::StrCat("output ", k, " shape differs"));
    const bool floats = expected[k].dtype == DType::kFloat32;
    for (int64_t n = 0; n < expected[k].size(); ++n) {
      const double a = floats ? actual[k]->f[n] : actual[k]->i[n];
      const double e = floats ? expected[k].f[n] : expected[k].i[n];
      if (!Close(a, e))
        return absl::InternalError(absl::StrCat("output ", k, "[", n, "] = ", a, ", expected ", e));
    }
  }
  return absl::OkStatus();
}

// Engine: "reference" (the interpreter) or a target class (compiled module, run in-process).
Outcome RunCase(const fs::path& dir, const std::string& engine, std::string* why) {
  auto graph = ImportOnnx(Slurp(dir / "model.onnx"));
  if (!graph.ok()) {
    *why = std::string(graph.status().message());
    if (absl::IsUnimplemented(graph.status()) || absl::StrContains(*why, "dynamic dimension"))
      return Outcome::kSkipped;
    return Outcome::kFailed;
  }
  std::unique_ptr<LoadedModule> module;
  std::unique_ptr<EmulatedModule> emulator;
  if (engine != "reference") {
    const std::string out =
        (fs::temp_directory_path() / ("edgeloop-conformance-" + std::to_string(::getpid())))
            .string();
    CompileOptions options;
    options.target = engine;
    options.out_dir = out;
    auto compiled = CompileModel(Slurp(dir / "model.onnx"), options);
    if (!compiled.ok()) {
      *why = std::string(compiled.status().message());
      return absl::IsUnimplemented(compiled.status()) ? Outcome::kSkipped : Outcome::kFailed;
    }
    auto toolchain = ToolchainFor(engine);
    if (!toolchain.ok()) {
      *why = std::string(toolchain.status().message());
      return Outcome::kFailed;
    }
    if (!toolchain->runner.empty()) {
      auto emulated = EmulatedModule::Create(*toolchain, compiled->so_path, out + "/run");
      if (!emulated.ok() || emulated->get()->SelfTest().value_or(1) != 0) {
        *why = emulated.ok() ? "module self-test failed under emulation"
                             : std::string(emulated.status().message());
        return Outcome::kFailed;
      }
      emulator = std::move(*emulated);
    } else {
      auto loaded = LoadedModule::Load(compiled->so_path);
      if (!loaded.ok()) {
        *why = std::string(loaded.status().message());
        return Outcome::kFailed;
      }
      module = std::move(*loaded);
      if (module->SelfTest() != 0) {
        *why = "module self-test failed";
        return Outcome::kFailed;
      }
    }
  }
  bool ran = false;
  for (const auto& set : fs::directory_iterator(dir)) {
    if (!set.is_directory() || !absl::StartsWith(set.path().filename().string(), "test_data_set"))
      continue;
    std::map<std::string, Tensor> inputs;
    for (size_t k = 0; k < graph->inputs.size(); ++k) {
      auto t = TensorFromProtoBytes(Slurp(set.path() / absl::StrCat("input_", k, ".pb")));
      if (!t.ok()) {
        *why = std::string(t.status().message());
        return absl::IsUnimplemented(t.status()) ? Outcome::kSkipped : Outcome::kFailed;
      }
      inputs[graph->inputs[k].name] = std::move(*t);
    }
    std::vector<Tensor> expected;
    for (size_t k = 0; k < graph->outputs.size(); ++k) {
      auto t = TensorFromProtoBytes(Slurp(set.path() / absl::StrCat("output_", k, ".pb")));
      if (!t.ok()) {
        *why = std::string(t.status().message());
        return Outcome::kSkipped;
      }
      expected.push_back(std::move(*t));
    }
    std::vector<Tensor> produced;
    if (engine == "reference") {
      auto outputs = RunReference(*graph, inputs);
      if (!outputs.ok()) {
        *why = std::string(outputs.status().message());
        return absl::IsUnimplemented(outputs.status()) ? Outcome::kSkipped : Outcome::kFailed;
      }
      for (const ValueInfo& o : graph->outputs) produced.push_back(outputs->at(o.name));
    } else {
      std::vector<const Tensor*> ordered;
      for (const ValueInfo& i : graph->inputs) ordered.push_back(&inputs.at(i.name));
      std::vector<std::vector<int64_t>> shapes;
      for (const ValueInfo& o : graph->outputs) shapes.push_back(o.shape);
      absl::StatusOr<std::vector<Tensor>> outputs;
      if (module) {
        outputs = module->Run(ordered);
      } else {
        auto batch = emulator->Run({ordered}, shapes);
        outputs = batch.ok() ? absl::StatusOr<std::vector<Tensor>>(std::move(batch->at(0)))
                             : batch.status();
      }
      if (!outputs.ok()) {
        *why = std::string(outputs.status().message());
        return Outcome::kFailed;
      }
      produced = std::move(*outputs);
    }
    std::vector<const Tensor*> actual;
    for (const Tensor& t : produced) actual.push_back(&t);
    if (absl::Status same = Compare(actual, expected); !same.ok()) {
      *why = std::string(same.message());
      return Outcome::kFailed;
    }
    ran = true;
  }
  if (!ran) {
    *why = "no test data";
    return Outcome::kSkipped;
  }
  return Outcome::kPassed;
}

void RunSuite(const std::string& engine, int minimum_passed,
              std::vector<std::string> suites = {"node", "simple", "pytorch-converted",
                                                 "pytorch-operator"}) {
  const fs::path root = EDGELOOP_ONNX_TESTDATA;
  ASSERT_TRUE(fs::exists(root)) << root << " missing: scripts/bootstrap installs libonnx-testdata";
  int passed = 0, failed = 0, skipped = 0;
  std::vector<std::string> failures;
  for (const std::string& suite : suites) {
    std::vector<fs::path> cases;
    for (const auto& entry : fs::directory_iterator(root / suite)) {
      if (fs::exists(entry.path() / "model.onnx")) cases.push_back(entry.path());
    }
    std::sort(cases.begin(), cases.end());
    for (const fs::path& dir : cases) {
      std::string why;
      switch (RunCase(dir, engine, &why)) {
        case Outcome::kPassed:
          ++passed;
          break;
        case Outcome::kSkipped:
          ++skipped;
          if (std::getenv("EDGELOOP_CONFORMANCE_VERBOSE"))
            std::printf("  skipped %s: %s\n", dir.c_str(), why.c_str());
          break;
        case Outcome::kFailed:
          ++failed;
          failures.push_back(absl::StrCat(suite, "/", dir.filename().string(), ": ", why));
          break;
      }
    }
  }
  std::printf("onnx conformance (%s): %d passed, %d failed, %d skipped (unsupported)\n",
              engine.c_str(), passed, failed, skipped);
  for (const std::string& f : failures) std::printf("  FAILED %s\n", f.c_str());
  EXPECT_EQ(failed, 0);
  // Guards against a harness that silently skips everything.
  EXPECT_GE(passed, minimum_passed);
}

TEST(ConformanceTest, ReferenceInterpreterMatchesOnnx) { RunSuite("reference", 225); }

// Every case the C backend supports, compiled with the host's toolchain and run in-process.
TEST(ConformanceTest, CompiledModulesMatchOnnx) {
#if defined(__x86_64__)
  RunSuite("x86_64-v2", 190);
#else
  GTEST_SKIP() << "host modules are built for x86-64 here";
#endif
}

// The same with the widest x86-64 level this machine runs: other vector widths mean other
// weight packing and register tiles in the kernels.
TEST(ConformanceTest, WidestHostModulesMatchOnnx) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("x86-64-v4")) {
    RunSuite("x86_64-v4", 190);
  } else if (__builtin_cpu_supports("x86-64-v3")) {
    RunSuite("x86_64-v3", 190);
  } else {
    GTEST_SKIP() << "this CPU runs neither x86-64-v3 nor v4";
  }
#else
  GTEST_SKIP() << "host modules are built for x86-64 here";
#endif
}

// Cross-compiled aarch64 modules on ONNX's node cases, run under qemu-aarch64.
TEST(ConformanceTest, Aarch64ModulesMatchOnnxUnderQemu) { RunSuite("aarch64-v8", 125, {"node"}); }

}  // namespace
}  // namespace edgeloop::compiler
