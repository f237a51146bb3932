#include "compiler/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/random.h"
#include "common/sha256.h"
#include "common/status.h"

namespace edgeloop::compiler {
namespace fs = std::filesystem;

namespace {

// The fds a sandboxed program starts with: 0 /dev/null, 1 and 2 the log, 3 the program itself
// (executed as /proc/self/fd/3, so its path need not be reachable by the run's user) and, under
// bwrap, 4 the seccomp program.
constexpr int kProgramFd = 3;
constexpr int kSeccompFd = 4;

// An fd above the ones the child arranges, so that dup2 onto 0..4 never clobbers a source.
int HighFd(int fd) {
  if (fd < 0) return fd;
  int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 16);
  ::close(fd);
  return high;
}

struct Fds {
  int null = -1, log = -1, program = -1, seccomp = -1, report[2] = {-1, -1};
  ~Fds() {
    for (int fd : {null, log, program, seccomp, report[0], report[1]})
      if (fd >= 0) ::close(fd);
  }
};

// Everything the child needs, built before fork: a multithreaded parent's child may only make
// system calls (no allocation, no locks) until it execs.
struct ChildPlan {
  std::vector<std::string> argv_storage, env_storage;
  std::vector<char*> argv, env;
  std::string exec_path;  // bwrap, or empty to fexecve the program fd
  std::string scratch;
  std::vector<std::pair<int, rlimit>> limits;
  bool drop_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  const SyscallFilter* filter = nullptr;  // installed by the child itself (no bwrap)
  pid_t parent = 0;

  void Seal() {
    for (auto& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_storage) env.push_back(e.data());
    env.push_back(nullptr);
  }
};

[[noreturn]] void ChildFail(int report_fd, int err) {
  (void)!::write(report_fd, &err, sizeof err);
  ::_exit(125);
}

[[noreturn]] void RunChild(const ChildPlan& plan, const Fds& fds) {
  const int report = fds.report[1];
  ::setsid();
  if (::dup2(fds.null, 0) < 0 || ::dup2(fds.log, 1) < 0 || ::dup2(fds.log, 2) < 0 ||
      ::dup2(fds.program, kProgramFd) < 0)
    ChildFail(report, errno);
  if (fds.seccomp >= 0 && ::dup2(fds.seccomp, kSeccompFd) < 0) ChildFail(report, errno);
  // Nothing else of the server's (database, keys, sockets) crosses exec, CLOEXEC or not; the
  // report pipe is CLOEXEC and closes itself when the exec succeeds.
  const unsigned first_closed = fds.seccomp >= 0 ? kSeccompFd + 1 : kProgramFd + 1;
  ::close_range(first_closed, static_cast<unsigned>(report) - 1, 0);
  ::close_range(static_cast<unsigned>(report) + 1, ~0U, 0);
  for (const auto& [resource, limit] : plan.limits)
    if (::setrlimit(resource, &limit) != 0) ChildFail(report, errno);
  if (plan.drop_user) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(plan.gid) != 0 || ::setuid(plan.uid) != 0)
      ChildFail(report, errno);
  }
  // After the change of user, which clears it: the run dies with the server.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != plan.parent) ::_exit(125);
  if (::chdir(plan.scratch.c_str()) != 0) ChildFail(report, errno);
  ::umask(022);
  if (!plan.exec_path.empty()) {
    ::execve(plan.exec_path.c_str(), plan.argv.data(), plan.env.data());
    ChildFail(report, errno);
  }
  if (plan.filter != nullptr) {
    if (int err = plan.filter->Install(); err != 0) ChildFail(report, err);
  }
  ::fexecve(kProgramFd, plan.argv.data(), plan.env.data());
  ChildFail(report, errno);
}

// Waits for `pid` until `deadline`; false when the deadline came first.
// True once `pid` exited, false at the deadline. It is not reaped: until the caller waits for
// it, its pid and process group cannot be given to another process, so killing the group
// afterwards hits only what the run started.
bool WaitFor(pid_t pid, absl::Time deadline) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid)
      break;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      if (pidfd >= 0) ::close(pidfd);
      return false;
    }
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1000)));
    } else {
      ::usleep(2000);  // kernels before 5.3 have no pidfd
    }
  }
  if (pidfd >= 0) ::close(pidfd);
  return true;
}

