// edgeloop-fleetsim: thousands of virtual devices speaking the real device protocol to an
// edgeloop-server, for testing and measuring rollouts on fleets of that size.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "common/file_util.h"
#include "common/mutex_checks.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/stop_signal.h"
#include "sim/fleet_simulator.h"

int main(int argc, char** argv) {
  using namespace edgeloop;
  sim::SimulatorOptions options;
  std::string scenario_file, log_level = "warning";
  absl::Duration duration = absl::InfiniteDuration();
  options.work_dir = "./fleetsim";
  FlagSet flags;
  flags.String("server", &options.server, "the server's device port, HOST:PORT (required)");
  flags.String("enroll-token", &options.enroll_token,
               "an enrollment token with a use per device (edgeloop token create --enroll "
               "--max-uses N)");
  flags.Int("devices", &options.devices, "virtual devices (default 100)");
  flags.Duration("ramp-up", &options.ramp_up, "enrollments spread over this long (default 10s)");
  flags.Int("threads", &options.threads, "worker threads making the devices' calls (default 4)");
  flags.Duration("report-spread", &options.report_spread,
                 "each device sends a closed window after its own delay within this (default 10s)");
  flags.String("scenario", &scenario_file,
               "JSON scenario: device mix, model behaviour per cohort over time, faults "
               "(docs/fleetsim.md)");
  flags.String("work-dir", &options.work_dir,
               "where fetched modules are kept (default ./fleetsim)");
  flags.Duration("duration", &duration, "stop after this long (default: at SIGINT/SIGTERM)");
  flags.String("log-level", &log_level, "debug, info, warning (default) or error");
  bool help = false;
  if (absl::Status s = flags.Parse(std::vector<std::string>(argv + 1, argv + argc), &help);
      !s.ok() || help) {
    if (!s.ok()) std::fprintf(stderr, "edgeloop-fleetsim: %s\n", std::string(s.message()).c_str());
    std::fputs(
        ("usage: edgeloop-fleetsim --server HOST:PORT --enroll-token T [flags]\n" + flags.Usage())
            .c_str(),
        help ? stdout : stderr);
    return help ? 0 : 2;
  }
  if (options.server.empty() || options.enroll_token.empty()) {
    std::fprintf(stderr, "edgeloop-fleetsim: --server and --enroll-token are required\n");
    return 2;
  }
  SetMinLogLevel(log_level);
  // A connection per device: as many descriptors as the hard limit allows.
  rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  std::string json;
  if (!scenario_file.empty()) {
    absl::StatusOr<std::string> text = ReadFile(scenario_file);
    if (!text.ok()) {
      std::fprintf(stderr, "edgeloop-fleetsim: %s\n", std::string(text.status().message()).c_str());
      return 2;
    }
    json = *text;
  }
  absl::StatusOr<sim::ScenarioRules> rules = sim::ScenarioRules::FromJson(json);
  if (!rules.ok()) {
    std::fprintf(stderr, "edgeloop-fleetsim: scenario: %s\n",
                 std::string(rules.status().message()).c_str());
    return 2;
  }
  BlockStopSignals();
  DisableMutexDeadlockDetection();  // (common/mutex_checks.h)
  auto simulator = sim::FleetSimulator::Create(options, *std::move(rules));
  if (!simulator.ok()) {
    std::fprintf(stderr, "edgeloop-fleetsim: %s\n",
                 std::string(simulator.status().message()).c_str());
    return 1;
  }
  (*simulator)->Start();
  if (duration != absl::InfiniteDuration()) {
    std::thread([duration] {
      absl::SleepFor(duration);
      kill(getpid(), SIGTERM);  // ends the wait below, as an operator's signal would
    }).detach();
  }
  WaitForStopSignal();
  (*simulator)->Stop();
  std::fputs((*simulator)->Summary().c_str(), stdout);
  return 0;
}
