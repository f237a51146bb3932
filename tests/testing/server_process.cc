#include "tests/testing/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/random.h"
#include "common/status.h"
#include "tests/testing/http_client.h"

namespace edgeloop::tests {
namespace fs = std::filesystem;
// fork + exec with stdout/stderr redirected to files; environment = ours + `env`.
pid_t Spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            const std::string& out_path, const std::string& err_path) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int in = ::open("/dev/null", O_RDONLY);
  ::dup2(in, 0);
  ::dup2(out, 1);
  ::dup2(err, 2);
  for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execv(args[0], args.data());
  ::_exit(127);
}

namespace {

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::string BinaryPath(const std::string& name) {
  return absl::StrCat(EDGELOOP_BIN_DIR, "/", name);
}

std::string NewTempDir(const std::string& prefix) {
  std::string dir =
      absl::StrCat(fs::temp_directory_path().string(), "/", prefix, "-", RandomHex(6));
  fs::create_directories(dir);
  return dir;
}

TempDir::~TempDir() {
  std::error_code ignored;  // a test that failed halfway may leave it partly removed already
  fs::remove_all(path_, ignored);
}

bool Eventually(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return condition();
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

absl::Status ServerProcess::Start(absl::Duration timeout) {
  fs::create_directories(options_.data_dir);
  std::string ports = options_.data_dir + "/ports.json";
  fs::remove(ports);
  std::vector<std::string> argv = {
      BinaryPath("edgeloop-server"),
      "--data-dir",
      options_.data_dir,
      "--http-listen",
      "127.0.0.1:0",
      "--grpc-listen",
      "127.0.0.1:0",
      "--device-listen",
      options_.device_listen.empty() ? "127.0.0.1:0" : options_.device_listen};
  if (!options_.db.empty()) argv.insert(argv.end(), {"--db", options_.db});
  if (!options_.blobs.empty()) argv.insert(argv.end(), {"--blobs", options_.blobs});
  argv.insert(argv.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  pid_ = Spawn(argv, options_.env, options_.data_dir + "/server.out",
               options_.data_dir + "/server.log");
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("server exited with ", ExitCode(status), ":\n", log()));
    }
    auto text = ReadFile(ports);
    std::smatch m;
    static const std::regex kPorts(R"(\{"http": (\d+), "grpc": (\d+), "device": (\d+)\})");
    if (text.ok() && std::regex_search(*text, m, kPorts)) {
      http_port_ = std::stoi(m[1]);
      grpc_port_ = std::stoi(m[2]);
      device_port_ = std::stoi(m[3]);
      auto ready = HttpClient(http_port_).Get("/readyz");
      if (ready.ok() && ready->status == 200) return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("server not ready in time:\n", log()));
}

absl::StatusOr<int> ServerProcess::Stop(int signal, absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("server is not running");
  ::kill(pid_, signal);
  return WaitExit(timeout);
}

absl::StatusOr<int> ServerProcess::WaitExit(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("server is not running");
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return ExitCode(status);
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError("server did not exit in time");
}

std::string ServerProcess::admin_token() const {
  auto text = ReadFile(options_.data_dir + "/admin.token");
  return text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : "";
}

std::string ServerProcess::log() const {
  auto text = ReadFile(options_.data_dir + "/server.log");
  return text.ok() ? *text : "";
}

AgentProcess::~AgentProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

void AgentProcess::Start() {
  exit_code_.reset();
  fs::create_directories(options_.state_dir);
  std::vector<std::string> argv = {
      BinaryPath("edgeloop-agent"), "--server",         options_.server, "--state-dir",
      options_.state_dir,           "--metrics-listen", "127.0.0.1:0"};
  if (!options_.enroll_token.empty())
    argv.insert(argv.end(), {"--enroll-token", options_.enroll_token});
  if (!options_.labels.empty()) argv.insert(argv.end(), {"--labels", options_.labels});
  argv.insert(argv.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  argv.insert(argv.begin(), options_.wrapper.begin(), options_.wrapper.end());
  pid_ = Spawn(argv, options_.env, options_.state_dir + "/agent.out",
               options_.state_dir + "/agent.log");
}

bool AgentProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return true;
  // Reaped: forget the pid at once. pid_max is 32768 on these machines, and a later kill() of
  // a recycled pid would hit some other test's process.
  pid_ = -1;
  exit_code_ = ExitCode(status);
  return false;
}

bool AgentProcess::WaitEnrolled(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (!device_id().empty()) return true;
    if (!running()) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

absl::StatusOr<int> AgentProcess::WaitExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline && running()) absl::SleepFor(absl::Milliseconds(10));
  if (exit_code_) return *exit_code_;
  return absl::DeadlineExceededError("agent did not exit");
}

absl::StatusOr<int> AgentProcess::Stop(int signal, absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("agent is not running");
  ::kill(pid_, signal);
  return WaitExit(timeout);
}

std::string AgentProcess::device_id() const {
  auto text = ReadFile(options_.state_dir + "/identity/device_id");
  return text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : "";
}

std::string AgentProcess::log() const {
  return ReadFile(options_.state_dir + "/agent.log").value_or("");
}

absl::StatusOr<std::string> AgentProcess::metrics() const {
  ASSIGN_OR_RETURN(const std::string ports, ReadFile(options_.state_dir + "/ports.json"));
  int port = 0;
  const size_t colon = ports.find(':');
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::StripSuffix(
                            absl::StripAsciiWhitespace(ports.substr(colon + 1)), "}")),
                        &port)) {
    return absl::InternalError("ports.json: " + ports);
  }
  ASSIGN_OR_RETURN(HttpResponse response, HttpClient(port).Get("/metrics"));
  return response.body;
}

int64_t AgentProcess::SyncsOk() const {
  const absl::StatusOr<std::string> text = metrics();
  if (!text.ok()) return -1;
  const std::string kSeries = "edgeloop_agent_syncs_total{result=\"ok\"} ";
  const size_t at = text->find(kSeries);
  double value = -1;
  if (at == std::string::npos ||
      !absl::SimpleAtod(
          text->substr(at + kSeries.size(), text->find('\n', at) - at - kSeries.size()), &value)) {
    return -1;
  }
  return static_cast<int64_t>(value);
}

int PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env) {
  std::string dir = NewTempDir("cmd");
  pid_t pid = Spawn(argv, env, dir + "/out", dir + "/err");
  int status = 0;
  ::waitpid(pid, &status, 0);
  CommandResult result;
  result.exit_code = ExitCode(status);
  result.out = ReadFile(dir + "/out").value_or("");
  result.err = ReadFile(dir + "/err").value_or("");
  fs::remove_all(dir);
  return result;
}

}  // namespace edgeloop::tests
