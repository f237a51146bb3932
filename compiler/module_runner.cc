#include "compiler/module_runner.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace edgeloop::compiler {

extern const char kModuleAbiHeader[];
extern const char kModuleRunner[];

absl::StatusOr<std::unique_ptr<EmulatedModule>> EmulatedModule::Create(
    const Toolchain& toolchain, const std::string& so_path, const std::string& work_dir) {
  RETURN_IF_ERROR(MakeDirectories(work_dir));
  const std::string source = work_dir + "/elm_runner.c";
  RETURN_IF_ERROR(WriteFileAtomically(source, absl::StrCat(kModuleAbiHeader, kModuleRunner)));
  const std::string runner = work_dir + "/elm-runner";
  RETURN_IF_ERROR(RunTool({toolchain.cc, "-std=c99", "-O1", "-o", runner, source, "-ldl"}, work_dir,
                          work_dir + "/runner-build.log", absl::Minutes(2))
                      .status());
  return std::unique_ptr<EmulatedModule>(new EmulatedModule(toolchain, so_path, work_dir, runner));
}

absl::StatusOr<int> EmulatedModule::SelfTest() {
  std::vector<std::string> argv = toolchain_.runner;
  argv.insert(argv.end(), {runner_, so_path_, "selftest"});
  return RunTool(argv, work_dir_, work_dir_ + "/selftest.log", absl::Minutes(5));
}

absl::StatusOr<std::vector<Tensor>> EmulatedModule::Run(
    const std::vector<const Tensor*>& inputs,
    const std::vector<std::vector<int64_t>>& output_shapes) {
  std::vector<std::string> argv = toolchain_.runner;
  argv.insert(argv.end(), {runner_, so_path_, "run"});
  for (size_t k = 0; k < inputs.size(); ++k) {
    const std::string path = absl::StrCat(work_dir_, "/in", k, ".bin");
    RETURN_IF_ERROR(
        WriteFileAtomically(path, std::string(reinterpret_cast<const char*>(inputs[k]->f.data()),
                                              inputs[k]->f.size() * sizeof(float))));
    argv.push_back(path);
  }
  for (size_t k = 0; k < output_shapes.size(); ++k)
    argv.push_back(absl::StrCat(work_dir_, "/out", k, ".bin"));
  ASSIGN_OR_RETURN(int code, RunTool(argv, work_dir_, work_dir_ + "/run.log", absl::Minutes(5)));
  if (code != 0) return absl::InternalError(absl::StrCat("elm-runner exited with ", code));
  std::vector<Tensor> outputs(output_shapes.size());
  for (size_t k = 0; k < output_shapes.size(); ++k) {
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(absl::StrCat(work_dir_, "/out", k, ".bin")));
    outputs[k].shape = output_shapes[k];
    if (static_cast<int64_t>(bytes.size()) != outputs[k].size() * 4)
      return absl::InternalError("short output");
    outputs[k].f.resize(outputs[k].size());
    std::memcpy(outputs[k].f.data(), bytes.data(), bytes.size());
  }
  return outputs;
}

}  // namespace edgeloop::compiler
