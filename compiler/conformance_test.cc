// ONNX's own backend test cases (Debian's libonnx-testdata): every case whose operators are
// all supported must match ONNX's expected outputs (rtol 1e-3, atol 1e-7). Runs the reference
// interpreter; compiled modules are checked against the same cases as the backends land.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "compiler/onnx_import.h"
#include "compiler/reference_interpreter.h"
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

Outcome RunCase(const fs::path& dir, std::string* why) {
  auto graph = ImportOnnx(Slurp(dir / "model.onnx"));
  if (!graph.ok()) {
    *why = std::string(graph.status().message());
    if (absl::IsUnimplemented(graph.status()) || absl::StrContains(*why, "dynamic dimension"))
      return Outcome::kSkipped;
    return Outcome::kFailed;
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
    auto outputs = RunReference(*graph, inputs);
    if (!outputs.ok()) {
      *why = std::string(outputs.status().message());
      return absl::IsUnimplemented(outputs.status()) ? Outcome::kSkipped : Outcome::kFailed;
    }
    for (size_t k = 0; k < graph->outputs.size(); ++k) {
      auto expected = TensorFromProtoBytes(Slurp(set.path() / absl::StrCat("output_", k, ".pb")));
      if (!expected.ok()) {
        *why = std::string(expected.status().message());
        return Outcome::kSkipped;
      }
      const Tensor& actual = outputs->at(graph->outputs[k].name);
      if (actual.shape != expected->shape) {
        *why = absl::StrCat("output ", k, " shape differs");
        return Outcome::kFailed;
      }
      const bool floats = expected->dtype == DType::kFloat32;
      for (int64_t n = 0; n < expected->size(); ++n) {
        const double a = floats ? actual.f[n] : actual.i[n];
        const double e = floats ? expected->f[n] : expected->i[n];
        if (!Close(a, e)) {
          *why = absl::StrCat("output ", k, "[", n, "] = ", a, ", expected ", e);
          return Outcome::kFailed;
        }
      }
    }
    ran = true;
  }
  if (!ran) {
    *why = "no test data";
    return Outcome::kSkipped;
  }
  return Outcome::kPassed;
}

TEST(ConformanceTest, OnnxBackendCasesMatch) {
  const fs::path root = EDGELOOP_ONNX_TESTDATA;
  ASSERT_TRUE(fs::exists(root)) << root << " missing: scripts/bootstrap installs libonnx-testdata";
  int passed = 0, failed = 0, skipped = 0;
  std::vector<std::string> failures;
  for (const char* suite : {"node", "simple", "pytorch-converted", "pytorch-operator"}) {
    std::vector<fs::path> cases;
    for (const auto& entry : fs::directory_iterator(root / suite)) {
      if (fs::exists(entry.path() / "model.onnx")) cases.push_back(entry.path());
    }
    std::sort(cases.begin(), cases.end());
    for (const fs::path& dir : cases) {
      std::string why;
      switch (RunCase(dir, &why)) {
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
  std::printf(
      "onnx conformance (reference interpreter): %d passed, %d failed, %d skipped (unsupported)\n",
      passed, failed, skipped);
  for (const std::string& f : failures) std::printf("  FAILED %s\n", f.c_str());
  EXPECT_EQ(failed, 0);
  // Guards against a harness that silently skips everything.
  EXPECT_GE(passed, 150);
}

}  // namespace
}  // namespace edgeloop::compiler
