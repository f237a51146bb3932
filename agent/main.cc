// edgeloop-agent: the on-device side of edgeloop.
#include <signal.h>
#include <stdlib.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "agent/agent_options.h"
#include "agent/hardware_profile.h"
#include "common/logging.h"
#include "common/mutex_checks.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "common/stop_signal.h"

int main(int argc, char** argv) {
  using namespace edgeloop;
  bool help = false;
  std::string usage;
  auto options =
      agent::ParseAgentOptions(std::vector<std::string>(argv + 1, argv + argc), &help, &usage);
  if (help) {
    std::fputs(usage.c_str(), stdout);
    return 0;
  }
  if (!options.ok()) {
    std::fprintf(stderr, "edgeloop-agent: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  if (options->print_profile) {
    agent::ProfileOptions profile_options;
    profile_options.state_dir = options->state_dir;
    profile_options.labels = options->labels;
    std::printf(
        "%s\n",
        PrintProtoJson(agent::ReadHardwareProfile(profile_options), /*pretty=*/true).c_str());
    return 0;
  }
  if (!SetMinLogLevel(options->log_level)) {
    std::fprintf(stderr, "edgeloop-agent: --log-level takes debug, info, warning or error\n");
    return 2;
  }
  BlockStopSignals();  // before any thread starts
  // gRPC's default Linux poller (epoll1) lets whichever thread waits on gRPC do the I/O of
  // every connection in the process, so the background thread, which syncs at SCHED_IDLE,
  // ended up reading applications' calls off the local API's socket — and made them wait
  // whenever it was starved (hotswap_bench: p99 1.45x steady while only syncing). With
  // "poll", each wait polls only its own connections. An operator's setting still wins.
  ::setenv("GRPC_POLL_STRATEGY", "poll", /*overwrite=*/0);
  DisableMutexDeadlockDetection();

  auto agent = agent::Agent::Create(*options);
  if (!agent.ok()) {
    Log(LogLevel::kError, "cannot start", {{"error", agent.status().ToString()}});
    return 1;
  }
  absl::Status result;
  std::thread runner([&] {
    result = (*agent)->Run();
    // Wake the signal wait below when Run ends on its own (error or --enroll-only).
    ::kill(::getpid(), SIGTERM);
  });
  WaitForStopSignal();
  (*agent)->Stop();
  runner.join();
  if (!result.ok()) {
    Log(LogLevel::kError, "stopped", {{"error", result.ToString()}});
    std::fprintf(stderr, "edgeloop-agent: %s\n", std::string(result.message()).c_str());
    return 1;
  }
  Log(LogLevel::kInfo, "stopped");
  return 0;
}