rlimit Limit(int64_t soft, int64_t hard) {
  rlimit l{};
  l.rlim_cur = static_cast<rlim_t>(soft);
  l.rlim_max = static_cast<rlim_t>(hard);
  return l;
}

// Opens `relative` below the directory `dir_fd`, one component at a time, refusing symbolic
// links (O_NOFOLLOW) and ".." so the answer is always inside the scratch directory.
absl::StatusOr<int> OpenBeneath(int dir_fd, absl::string_view relative) {
  std::vector<absl::string_view> parts = absl::StrSplit(relative, '/', absl::SkipEmpty());
  if (parts.empty()) return absl::InvalidArgumentError("empty path");
  int current = ::dup(dir_fd);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i] == ".." || parts[i] == ".") {
      ::close(current);
      return absl::InvalidArgumentError(absl::StrCat("path ", relative, " leaves the scratch"));
    }
    const bool last = i + 1 == parts.size();
    const int flags = O_NOFOLLOW | O_CLOEXEC | (last ? O_RDONLY | O_NONBLOCK : O_PATH | O_DIRECTORY);
    const int next = ::openat(current, std::string(parts[i]).c_str(), flags);
    const int err = errno;
    ::close(current);
    if (next < 0) {
      return ErrnoStatus(absl::StrCat("open ", relative, err == ELOOP ? " (a symbolic link)" : ""),
                         err);
    }
    current = next;
  }
  return current;
}

}  // namespace

absl::StatusOr<SandboxMode> ParseSandboxMode(absl::string_view text) {
  if (text == "auto") return SandboxMode::kAuto;
  if (text == "require") return SandboxMode::kRequire;
  return absl::InvalidArgumentError(
      absl::StrCat("compile sandbox \"", text, "\": expected auto or require"));
}

std::string SandboxControls::Describe() const {
  std::vector<std::string> parts;
  parts.push_back(namespaces ? "namespaces (bwrap: only /usr and the scratch directory, no network)"
                             : "no namespaces");
  parts.push_back(seccomp ? "seccomp filter" : "no seccomp filter");
  parts.push_back(own_user ? "own user" : "the server's user");
  parts.push_back("clean environment, rlimits");
  std::string text = absl::StrJoin(parts, ", ");
  if (!why_not.empty()) absl::StrAppend(&text, " (", why_not, ")");
  return text;
}

absl::StatusOr<std::unique_ptr<Sandbox>> Sandbox::Create(SandboxOptions options) {
  const bool own_user = ::geteuid() == 0;
  std::string root = options.scratch_root;
  bool remove_root = false;
  if (own_user) {
    // The run's user must reach its scratch directory, and the server's data directory (0700)
    // is exactly what it must not reach: a root of its own under /var/tmp, traversable (0711)
    // but not listable, one per data directory, emptied at start (a kill -9 leaves it behind).
    const char* tmp = ::getenv("TMPDIR");
    root = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/var/tmp", "/edgeloop-compile-",
                        Sha256Hex(options.scratch_root).substr(0, 12));
    std::error_code ec;
    fs::remove_all(root, ec);
    if (::mkdir(root.c_str(), 0711) != 0)
      return ErrnoStatus(absl::StrCat("create the sandbox's scratch root ", root), errno);
    struct stat st {};
    if (::lstat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0)
      return absl::FailedPreconditionError(absl::StrCat(root, " is not a directory root owns"));
    ::chmod(root.c_str(), 0711);
    remove_root = true;
  } else {
    RETURN_IF_ERROR(MakeDirectories(root, 0700));
  }
  std::unique_ptr<Sandbox> sandbox(new Sandbox(std::move(options), root));
  sandbox->remove_root_ = remove_root;

  std::vector<std::string> why_not;
  auto filter = SyscallFilter::ForCompile();
  if (filter.ok()) {
    sandbox->filter_ = std::move(*filter);
  } else {
    why_not.push_back(std::string(filter.status().message()));
  }
  // The strongest set of controls that works here, tried in order.
  std::optional<SandboxControls> chosen;
  for (bool namespaces : {true, false}) {
    for (bool seccomp : {true, false}) {
      if (chosen || (seccomp && !sandbox->filter_)) continue;
      SandboxControls candidate{namespaces, seccomp, own_user, ""};
      std::string failure = sandbox->Probe(candidate);
      if (failure.empty()) {
        chosen = candidate;
      } else if (std::find(why_not.begin(), why_not.end(), failure) == why_not.end()) {
        why_not.push_back(failure);
      }
    }
  }
  if (!chosen) {
    return absl::FailedPreconditionError(absl::StrCat("no sandboxed run works on this machine: ",
                                                      absl::StrJoin(why_not, "; ")));
  }
  if (!chosen->namespaces || !chosen->seccomp) chosen->why_not = absl::StrJoin(why_not, "; ");
  if (sandbox->options_.mode == SandboxMode::kRequire &&
      (!chosen->namespaces || !chosen->seccomp)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the compile sandbox is required but has ", chosen->Describe(),
        " (install bubblewrap, allow unprivileged user namespaces; see docs/security.md)"));
  }
  sandbox->controls_ = *chosen;
  return sandbox;
}

