#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "compiler/validation_set.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop::compiler {

struct CompileOptions {
  std::string target = "x86_64-v2";  // target class
  std::string out_dir;               // receives module.c, module.so, manifest.json
  absl::Duration timeout = absl::Minutes(10);
  /// The features the reference statistics cover; empty: DefaultMonitoredFeatures.
  std::vector<v1::MonitoredFeature> monitored_features;
};

struct CompileResult {
  std::string so_path;
  std::string manifest_json;  // canonical: fixed key order, no whitespace
  std::string so_digest;      // "sha256:..."
  int64_t so_bytes = 0;
  uint64_t workspace_bytes = 0;
  uint64_t weight_bytes = 0;
  int runtime_nodes = 0, folded_nodes = 0, fused_nodes = 0;
  double seconds = 0;
};

/// The compiler's version, recorded in every manifest.
const char* CompilerVersion();

/// ONNX bytes → module for one target class: import, fold, fuse, plan, generate C, compile
/// with the target's toolchain, write the manifest. Deterministic: the same model and target
/// give the same module.so bytes and manifest. Errors name the stage and the reason.
absl::StatusOr<CompileResult> CompileModel(const std::string& onnx_bytes,
                                           const CompileOptions& options);

/// Checks a compiled module before anyone runs it: its embedded self-test, then its outputs
/// against the reference interpreter (rtol 1e-3, atol 1e-5) on the validation set's samples,
/// or on a few generated inputs without one; with labels, the top-1 accuracy of the module and
/// of the reference interpreter. Writes and returns validation.json. Native modules run in
/// this process, so callers that must survive a broken module run this in a child process
/// (edgeloop-compile --validate); cross-compiled ones run in elm-runner under qemu-user and
/// are marked "emulated". With a set and `reference`, also computes the version's reference
/// statistics on its default monitored features from the same reference outputs.
absl::StatusOr<std::string> ValidateModule(const std::string& onnx_bytes,
                                           const CompileResult& compiled,
                                           const CompileOptions& options,
                                           const ValidationSet* set = nullptr,
                                           v1::ReferenceStatistics* reference = nullptr);

}  // namespace edgeloop::compiler
