#include "compiler/module_runner.h"

#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace edgeloop::compiler {

extern const char kModuleAbiHeader[];
extern const char kModuleRunner[];

absl::StatusOr<std::unique_ptr<EmulatedModule>> EmulatedModule::Create(
    const Toolchain& toolchain, const std::string& so_path, const std::string& work_dir) {
  // The tools run inside work_dir, so every path they get is absolute.
  const std::string dir = std::filesystem::absolute(work_dir).string();
  const std::string so = std::filesystem::absolute(so_path).string();
  RETURN_IF_ERROR(MakeDirectories(dir));
  const std::string source = dir + "/elm_runner.c";
  RETURN_IF_ERROR(WriteFileAtomically(source, absl::StrCat(kModuleAbiHeader, kModuleRunner)));
  const std::string runner = dir + "/elm-runner";
  const std::string log = dir + "/runner-build.log";
  ASSIGN_OR_RETURN(int code, RunTool({toolchain.cc, "-std=c99", "-O1", "-o", runner, source, "-ldl"},
                                     dir, log, absl::Minutes(2)));
  if (code != 0) {
    return absl::InternalError(absl::StrCat("building elm-runner with ", toolchain.cc, " failed: ",
                                            ReadFile(log).value_or("").substr(0, 1000)));
  }
  return std::unique_ptr<EmulatedModule>(new EmulatedModule(toolchain, so, dir, runner));
}

absl::StatusOr<int> EmulatedModule::SelfTest() {
  std::vector<std::string> argv = toolchain_.runner;
  argv.insert(argv.end(), {runner_, so_path_, "selftest"});
  ASSIGN_OR_RETURN(SyscallFilter filter, SyscallFilter::NoNewProcesses(/*allow_exec=*/true));
  return RunTool(argv, work_dir_, work_dir_ + "/selftest.log", absl::Minutes(5), &filter);
}

absl::StatusOr<std::vector<std::vector<Tensor>>> EmulatedModule::Run(
    const std::vector<std::vector<const Tensor*>>& samples,
    const std::vector<std::vector<int64_t>>& output_shapes) {
  std::vector<std::string> argv = toolchain_.runner;
  argv.insert(argv.end(), {runner_, so_path_, "run", std::to_string(samples.size())});
  const size_t num_inputs = samples.empty() ? 0 : samples[0].size();
  for (size_t k = 0; k < num_inputs; ++k) {
    std::string bytes;
    for (const auto& sample : samples) {
      bytes.append(reinterpret_cast<const char*>(sample[k]->f.data()),
                   sample[k]->f.size() * sizeof(float));
    }
    const std::string path = absl::StrCat(work_dir_, "/in", k, ".bin");
    RETURN_IF_ERROR(WriteFileAtomically(path, bytes));
    argv.push_back(path);
  }
  for (size_t k = 0; k < output_shapes.size(); ++k)
    argv.push_back(absl::StrCat(work_dir_, "/out", k, ".bin"));
  // Module code runs in elm-runner: it may exec qemu, then start nothing else.
  ASSIGN_OR_RETURN(SyscallFilter filter, SyscallFilter::NoNewProcesses(/*allow_exec=*/true));
  ASSIGN_OR_RETURN(int code,
                   RunTool(argv, work_dir_, work_dir_ + "/run.log", absl::Minutes(5), &filter));
  if (code != 0) return absl::InternalError(absl::StrCat("elm-runner exited with ", code));
  std::vector<std::vector<Tensor>> outputs(samples.size(),
                                           std::vector<Tensor>(output_shapes.size()));
  for (size_t k = 0; k < output_shapes.size(); ++k) {
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(absl::StrCat(work_dir_, "/out", k, ".bin")));
    const int64_t size = ElementCount(output_shapes[k]);
    if (static_cast<int64_t>(bytes.size()) != size * 4 * static_cast<int64_t>(samples.size()))
      return absl::InternalError("elm-runner wrote short outputs");
    for (size_t s = 0; s < samples.size(); ++s) {
      Tensor& t = outputs[s][k];
      t.shape = output_shapes[k];
      t.f.resize(size);
      std::memcpy(t.f.data(), bytes.data() + s * size * 4, size * 4);
    }
  }
  return outputs;
}

}  // namespace edgeloop::compiler
