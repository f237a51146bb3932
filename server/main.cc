// edgeloop-server: the control plane's model registry over REST and gRPC.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/logging.h"
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
  if (options->log_level == "debug") SetMinLogLevel(LogLevel::kDebug);
  if (options->log_level == "warning") SetMinLogLevel(LogLevel::kWarning);
  if (options->log_level == "error") SetMinLogLevel(LogLevel::kError);

  // Block the stop signals before any thread starts, so only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto server = server::Server::Create(*options);
  if (!server.ok()) {
    Log(LogLevel::kError, "cannot start", {{"error", server.status().ToString()}});
    return 1;
  }
  if (auto started = (*server)->Start(); !started.ok()) {
    Log(LogLevel::kError, "cannot start", {{"error", started.ToString()}});
    return 1;
  }
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  Log(LogLevel::kInfo, "received stop signal",
      {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*server)->Shutdown();
  return 0;
}
