// The sandbox against a probe that tries what a hostile compile would. Each refusal is checked
// next to the same probe run without the sandbox, so a test fails if the probe cannot do the
// thing at all.
#include "compiler/sandbox.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/random.h"
#include "compiler/syscall_filter.h"
#include "compiler/toolchain.h"
#include "compiler/testing/onnx_models.h"
#include "gtest/gtest.h"

namespace edgeloop::compiler {
namespace {

namespace fs = std::filesystem;

// Each test runs twice: with bwrap, and as on a machine without it (the fallback controls).
class SandboxTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    root_ = absl::StrCat(fs::temp_directory_path().string(), "/sandbox_test-", RandomHex(6));
    ASSERT_TRUE(MakeDirectories(root_ + "/data", 0700).ok());
    ASSERT_TRUE(WriteFileAtomically(root_ + "/data/signing.key", "secret").ok());
    ASSERT_TRUE(MakeDirectories(root_ + "/outside", 0755).ok());
    Start(SandboxOptions{});
  }
  void TearDown() override {
    sandbox_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void Start(SandboxOptions options) {
    sandbox_.reset();
    options.scratch_root = root_ + "/data/compile";
    options.bwrap = GetParam();
    auto sandbox = Sandbox::Create(options);
    ASSERT_TRUE(sandbox.ok()) << sandbox.status();
    sandbox_ = std::move(*sandbox);
    auto scratch = sandbox_->NewScratch("test-");
    ASSERT_TRUE(scratch.ok()) << scratch.status();
    scratch_ = *scratch;
    std::printf("sandbox controls: %s\n", sandbox_->controls().Describe().c_str());
  }

  int Sandboxed(std::vector<std::string> args, absl::Duration timeout = absl::Seconds(60)) {
    auto ran = sandbox_->Run(EDGELOOP_SANDBOX_PROBE, args, scratch_, "probe.log", timeout);
    EXPECT_TRUE(ran.ok()) << ran.status();
    log_ = sandbox_->ReadOutput(scratch_, "probe.log", 1 << 20).value_or("");
    return ran.value_or(-1);
  }
  int Plain(std::vector<std::string> args) {
    args.insert(args.begin(), EDGELOOP_SANDBOX_PROBE);
    auto ran = RunTool(args, root_, root_ + "/plain.log", absl::Seconds(60));
    EXPECT_TRUE(ran.ok()) << ran.status();
    return ran.value_or(-1);
  }
  bool Isolated() const { return sandbox_->controls().namespaces || sandbox_->controls().own_user; }

  std::string root_, scratch_, log_;
  std::unique_ptr<Sandbox> sandbox_;
};

TEST_P(SandboxTest, ReadsNothingOfTheServersDataDirectory) {
  if (!Isolated()) GTEST_SKIP() << "neither namespaces nor a user of its own on this machine";
  const std::string secret = root_ + "/data/signing.key";
  EXPECT_EQ(Plain({"read", secret}), 0);
  EXPECT_EQ(Sandboxed({"read", secret}), 1) << log_;
}

TEST_P(SandboxTest, WritesOnlyItsScratchDirectory) {
  if (!Isolated()) GTEST_SKIP() << "neither namespaces nor a user of its own on this machine";
  EXPECT_EQ(Sandboxed({"write", scratch_ + "/out.bin"}), 0) << log_;
  EXPECT_TRUE(fs::exists(scratch_ + "/out.bin"));
  const std::string outside = root_ + "/outside/planted";
  EXPECT_EQ(Sandboxed({"write", outside}), 1) << log_;
  EXPECT_FALSE(fs::exists(outside));
  EXPECT_EQ(Plain({"write", outside}), 0);
}

TEST_P(SandboxTest, SeesNoneOfTheServersEnvironment) {
  ::setenv("EDGELOOP_ADMIN_TOKEN", "operator-secret", 1);
  EXPECT_EQ(Plain({"env", "EDGELOOP_ADMIN_TOKEN"}), 0);
  EXPECT_EQ(Sandboxed({"env", "EDGELOOP_ADMIN_TOKEN"}), 1);
  ::unsetenv("EDGELOOP_ADMIN_TOKEN");
}

TEST_P(SandboxTest, CannotReserve64GiB) {
  EXPECT_EQ(Plain({"alloc", "64"}), 0);
  EXPECT_EQ(Sandboxed({"alloc", "64"}), 1) << log_;
  EXPECT_EQ(Sandboxed({"alloc", "1"}), 0) << log_;
}

TEST_P(SandboxTest, ReachesNoNetwork) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  EXPECT_EQ(Plain({"connect", port}), 0);
  if (!sandbox_->controls().namespaces && !sandbox_->controls().seccomp)
    GTEST_SKIP() << "neither a network namespace nor the syscall filter on this machine";
  EXPECT_EQ(Sandboxed({"connect", port}), 1) << log_;
  ::close(listener);
}

TEST_P(SandboxTest, NothingItStartsOutlivesTheRun) {
  if (!sandbox_->controls().namespaces)
    GTEST_SKIP() << "without a pid namespace a process that leaves the session survives";
  const std::string fifo = scratch_ + "/alive";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0666), 0);
  ::chmod(fifo.c_str(), 0666);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  EXPECT_EQ(Sandboxed({"survive", fifo}), 0) << log_;
  char c = 0;
  ASSERT_EQ(::read(reader, &c, 1), 1) << "the grandchild never wrote";
  // The grandchild held the write end; the FIFO hangs up once it is dead.
  pollfd p{reader, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1);
  EXPECT_TRUE(p.revents & POLLHUP);
  ::close(reader);
}

