#include "compiler/syscall_filter.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace edgeloop::compiler {
namespace {

using Context = std::unique_ptr<void, void (*)(scmp_filter_ctx)>;

absl::Status Check(int rc, const char* what) {
  if (rc == 0) return absl::OkStatus();
  return ErrnoStatus(absl::StrCat("seccomp ", what), -rc);
}

// Adds `action` for every named call this architecture has (names keep the list portable:
// aarch64 has no fork or vfork, for example).
absl::Status AddAll(scmp_filter_ctx ctx, uint32_t action, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    const int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;
    if (int rc = seccomp_rule_add(ctx, action, nr, 0); rc != 0) return Check(rc, name);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Export(scmp_filter_ctx ctx) {
  int fd = ::memfd_create("seccomp-bpf", MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus("memfd_create", errno);
  std::string bpf;
  int rc = seccomp_export_bpf(ctx, fd);
  if (rc == 0) {
    ::lseek(fd, 0, SEEK_SET);
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof buffer)) > 0) bpf.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  RETURN_IF_ERROR(Check(rc, "export"));
  if (bpf.empty() || bpf.size() % sizeof(sock_filter) != 0)
    return absl::InternalError("seccomp export produced no program");
  return bpf;
}

}  // namespace

absl::StatusOr<SyscallFilter> SyscallFilter::ForCompile() {
  Context ctx(seccomp_init(SCMP_ACT_ALLOW), seccomp_release);
  if (!ctx) return absl::InternalError("seccomp_init failed");
  // no_new_privs is set by bwrap or by Install(); the exported program does not carry it.
  RETURN_IF_ERROR(Check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0), "attr"));
  RETURN_IF_ERROR(AddAll(
      ctx.get(), SCMP_ACT_ERRNO(EPERM),
      {"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
       "mount", "umount", "umount2", "pivot_root", "chroot", "setns", "unshare", "move_mount",
       "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
       "open_by_handle_at", "name_to_handle_at", "bpf", "perf_event_open", "userfaultfd",
       "keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module",
       "finit_module", "delete_module", "io_uring_setup", "io_uring_enter", "io_uring_register",
       "swapon", "swapoff", "reboot", "syslog", "acct", "quotactl", "iopl", "ioperm",
       "fanotify_init", "lookup_dcookie", "settimeofday", "clock_settime", "adjtimex"}));
  // Sockets: only AF_UNIX (the network namespace already has nothing else to reach; without
  // one this is what keeps a compile off the network).
  RETURN_IF_ERROR(Check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1,
                                         SCMP_A0(SCMP_CMP_NE, AF_UNIX)),
                        "socket"));
  // New namespaces: clone's flags can be checked, clone3's (a pointer) cannot, so clone3 says
  // ENOSYS and glibc falls back to clone.
  for (uint64_t flag : {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWIPC,
                        CLONE_NEWUTS, CLONE_NEWCGROUP}) {
    RETURN_IF_ERROR(Check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                           SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)),
                          "clone"));
  }
  RETURN_IF_ERROR(AddAll(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), {"clone3"}));
  ASSIGN_OR_RETURN(std::string bpf, Export(ctx.get()));
  return SyscallFilter(std::move(bpf));
}

absl::StatusOr<SyscallFilter> SyscallFilter::NoNewProcesses(bool allow_exec) {
  Context ctx(seccomp_init(SCMP_ACT_ALLOW), seccomp_release);
  if (!ctx) return absl::InternalError("seccomp_init failed");
  RETURN_IF_ERROR(Check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0), "attr"));
  RETURN_IF_ERROR(AddAll(ctx.get(), SCMP_ACT_ERRNO(EPERM), {"fork", "vfork"}));
  if (!allow_exec) RETURN_IF_ERROR(AddAll(ctx.get(), SCMP_ACT_ERRNO(EPERM), {"execve", "execveat"}));
  // Threads are clone(CLONE_THREAD); anything else is a new process.
  RETURN_IF_ERROR(Check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                         SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0)),
                        "clone"));
  RETURN_IF_ERROR(AddAll(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), {"clone3"}));
  ASSIGN_OR_RETURN(std::string bpf, Export(ctx.get()));
  return SyscallFilter(std::move(bpf));
}

int SyscallFilter::Install() const {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  sock_fprog program{};
  program.len = static_cast<unsigned short>(bpf_.size() / sizeof(sock_filter));
  program.filter = reinterpret_cast<sock_filter*>(const_cast<char*>(bpf_.data()));
  // TSYNC: the filter holds for every thread, not only the caller (a positive answer names a
  // thread that could not be synchronized).
  const long rc =
      ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program);
  if (rc < 0) return errno;
  return rc == 0 ? 0 : EBUSY;
}

}  // namespace edgeloop::compiler
