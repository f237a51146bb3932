#include "compiler/compile.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/monitored_feature.h"
#include "common/sha256.h"
#include "common/status.h"
#include "compiler/c_backend.h"
#include "compiler/module_loader.h"
#include "compiler/module_runner.h"
#include "compiler/onnx_import.h"
#include "compiler/reference_interpreter.h"
#include "compiler/reference_statistics.h"
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

namespace {

int64_t ArgMax(const Tensor& t) {
  return std::max_element(t.f.begin(), t.f.end()) - t.f.begin();
}

}  // namespace

absl::StatusOr<std::string> ValidateModule(const std::string& onnx_bytes,
                                           const CompileResult& compiled,
                                           const CompileOptions& options,
                                           const ValidationSet* set,
                                           v1::ReferenceStatistics* reference) {
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

  // The version's validation set, or a few generated inputs in [-2, 2) without one.
  std::vector<std::map<std::string, Tensor>> samples;
  if (set != nullptr) {
    samples = set->samples;
  } else {
    uint32_t state = 777;
    for (int sample = 0; sample < 4; ++sample) {
      std::map<std::string, Tensor> inputs;
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
      samples.push_back(std::move(inputs));
    }
  }
  std::vector<std::vector<const Tensor*>> ordered(samples.size());
  for (size_t s = 0; s < samples.size(); ++s) {
    for (const ValueInfo& info : graph.inputs) ordered[s].push_back(&samples[s].at(info.name));
  }
  std::vector<std::vector<Tensor>> actual;
  if (emulated) {
    std::vector<std::vector<int64_t>> output_shapes;
    for (const ValueInfo& o : graph.outputs) output_shapes.push_back(o.shape);
    ASSIGN_OR_RETURN(actual, emulator->Run(ordered, output_shapes));
  } else {
    for (const auto& inputs : ordered) {
      ASSIGN_OR_RETURN(std::vector<Tensor> outputs, native->Run(inputs));
      actual.push_back(std::move(outputs));
    }
  }

  double max_abs = 0, max_rel = 0;
  int64_t correct = 0, reference_correct = 0;
  const bool labelled = set != nullptr && !set->labels.empty() && !graph.outputs.empty();
  ReferenceRun reference_run;
  for (size_t s = 0; s < samples.size(); ++s) {
    ASSIGN_OR_RETURN(auto expected, RunReference(graph, samples[s]));
    if (set != nullptr && !graph.outputs.empty()) {
      reference_run.first_outputs.push_back(expected.at(graph.outputs[0].name));
    }
    for (size_t k = 0; k < graph.outputs.size(); ++k) {
      const Tensor& e = expected.at(graph.outputs[k].name);
      for (int64_t n = 0; n < e.size(); ++n) {
        const double a = actual[s][k].f[n], want = e.f[n];
        if (std::isnan(want) && std::isnan(a)) continue;
        const double err = std::abs(a - want);
        max_abs = std::max(max_abs, err);
        max_rel = std::max(max_rel, err / std::max(1e-12, std::abs(want)));
        if (!(err <= 1e-5 + 1e-3 * std::abs(want))) {
          return absl::InternalError(absl::StrCat(
              set != nullptr ? absl::StrCat("validation sample ", s, ": ") : "", "output \"",
              graph.outputs[k].name, "\"[", n, "] = ", a, ", the reference interpreter gives ",
              want));
        }
      }
    }
    if (labelled) {
      correct += ArgMax(actual[s][0]) == set->labels[s];
      reference_correct += ArgMax(expected.at(graph.outputs[0].name)) == set->labels[s];
    }
  }
  if (set != nullptr && reference != nullptr && !graph.outputs.empty()) {
    reference_run.inputs = samples;
    if (labelled) reference_run.labels = set->labels;
    std::vector<std::pair<std::string, std::vector<int64_t>>> inputs;
    for (const ValueInfo& info : graph.inputs) inputs.emplace_back(info.name, info.shape);
    // The reference is for monitoring; a set it cannot be computed on (a NaN input) still
    // validates the module, and the version then takes its reference from the fleet.
    absl::StatusOr<v1::ReferenceStatistics> computed = ComputeReferenceStatistics(
        reference_run, options.monitored_features.empty() ? DefaultMonitoredFeatures(inputs)
                                                          : options.monitored_features);
    if (computed.ok()) {
      *reference = *std::move(computed);
    } else {
      Log(LogLevel::kWarning, "no reference statistics from the validation set",
          {{"error", computed.status().ToString()}});
    }
  }
  std::string json = "{";
  if (labelled) {
    absl::StrAppendFormat(&json, R"("accuracy":%.6g,)",
                          static_cast<double>(correct) / std::max<size_t>(1, samples.size()));
  }
  absl::StrAppendFormat(&json, R"("emulated":%s,"inputs":"%s","maxAbsError":%g,"maxRelError":%g,)",
                        emulated ? "true" : "false", set != nullptr ? "validation set" : "generated",
                        max_abs, max_rel);
  if (labelled) {
    absl::StrAppendFormat(
        &json, R"("referenceAccuracy":%.6g,)",
        static_cast<double>(reference_correct) / std::max<size_t>(1, samples.size()));
  }
  absl::StrAppendFormat(&json, R"("samples":%d,"selftest":"passed")", samples.size());
  if (set != nullptr) absl::StrAppendFormat(&json, R"(,"setSamples":%d)", set->total_samples);
  json += "}";
  RETURN_IF_ERROR(WriteFileAtomically(options.out_dir + "/validation.json", json + "\n"));
  return json;
}

}  // namespace edgeloop::compiler