// Processes of `uid` on this machine now (the limit counts them all).
int ProcessesOf(uid_t uid) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    struct stat st {};
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") == std::string::npos &&
        ::stat(entry.path().c_str(), &st) == 0 && st.st_uid == uid)
      ++n;
  }
  return n;
}

TEST_P(SandboxTest, ProcessesAreCappedForItsOwnUser) {
  if (!sandbox_->controls().own_user)
    GTEST_SKIP() << "the process limit counts per user; this server has no user to give away";
  SandboxOptions options;
  const int others = ProcessesOf(options.uid);  // nobody's processes outside this test
  options.limits.processes = others + 32;
  Start(options);
  EXPECT_EQ(Sandboxed({"fork", "200"}), 1) << log_;
  int started = -1;
  const size_t at = log_.find("started ");
  ASSERT_NE(at, std::string::npos) << log_;
  ASSERT_EQ(std::sscanf(log_.c_str() + at, "started %d", &started), 1) << log_;
  EXPECT_GT(started, 0);
  // At most the cap: fewer than 32 when the user's other processes (sandboxed compiles of
  // tests running in parallel) are still there, up to others + 32 when they ended meanwhile.
  EXPECT_LE(started, others + 32);
}

// The real compiler, C toolchains and qemu work inside: a model becomes a validated module for
// the host and for an emulated ARM target, with only /usr and the scratch directory in view.
TEST_P(SandboxTest, CompilesAndValidatesModulesInside) {
  ASSERT_TRUE(
      WriteFileAtomically(scratch_ + "/model.onnx", compiler::testing::MlpOnnx(8, 16, 4), 0644)
          .ok());
  for (const char* target : {"x86_64-v2", "aarch64-v8"}) {
    auto ran = sandbox_->Run(EDGELOOP_COMPILE_BINARY,
                             {scratch_ + "/model.onnx", "--target", target, "--out",
                              absl::StrCat(scratch_, "/", target), "--validate"},
                             scratch_, "compile.log", absl::Minutes(5));
    ASSERT_TRUE(ran.ok()) << ran.status();
    EXPECT_EQ(*ran, 0) << sandbox_->ReadOutput(scratch_, "compile.log", 1 << 20).value_or("");
    auto validation =
        sandbox_->ReadOutput(scratch_, absl::StrCat(target, "/validation.json"), 1 << 20);
    ASSERT_TRUE(validation.ok()) << validation.status();
    EXPECT_NE(validation->find("\"selftest\":\"passed\""), std::string::npos) << *validation;
  }
}

TEST_P(SandboxTest, CpuTimeIsBounded) {
  SandboxOptions options;
  options.limits.cpu_time = absl::Seconds(1);
  Start(options);
  const int code = Sandboxed({"spin"});
  EXPECT_TRUE(code == 128 + SIGXCPU || code == 128 + SIGKILL) << code;
}

TEST_P(SandboxTest, AHungRunIsKilledAtItsDeadline) {
  auto ran = sandbox_->Run(EDGELOOP_SANDBOX_PROBE, {"spin"}, scratch_, "probe.log",
                           absl::Milliseconds(500));
  EXPECT_TRUE(absl::IsDeadlineExceeded(ran.status())) << ran.status();
}

TEST_P(SandboxTest, OutputsAreReadWithoutFollowingLinks) {
  ASSERT_TRUE(WriteFileAtomically(scratch_ + "/manifest.json", "{}").ok());
  EXPECT_EQ(sandbox_->ReadOutput(scratch_, "manifest.json", 100).value_or(""), "{}");
  fs::create_symlink(root_ + "/data/signing.key", scratch_ + "/module.so");
  fs::create_symlink(root_ + "/data", scratch_ + "/out");
  EXPECT_FALSE(sandbox_->ReadOutput(scratch_, "module.so", 100).ok());
  EXPECT_FALSE(sandbox_->ReadOutput(scratch_, "out/signing.key", 100).ok());
  EXPECT_FALSE(sandbox_->ReadOutput(scratch_, "../../signing.key", 100).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(
      sandbox_->ReadOutput(scratch_, "manifest.json", 1).status()));
}

TEST(SandboxCreateTest, RequireRefusesAMachineWithoutNamespaces) {
  SandboxOptions options;
  options.bwrap = "/nonexistent/bwrap";
  options.scratch_root =
      absl::StrCat(fs::temp_directory_path().string(), "/sandbox_create_test-", RandomHex(6));
  auto automatic = Sandbox::Create(options);
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_FALSE((*automatic)->controls().namespaces);
  EXPECT_NE((*automatic)->controls().Describe().find("no namespaces"), std::string::npos);
  automatic->reset();
  options.mode = SandboxMode::kRequire;
  auto required = Sandbox::Create(options);
  EXPECT_TRUE(absl::IsFailedPrecondition(required.status())) << required.status();
  std::error_code ec;
  fs::remove_all(options.scratch_root, ec);
}

INSTANTIATE_TEST_SUITE_P(BwrapOrNot, SandboxTest,
                         ::testing::Values("/usr/bin/bwrap", "/nonexistent/bwrap"),
                         [](const auto& info) {
                           return std::string(info.index == 0 ? "Bwrap" : "WithoutBwrap");
                         });

TEST(SyscallFilterTest, NoNewProcessesStopsForkAndExecButNotThreads) {
  auto filter = SyscallFilter::NoNewProcesses(/*allow_exec=*/false);
  ASSERT_TRUE(filter.ok()) << filter.status();
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (filter->Install() != 0) ::_exit(10);
    bool thread_ran = false;
    std::thread([&] { thread_ran = true; }).join();
    if (!thread_ran) ::_exit(11);
    if (::fork() >= 0 || errno != EPERM) ::_exit(12);
    char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
    ::execv("/bin/true", argv);
    ::_exit(errno == EPERM ? 0 : 13);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace edgeloop::compiler
