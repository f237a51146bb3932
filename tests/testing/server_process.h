#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace edgeloop::tests {

/// Starts `argv` (argv[0] a path) with stdout and stderr going to the files named (stderr
/// appended), stdin from /dev/null, and our environment plus `env`; its pid.
pid_t Spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
            const std::string& out_path, const std::string& err_path);

/// Path of a built binary: build/bin/<name>.
std::string BinaryPath(const std::string& name);

/// A real `edgeloop-server` child process on ports it picks itself (port 0), found through
/// `<data-dir>/ports.json`. Killed (SIGKILL) on destruction if still running.
class ServerProcess {
 public:
  struct Options {
    std::string data_dir;       // created when missing
    std::string db;             // empty: the SQLite default under data_dir
    std::string blobs;          // empty: files under data_dir
    std::string device_listen;  // empty: 127.0.0.1 on a port of the server's choosing
    std::vector<std::string> extra_flags;
    std::map<std::string, std::string> env;
  };

  explicit ServerProcess(Options options) : options_(std::move(options)) {}
  ~ServerProcess();

  /// Starts the server and waits until it serves /readyz (up to `timeout`).
  absl::Status Start(absl::Duration timeout = absl::Seconds(30));
  /// Sends `signal` and waits for the exit; returns the exit status (or 128+signal).
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout = absl::Seconds(30));
  /// Waits for the server to exit by itself (a failpoint, a fatal error).
  absl::StatusOr<int> WaitExit(absl::Duration timeout = absl::Seconds(30));

  int http_port() const { return http_port_; }
  int grpc_port() const { return grpc_port_; }
  int device_port() const { return device_port_; }
  std::string device_address() const { return "127.0.0.1:" + std::to_string(device_port_); }
  std::string grpc_address() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  std::string admin_token() const;
  const std::string& data_dir() const { return options_.data_dir; }
  std::string log() const;  // what the server wrote to stderr
  pid_t pid() const { return pid_; }

 private:
  Options options_;
  pid_t pid_ = -1;
  int http_port_ = 0;
  int grpc_port_ = 0;
  int device_port_ = 0;
};

/// A real `edgeloop-agent` child process. Killed (SIGKILL) on destruction if still running.
class AgentProcess {
 public:
  struct Options {
    std::string server;     // HOST:PORT of the device listener
    std::string state_dir;  // created when missing
    std::string enroll_token;
    std::string labels;  // k=v,k=v
    std::vector<std::string> extra_flags;
    std::map<std::string, std::string> env;
    /// Runs the agent under this command, e.g. {"qemu-x86_64", "-cpu", "Nehalem"} for a
    /// device with an older CPU.
    std::vector<std::string> wrapper;
  };
  explicit AgentProcess(Options options) : options_(std::move(options)) {}
  ~AgentProcess();

  /// Starts the agent; does not wait for anything.
  void Start();
  /// Waits until the agent has enrolled (its identity is on disk); false on timeout or exit.
  bool WaitEnrolled(absl::Duration timeout = absl::Seconds(30));
  /// Waits for the process to exit on its own; its exit code, or an error on timeout.
  absl::StatusOr<int> WaitExit(absl::Duration timeout = absl::Seconds(30));
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout = absl::Seconds(30));
  bool running();

  std::string device_id() const;
  std::string log() const;
  /// What its /metrics endpoint serves now.
  absl::StatusOr<std::string> metrics() const;
  /// Syncs that succeeded so far (edgeloop_agent_syncs_total{result="ok"}); -1 when the
  /// agent does not answer.
  int64_t SyncsOk() const;
  const std::string& state_dir() const { return options_.state_dir; }
  pid_t pid() const { return pid_; }

 private:
  Options options_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;  // once reaped
};

/// A TCP port on 127.0.0.1 that was free a moment ago (for tests that restart a server on the
/// same address).
int PickFreePort();

/// Runs a command (argv) to completion; returns its exit code and captured stdout + stderr.
struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {});

/// A fresh temporary directory.
std::string NewTempDir(const std::string& prefix);

/// A fresh temporary directory removed when it goes out of scope. Declare it before the
/// processes that write into it, so they have stopped (and written their last file) when it goes.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix) : path_(NewTempDir(prefix)) {}
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Polls `condition` until it holds (true) or `timeout` passes (false): how a test waits on
/// another process, which it cannot be told about.
bool Eventually(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(20));

}  // namespace edgeloop::tests
