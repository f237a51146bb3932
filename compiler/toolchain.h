#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "compiler/syscall_filter.h"

namespace edgeloop::compiler {

/// How a target class is built: the C compiler and its flags, and how its code can be run on
/// this machine (natively, or under qemu-user for cross targets).
struct Toolchain {
  std::string target;
  std::string cc;                   // e.g. "gcc", "aarch64-linux-gnu-gcc"
  std::vector<std::string> flags;   // -march=... and friends
  std::vector<std::string> runner;  // prefix to run a binary for this target; empty = native
  int vector_floats = 4;            // floats per SIMD register: 4 SSE/NEON, 8 AVX2, 16 AVX-512
};

/// The toolchain for a target class; INVALID_ARGUMENT for an unknown class.
absl::StatusOr<Toolchain> ToolchainFor(const std::string& target);

/// Compiles `c_file` into the shared object `so_file` (working directory: its directory, so
/// no path leaks into the output and the bytes only depend on the source). DEADLINE_EXCEEDED
/// after `timeout`; INTERNAL with the compiler's messages when it fails.
absl::Status CompileSharedObject(const Toolchain& toolchain, const std::string& c_file,
                                 const std::string& so_file, absl::Duration timeout);

/// Runs a program (argv[0] looked up in PATH) in `cwd` with its output in `log`; its exit code
/// (128 + signal when killed by one). DEADLINE_EXCEEDED after `timeout` (the program is killed);
/// NOT_FOUND when the program is not installed. `filter`, when given, is installed in the child
/// before it execs (for programs that run module code).
absl::StatusOr<int> RunTool(const std::vector<std::string>& argv, const std::string& cwd,
                            const std::string& log, absl::Duration timeout,
                            const SyscallFilter* filter = nullptr);

}  // namespace edgeloop::compiler
