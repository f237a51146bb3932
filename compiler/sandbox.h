#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "compiler/syscall_filter.h"

namespace edgeloop::compiler {

/// auto: use every control this machine allows and say which; require: refuse to start when
/// namespaces or the syscall filter are missing (docs/security.md).
enum class SandboxMode { kAuto, kRequire };
absl::StatusOr<SandboxMode> ParseSandboxMode(absl::string_view text);

/// Resource limits of every process of a sandboxed run (rlimits: per process, so each of gcc's
/// children gets its own; the wall-clock timeout of Run() bounds the whole run).
struct SandboxLimits {
  absl::Duration cpu_time = absl::Minutes(30);
  int64_t address_space_bytes = int64_t{8} << 30;
  int64_t file_size_bytes = int64_t{16} << 30;
  int64_t open_files = 1024;
  // Counted per user, so it only applies when the run has a user of its own (server as root).
  int64_t processes = 256;
};

struct SandboxOptions {
  SandboxMode mode = SandboxMode::kAuto;
  // Where scratch directories go when runs share the server's user. A server running as root
  // hands runs to `uid` instead, and their scratch directories go under /var/tmp (a path that
  // user can reach; one name per scratch_root, emptied at start).
  std::string scratch_root;
  std::string bwrap = "/usr/bin/bwrap";
  uid_t uid = 65534;  // nobody
  gid_t gid = 65534;  // nogroup
  SandboxLimits limits;
};

/// The controls a run gets on this machine, found by trying them when the sandbox is created.
struct SandboxControls {
  bool namespaces = false;  // bwrap: own user, mount, pid, network, IPC and UTS namespaces
  bool seccomp = false;     // SyscallFilter::ForCompile
  bool own_user = false;    // runs as SandboxOptions::uid, not as the server's user
  std::string why_not;      // what the probe said when namespaces or seccomp are missing
  std::string Describe() const;
};

/// Runs untrusted programs (the model compiler, which runs module code) so that they can touch
/// nothing but one scratch directory: a clean environment, rlimits, a session of their own that
/// dies with them, and where the machine allows, namespaces in which only /usr and the scratch
/// directory exist, no network, and a syscall filter. Thread-safe.
class Sandbox {
 public:
  static absl::StatusOr<std::unique_ptr<Sandbox>> Create(SandboxOptions options);
  ~Sandbox();

  const SandboxControls& controls() const { return controls_; }

  /// A new empty directory for one run (name: prefix + random suffix). The caller writes the
  /// inputs into it, Run()s, reads the results with ReadOutput() and Remove()s it.
  absl::StatusOr<std::string> NewScratch(absl::string_view prefix);

  /// Runs `program args...` in `scratch` (its working directory, HOME and TMPDIR, and the only
  /// place it can write), stdout and stderr to scratch/`log_name`. The exit code, 128 + signal
  /// when killed; DEADLINE_EXCEEDED after `timeout` (everything it started is killed);
  /// NOT_FOUND when the program does not exist.
  absl::StatusOr<int> Run(const std::string& program, const std::vector<std::string>& args,
                          const std::string& scratch, absl::string_view log_name,
                          absl::Duration timeout);

  /// A file a run left in `scratch`, opened without following any symbolic link (a hostile run
  /// can plant one to a server secret), a regular file of at most `max_bytes`.
  absl::StatusOr<std::string> ReadOutput(const std::string& scratch, absl::string_view relative,
                                         int64_t max_bytes) const;

  void Remove(const std::string& scratch) const;

 private:
  Sandbox(SandboxOptions options, std::string root) : options_(std::move(options)), root_(root) {}
  absl::StatusOr<int> RunWith(const SandboxControls& controls, const std::string& program,
                              const std::vector<std::string>& args, const std::string& scratch,
                              absl::string_view log_name, absl::Duration timeout);
  // Tries a trivial run with `controls`; empty when it worked, else what went wrong.
  std::string Probe(const SandboxControls& controls);

  SandboxOptions options_;
  std::string root_;  // scratch directories live here
  bool remove_root_ = false;
  std::optional<SyscallFilter> filter_;
  SandboxControls controls_;
};

}  // namespace edgeloop::compiler
