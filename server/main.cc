// edgeloop-server: the control plane's model registry over REST and gRPC.
#include <sys/resource.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/logging.h"
#include "common/mutex_checks.h"
#include "common/stop_signal.h"
#include "server/options.h"
#include "server/server.h"

int main(int argc, char** argv) {
  using namespace edgeloop;
  std::vector<std::string> args(argv + 1, argv + argc);
  bool help = false;
  auto options = server::ParseServerOptions(args, &help);
  if (help) {
    std::fputs(server::ServerUsage().c_str(), stdout);
    return 0;
  }
  if (!options.ok()) {
    std::fprintf(stderr, "edgeloop-server: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  if (!SetMinLogLevel(options->log_level)) {
    std::fprintf(stderr, "edgeloop-server: --log-level takes debug, info, warning or error\n");
    return 2;
  }
  BlockStopSignals();  // before any thread starts
  DisableMutexDeadlockDetection();
  // A connection per device on the device port: as many descriptors as the hard limit allows.
  rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  auto server = server::Server::Create(*options);
  if (!server.ok()) {
    Log(LogLevel::kError, "cannot start", {{"error", server.status().ToString()}});
    return 1;
  }
  if (auto started = (*server)->Start(); !started.ok()) {
    Log(LogLevel::kError, "cannot start", {{"error", started.ToString()}});
    return 1;
  }
  Log(LogLevel::kInfo, "received stop signal", {{"signal", WaitForStopSignal()}});
  (*server)->Shutdown();
  return 0;
}
