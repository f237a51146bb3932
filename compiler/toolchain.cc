#include "compiler/toolchain.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/status.h"

namespace edgeloop::compiler {

absl::StatusOr<Toolchain> ToolchainFor(const std::string& target) {
#if defined(__x86_64__)
  const bool host_x86 = true;
#else
  const bool host_x86 = false;
#endif
  Toolchain t;
  t.target = target;
  if (target == "x86_64-v1" || target == "x86_64-v2" || target == "x86_64-v3" ||
      target == "x86_64-v4") {
    t.cc = host_x86 ? "gcc" : "x86_64-linux-gnu-gcc";
    t.flags = {target == "x86_64-v1" ? "-march=x86-64"
                                     : absl::StrCat("-march=x86-64-", target.substr(7))};
    t.vector_floats = target == "x86_64-v4" ? 16 : target == "x86_64-v3" ? 8 : 4;
  } else if (target == "aarch64-v8" || target == "aarch64-v8.2-dotprod") {
    t.cc = "aarch64-linux-gnu-gcc";
    t.flags = {target == "aarch64-v8" ? "-march=armv8-a" : "-march=armv8.2-a+dotprod"};
    if (host_x86) t.runner = {"qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"};
  } else if (target == "armv7-neon") {
    t.cc = "arm-linux-gnueabihf-gcc";
    t.flags = {"-march=armv7-a", "-mfpu=neon", "-mfloat-abi=hard"};
    if (host_x86) t.runner = {"qemu-arm", "-L", "/usr/arm-linux-gnueabihf"};
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown target class \"", target, "\""));
  }
  return t;
}

absl::StatusOr<int> RunTool(const std::vector<std::string>& argv, const std::string& cwd,
                            const std::string& log, absl::Duration timeout,
                            const SyscallFilter* filter) {
  // Built before fork: the child only makes system calls.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (filter != nullptr && filter->Install() != 0) ::_exit(126);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  if (pid < 0) return absl::InternalError("fork failed");
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(
          absl::StrCat(argv[0], " did not finish within ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  if (WEXITSTATUS(status) == 127)
    return absl::NotFoundError(absl::StrCat(argv[0], " is not installed"));
  return WEXITSTATUS(status);
}

absl::Status CompileSharedObject(const Toolchain& toolchain, const std::string& c_file,
                                 const std::string& so_file, absl::Duration timeout) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(so_file).parent_path();
  std::vector<std::string> argv = {
      toolchain.cc, "-std=c99", "-O3", "-fPIC", "-shared", "-s", "-fvisibility=hidden",
      // ISO C mode turns off fused multiply-add contraction; the kernels are written for it.
      "-ffp-contract=fast", "-Wl,--build-id=none"};
  argv.insert(argv.end(), toolchain.flags.begin(), toolchain.flags.end());
  argv.insert(argv.end(), {"-o", fs::path(so_file).filename().string(),
                           fs::path(c_file).filename().string(), "-lm"});
  const std::string log = (dir / "compile.log").string();
  ASSIGN_OR_RETURN(int code, RunTool(argv, dir.string(), log, timeout));
  if (code != 0) {
    return absl::InternalError(absl::StrCat("C compiler failed for ", toolchain.target, ": ",
                                            ReadFile(log).value_or("").substr(0, 2000)));
  }
  return absl::OkStatus();
}

}  // namespace edgeloop::compiler