Sandbox::~Sandbox() {
  if (remove_root_) {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
}

std::string Sandbox::Probe(const SandboxControls& controls) {
  auto scratch = NewScratch("probe-");
  if (!scratch.ok()) return std::string(scratch.status().message());
  auto ran = RunWith(controls, "/usr/bin/true", {}, *scratch, "probe.log", absl::Seconds(30));
  std::string failure;
  if (!ran.ok()) {
    failure = std::string(ran.status().message());
  } else if (*ran != 0) {
    std::string log = ReadOutput(*scratch, "probe.log", 4096).value_or("");
    failure = absl::StrCat(controls.namespaces ? "bwrap" : "a plain run",
                           controls.seccomp ? " with seccomp" : "", " failed (exit ", *ran, ")",
                           log.empty() ? "" : ": ",
                           absl::StripTrailingAsciiWhitespace(log));
  }
  Remove(*scratch);
  return failure;
}

absl::StatusOr<std::string> Sandbox::NewScratch(absl::string_view prefix) {
  // A name nobody can guess, created 0700 by the server: the inputs are written before the run's
  // user gets the directory (Run hands it over).
  const std::string dir = absl::StrCat(root_, "/", prefix, RandomHex(8));
  if (::mkdir(dir.c_str(), 0700) != 0) return ErrnoStatus(absl::StrCat("mkdir ", dir), errno);
  return dir;
}

void Sandbox::Remove(const std::string& scratch) const {
  std::error_code ec;
  fs::remove_all(scratch, ec);
}

absl::StatusOr<int> Sandbox::Run(const std::string& program, const std::vector<std::string>& args,
                                 const std::string& scratch, absl::string_view log_name,
                                 absl::Duration timeout) {
  return RunWith(controls_, program, args, scratch, log_name, timeout);
}

absl::StatusOr<int> Sandbox::RunWith(const SandboxControls& controls, const std::string& program,
                                     const std::vector<std::string>& args,
                                     const std::string& scratch, absl::string_view log_name,
                                     absl::Duration timeout) {
  Fds fds;
  fds.program = HighFd(::open(program.c_str(), O_RDONLY | O_CLOEXEC));
  if (fds.program < 0) {
    return errno == ENOENT ? absl::NotFoundError(absl::StrCat(program, " is not installed"))
                           : ErrnoStatus(absl::StrCat("open ", program), errno);
  }
  const std::string log = absl::StrCat(scratch, "/", log_name);
  fds.log = HighFd(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (fds.log < 0) return ErrnoStatus(absl::StrCat("create ", log), errno);
  fds.null = HighFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (::pipe2(fds.report, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  fds.report[1] = HighFd(fds.report[1]);
  if (fds.report[1] < 0) return ErrnoStatus("pipe", errno);

  ChildPlan plan;
  plan.scratch = scratch;
  plan.parent = ::getpid();
  plan.env_storage = {"PATH=/usr/bin:/bin", absl::StrCat("HOME=", scratch),
                      absl::StrCat("TMPDIR=", scratch), "LC_ALL=C"};
  const SandboxLimits& l = options_.limits;
  const int64_t cpu = absl::ToInt64Seconds(l.cpu_time);
  plan.limits = {{RLIMIT_CPU, Limit(cpu, cpu + 5)},
                 {RLIMIT_AS, Limit(l.address_space_bytes, l.address_space_bytes)},
                 {RLIMIT_FSIZE, Limit(l.file_size_bytes, l.file_size_bytes)},
                 {RLIMIT_NOFILE, Limit(l.open_files, l.open_files)},
                 {RLIMIT_CORE, Limit(0, 0)}};
  if (controls.own_user) {
    plan.limits.push_back({RLIMIT_NPROC, Limit(l.processes, l.processes)});
    plan.drop_user = true;
    plan.uid = options_.uid;
    plan.gid = options_.gid;
    if (::chown(scratch.c_str(), options_.uid, options_.gid) != 0)
      return ErrnoStatus(absl::StrCat("chown ", scratch), errno);
  }
  const std::string program_path = absl::StrCat("/proc/self/fd/", kProgramFd);
  if (controls.namespaces) {
    if (controls.seccomp) {
      fds.seccomp = HighFd(::memfd_create("compile-seccomp", MFD_CLOEXEC));
      if (fds.seccomp < 0) return ErrnoStatus("memfd_create", errno);
      const std::string& bpf = filter_->bpf();
      if (::write(fds.seccomp, bpf.data(), bpf.size()) != static_cast<ssize_t>(bpf.size()))
        return ErrnoStatus("write the seccomp program", errno);
      ::lseek(fds.seccomp, 0, SEEK_SET);
    }
    plan.exec_path = options_.bwrap;
    plan.argv_storage = {
        options_.bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
        "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
        "--bind", scratch, scratch, "--chdir", scratch};
    if (controls.seccomp)
      plan.argv_storage.insert(plan.argv_storage.end(), {"--seccomp", std::to_string(kSeccompFd)});
    plan.argv_storage.insert(plan.argv_storage.end(), {"--", program_path});
  } else {
    plan.argv_storage = {program};
    if (controls.seccomp) plan.filter = &*filter_;
  }
  plan.argv_storage.insert(plan.argv_storage.end(), args.begin(), args.end());
  plan.Seal();

  const absl::Time deadline = absl::Now() + timeout;
  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus("fork", errno);
  if (pid == 0) RunChild(plan, fds);
  ::close(fds.report[1]);
  fds.report[1] = -1;
  int setup_error = 0;
  const ssize_t got = ::read(fds.report[0], &setup_error, sizeof setup_error);
  int status = 0;
  const bool finished = WaitFor(pid, deadline);
  // The child leads its own session (and under bwrap its own pid namespace, which dies with
  // it): nothing it started outlives the run.
  ::kill(-pid, SIGKILL);
  if (!finished) ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  // Until they are gone (reaped by init), the killed still count against the run user's
  // process limit: the next run starts when they are.
  for (int i = 0; i < 5000 && ::kill(-pid, 0) == 0; ++i) ::usleep(1000);
  if (!finished) {
    return absl::DeadlineExceededError(absl::StrCat(fs::path(program).filename().string(),
                                                    " did not finish within ",
                                                    absl::FormatDuration(timeout)));
  }
  if (got == static_cast<ssize_t>(sizeof setup_error)) {
    return ErrnoStatus(
        absl::StrCat("start ", plan.exec_path.empty() ? program : plan.exec_path, " in the sandbox"),
        setup_error);
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

absl::StatusOr<std::string> Sandbox::ReadOutput(const std::string& scratch,
                                                absl::string_view relative,
                                                int64_t max_bytes) const {
  const int dir = ::open(scratch.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir < 0) return ErrnoStatus(absl::StrCat("open ", scratch), errno);
  auto opened = OpenBeneath(dir, relative);
  ::close(dir);
  if (!opened.ok()) return opened.status();
  const int fd = *opened;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(relative, " is not a regular file"));
  }
  if (st.st_size > max_bytes) {
    ::close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat(relative, " has ", st.st_size, " bytes, more than ", max_bytes));
  }
  std::string bytes;
  bytes.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  bytes.resize(done);
  return bytes;
}

}  // namespace edgeloop::compiler
