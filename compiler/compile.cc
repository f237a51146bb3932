#include "compiler/compile.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status.h"
#include "compiler/c_backend.h"
#include "compiler/onnx_import.h"
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
  ASSIGN_OR_RETURN(GeneratedModule generated, GenerateC(graph, {model_digest, options.target}));
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

}  // namespace edgeloop::compiler
