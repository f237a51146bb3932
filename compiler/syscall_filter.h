#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace edgeloop::compiler {

/// A seccomp-BPF program, compiled ahead (libseccomp allocates; a child between fork and exec of a
/// multithreaded server may not), to be installed where untrusted code is about to run.
class SyscallFilter {
 public:
  /// What a sandboxed compile may not do even as its own user in its own namespaces: open
  /// network sockets (only AF_UNIX), trace or read other processes, mount or enter namespaces,
  /// load BPF or kernel modules, reach the kernel keyring, io_uring, perf. Those calls fail with
  /// EPERM (EACCES for sockets); a call from another architecture's ABI kills the process.
  static absl::StatusOr<SyscallFilter> ForCompile();

  /// For a process about to run module code: no fork, vfork or non-thread clone, and no execve
  /// unless `allow_exec` (qemu-user starts by exec'ing the emulator; the module then runs inside
  /// it and cannot start anything else).
  static absl::StatusOr<SyscallFilter> NoNewProcesses(bool allow_exec);

  /// The raw program (struct sock_filter[]), as bwrap --seccomp reads it.
  const std::string& bpf() const { return bpf_; }

  /// Installs the filter on every thread of the calling process (no_new_privs set first). Only
  /// system calls, so it is safe between fork and exec. 0 or the errno.
  int Install() const;

 private:
  explicit SyscallFilter(std::string bpf) : bpf_(std::move(bpf)) {}
  std::string bpf_;
};

}  // namespace edgeloop::compiler
