#include "compiler/compile.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status.h"
#include "compiler/c_backend.h"
#include "compiler/module_loader.h"
#include "compiler/module_runner.h"
#include "compiler/onnx_import.h"
#include "compiler/reference_interpreter.h"
#include "compiler/toolchain.h"

namespace edgeloop::compiler {
namespace {

std::string Signature(const std::vector<ValueInfo>& values) {
  std::vector<std::string> parts;
  for (const ValueInfo& v : values) {
    parts.push_back(absl::StrCat("{\"name\":\"", JsonEscape(v.name),
                                 "\",\"dtype\":\"float32\",\"shape\":[",
                                 absl::StrJoin(v.shape, ","), "]}"));
  }
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

}  // namespace

const char* CompilerVersion() { return "edgeloop-compile 0.1.0 (backend c)"; }

absl::StatusOr<CompileResult> CompileModel(const std::string& onnx_bytes,
                                           const CompileOptions& options) {
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(Toolchain toolchain, ToolchainFor(options.target));
  ASSIGN_OR_RETURN(Graph graph, ImportOnnx(onnx_bytes));
  const std::string model_digest = DigestFromHex(Sha256Hex(onnx_bytes));
  ASSIGN_OR_RETURN(GeneratedModule generated, GenerateC(graph, {model_digest, options.target, toolchain.vector_floats}));
  RETURN_IF_ERROR(MakeDirectories(options.out_dir));
  const std::string c_file = options.out_dir + "/module.c";
  const std::string so_file = options.out_dir + "/module.so";
  RETURN_IF_ERROR(WriteFileAtomically(c_file, generated.c_source));
  RETURN_IF_ERROR(CompileSharedObject(toolchain, c_file, so_file, options.timeout));
  ASSIGN_OR_RETURN(std::string so_bytes, ReadFile(so_file));

  CompileResult result;
  result.so_path = so_file;
  result.so_digest = DigestFromHex(Sha256Hex(so_bytes));
  result.so_bytes = static_cast<int64_t>(so_bytes.size());
  result.workspace_bytes = generated.workspace_bytes;
  result.weight_bytes = generated.weight_bytes;
  result.runtime_nodes = generated.runtime_nodes;
  result.folded_nodes = generated.folded_nodes;
  result.fused_nodes = generated.fused_nodes;
  result.manifest_json = absl::StrCat(
      "{\"abi\":1,\"backend\":\"c\",\"compiler\":\"", CompilerVersion(),
      "\",\"inputs\":", Signature(graph.inputs), ",\"modelDigest\":\"", model_digest,
      "\",\"outputs\":", Signature(graph.outputs), ",\"precision\":\"fp32\",\"soDigest\":\"",
      result.so_digest, "\",\"soSize\":", result.so_bytes, ",\"target\":\"", options.target,
      "\",\"weightBytes\":", result.weight_bytes, ",\"workspaceBytes\":", result.workspace_bytes,
      "}");
  RETURN_IF_ERROR(
      WriteFileAtomically(options.out_dir + "/manifest.json", result.manifest_json + "\n"));
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return result;
}

absl::StatusOr<std::string> ValidateModule(const std::string& onnx_bytes,
                                           const CompileResult& compiled,
                                           const CompileOptions& options) {
  ASSIGN_OR_RETURN(Toolchain toolchain, ToolchainFor(options.target));
  const bool emulated = !toolchain.runner.empty();
  ASSIGN_OR_RETURN(Graph graph, ImportOnnx(onnx_bytes));
  // Native modules run in this process; cross-compiled ones in elm-runner under qemu.
  std::unique_ptr<LoadedModule> native;
  std::unique_ptr<EmulatedModule> emulator;
  if (emulated) {
    ASSIGN_OR_RETURN(emulator, EmulatedModule::Create(toolchain, compiled.so_path,
                                                      options.out_dir + "/validate"));
    ASSIGN_OR_RETURN(int code, emulator->SelfTest());
    if (code != 0) {
      return absl::InternalError(
          absl::StrCat("the module's self-test failed under emulation (", code, ")"));
    }
  } else {
    ASSIGN_OR_RETURN(native, LoadedModule::Load(compiled.so_path));
    if (native->SelfTest() != 0) return absl::InternalError("the module's self-test failed");
  }
  std::vector<std::vector<int64_t>> output_shapes;
  for (const ValueInfo& o : graph.outputs) output_shapes.push_back(o.shape);
  constexpr int kSamples = 4;
  double max_abs = 0, max_rel = 0;
  uint32_t state = 777;
  for (int sample = 0; sample < kSamples; ++sample) {
    std::map<std::string, Tensor> inputs;
    std::vector<const Tensor*> ordered;
    for (const ValueInfo& info : graph.inputs) {
      Tensor t;
      t.shape = info.shape;
      t.f.resize(t.size());
      for (float& v : t.f) {
        state = state * 1664525u + 1013904223u;
        v = static_cast<float>(state >> 8) / static_cast<float>(1 << 24) * 4.0f - 2.0f;
      }
      inputs[info.name] = std::move(t);
    }
    for (const ValueInfo& info : graph.inputs) ordered.push_back(&inputs.at(info.name));
    ASSIGN_OR_RETURN(auto expected, RunReference(graph, inputs));
    std::vector<Tensor> actual;
    if (emulated) {
      ASSIGN_OR_RETURN(actual, emulator->Run(ordered, output_shapes));
    } else {
      ASSIGN_OR_RETURN(actual, native->Run(ordered));
    }
    for (size_t k = 0; k < graph.outputs.size(); ++k) {
      const Tensor& e = expected.at(graph.outputs[k].name);
      for (int64_t n = 0; n < e.size(); ++n) {
        const double a = actual[k].f[n], want = e.f[n];
        if (std::isnan(want) && std::isnan(a)) continue;
        const double err = std::abs(a - want);
        max_abs = std::max(max_abs, err);
        max_rel = std::max(max_rel, err / std::max(1e-12, std::abs(want)));
        if (!(err <= 1e-5 + 1e-3 * std::abs(want))) {
          return absl::InternalError(absl::StrCat("output \"", graph.outputs[k].name, "\"[", n,
                                                  "] = ", a, ", the reference interpreter gives ",
                                                  want));
        }
      }
    }
  }
  const std::string json = absl::StrFormat(
      R"({"emulated":%s,"maxAbsError":%g,"maxRelError":%g,"samples":%d,"selftest":"passed"})",
      emulated ? "true" : "false", max_abs, max_rel, kSamples);
  RETURN_IF_ERROR(WriteFileAtomically(options.out_dir + "/validation.json", json + "\n"));
  return json;
}

}  // namespace edgeloop::compiler
