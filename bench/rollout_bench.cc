// rollout_bench: a four-wave rollout (1 %, 10 %, 50 %, 100 %) over a fleet of
// edgeloop-fleetsim's virtual devices on one real server, then a failing rollout rolled back.
// Reports, side by side with the minimum the waves and bake time allow, the time from create
// to COMPLETED; devices notified per minute in the largest wave (its release to the last of
// its devices' Watch events) and switched per minute (to every device reporting the candidate
// running); the server's CPU per device; and the time from the failing gate to
// every affected device serving the previous module again. Prints a table, writes JSON.
//
//   build/bin/rollout_bench [--devices 10000] [--bake-seconds 10] [--postgres]
//                           [--json bench/results/rollout_bench.json]
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"
#include "agent/hardware_profile.h"
#include "bench/load.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/hardware.h"
#include "common/mutex_checks.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "compiler/testing/onnx_models.h"
#include "edgeloop/v1/device.pb.h"
#include "edgeloop/v1/registry.pb.h"
#include "edgeloop/v1/rollout.pb.h"
#include "sim/fleet_simulator.h"
#include "store/testing/postgres_cluster.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"

namespace edgeloop::bench {
namespace {

struct Options {
  int devices = 10000;
  int bake_seconds = 10;
  int threads = 8;
  int watch_check_threads = 0;  // 0: the server's default
  bool postgres = false;
  std::string json = "bench/results/rollout_bench.json";
};

struct Result {
  double create_to_completed_s = 0;
  double minimum_s = 0;
  double largest_wave_devices = 0;
  double largest_wave_s = 0;  // release of the largest wave to all of it running the candidate
  double largest_notified_s = 0;  // its release to the last of its devices' Watch events
  double server_cpu_s = 0;    // during the clean rollout
  double rollback_s = -1;     // failing gate to every affected device back on the old module
  int64_t rolled_back = 0;
};

// The server's user + system CPU seconds so far.
double CpuSeconds(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the command's closing parenthesis: state is 3rd, utime 14th, stime 15th.
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int k = 3; k <= 15 && rest >> field; ++k) {
    if (k == 14) utime = std::stod(field);
    if (k == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

class Bench {
 public:
  // The model is new, so its versions are 1, 2 and 3; the scenario (given to the simulator
  // before they are pushed) makes 5 % of devices fail to install the third.
  static constexpr int64_t kFailingVersion = 3;

  explicit Bench(const Options& options) : options_(options) {}

  absl::Status Start() {
    tests::ServerProcess::Options server;
    server.data_dir = dir_.path();
    if (options_.postgres) {
      ASSIGN_OR_RETURN(server.db, store::testing::NewTestDatabase());
      server.blobs = "postgresql";
    }
    server.extra_flags = {"--log-level",           "warning", "--sync-interval-seconds", "60",
                          "--rollout-interval-ms", "250",     "--device-threads",        "64"};
    if (options_.watch_check_threads > 0) {
      server.extra_flags.push_back("--watch-check-threads");
      server.extra_flags.push_back(std::to_string(options_.watch_check_threads));
    }
    server_ = std::make_unique<tests::ServerProcess>(server);
    RETURN_IF_ERROR(server_->Start());
    auth_ = {{"Authorization", "Bearer " + server_->admin_token()}};
    RETURN_IF_ERROR(Call("POST", "/v1/models", R"({"name":"kws"})").status());
    ASSIGN_OR_RETURN(tests::HttpResponse token,
                     Call("POST", "/v1/enrollment-tokens",
                          absl::StrCat(R"({"maxUses":)", options_.devices, "}")));
    v1::CreateEnrollmentTokenResponse created;
    RETURN_IF_ERROR(ParseProtoJson(token.body, &created));
    // Every device like this host (so they run the real module); 5 % fail to install v3.
    ASSIGN_OR_RETURN(sim::ScenarioRules rules,
                     sim::ScenarioRules::FromJson(absl::StrCat(
                         R"({"callsPerSecond":1,"faults":[{"kind":"fail_install","share":0.05,)",
                         R"("version":")", kFailingVersion, R"("}]})")));
    sim::SimulatorOptions o;
    o.server = server_->device_address();
    o.enroll_token = created.secret();
    o.devices = options_.devices;
    o.ramp_up = absl::Seconds(std::max(1, options_.devices / 400));
    o.threads = options_.threads;
    o.work_dir = dir_.path() + "/fleetsim";
    ASSIGN_OR_RETURN(sim_, sim::FleetSimulator::Create(o, std::move(rules)));
    sim_->Start();
    std::fprintf(stderr, "enrolling %d devices...\n", options_.devices);
    if (!Wait([&] { return sim_->counts().enrolled >= options_.devices; }, absl::Minutes(10))) {
      return absl::DeadlineExceededError(sim_->Summary());
    }
    // Pushed once the fleet is there, so each version is built for the devices' class at
    // push, as in a fleet whose classes are known. (Pushed before, a version would be built
    // for that class only once assigned or rolled out, and the fleet would be installing
    // those modules during the rollout measured.)
    const std::string target = DeriveTargetClass(agent::ReadHardwareProfile({}));
    for (int seed = 1; seed <= 3; ++seed) {
      ASSIGN_OR_RETURN(int64_t v,
                       Push(compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, seed)));
      if (v != seed) return absl::InternalError(absl::StrCat("pushed v", v, ", not v", seed));
      if (!HasArtifact(v, target)) {
        return absl::FailedPreconditionError(absl::StrCat("v", v, " was not built for ", target));
      }
      versions_.push_back(v);
    }
    RETURN_IF_ERROR(Call("POST", "/v1/assignments",
                         absl::StrCat(R"({"model":"kws","selector":"fleetsim","version":")",
                                      versions_[0], "\"}"))
                        .status());
    std::fprintf(stderr, "%d enrolled; assigning v%lld...\n", options_.devices,
                 static_cast<long long>(versions_[0]));
    if (!Wait([&] { return Running(versions_[0]) == options_.devices; }, absl::Minutes(10))) {
      return absl::DeadlineExceededError(sim_->Summary());
    }
    // Running it is not yet having told the server: each device's report of the install is a
    // sync the simulator still has queued. Measured from a quiet fleet, as one of real
    // devices would be (each its own machine), not from a simulator 10,000 syncs behind.
    if (!Wait([&] { return sim_->Lag() < absl::Milliseconds(200); }, absl::Minutes(5))) {
      return absl::DeadlineExceededError(absl::StrCat("the simulator stays behind by ",
                                                      absl::FormatDuration(sim_->Lag())));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Result> Run() {
    Result result;
    result.minimum_s = 4.0 * options_.bake_seconds;
    const double cpu_before = CpuSeconds(server_->pid());
    const absl::Time start = absl::Now();
    started_ = start;
    ASSIGN_OR_RETURN(int64_t id, Create(versions_[1], "[1,10,50,100]", "pause"));
    // Poll the rollout: when each wave's devices all run the candidate.
    absl::Time largest_start = absl::InfinitePast(), largest_done = absl::InfinitePast();
    v1::Rollout r;
    while (true) {
      ASSIGN_OR_RETURN(r, Get(id));
      if (r.current_wave() == 3 && largest_start == absl::InfinitePast()) {
        largest_start = absl::Now();
      }
      if (r.waves_size() == 4 && largest_done == absl::InfinitePast() && r.waves(3).devices() > 0 &&
          r.waves(3).counts().active() == r.waves(3).devices()) {
        largest_done = absl::Now();
      }
      if (r.state() == "COMPLETED") break;
      if (r.state() != "PENDING" && r.state() != "IN_PROGRESS" && r.state() != "BAKING") {
        return absl::InternalError(
            absl::StrCat("the clean rollout ended ", r.state(), ": ", r.message()));
      }
      if (absl::Now() - start > absl::Minutes(30)) return absl::DeadlineExceededError("rollout");
      Progress(r);
      absl::SleepFor(absl::Milliseconds(100));
    }
    result.create_to_completed_s = absl::ToDoubleSeconds(absl::Now() - start);
    result.server_cpu_s = CpuSeconds(server_->pid()) - cpu_before;
    result.largest_wave_devices = static_cast<double>(r.waves(3).devices());
    result.largest_wave_s = absl::ToDoubleSeconds(largest_done - largest_start);
    PrintTimeline(id, start);
    ASSIGN_OR_RETURN(result.largest_notified_s,
                     NotifiedSeconds(id, 3, static_cast<int64_t>(result.largest_wave_devices)));

    // A candidate that 5 % of devices cannot install: the first wave's failed_installs gate
    // rolls it back.
    ASSIGN_OR_RETURN(int64_t failing, Create(versions_[2], "[10,100]", "rollback"));
    absl::Time rolling = absl::InfinitePast();
    while (absl::Now() - start < absl::Minutes(40)) {
      ASSIGN_OR_RETURN(r, Get(failing));
      if (rolling == absl::InfinitePast() &&
          (r.state() == "ROLLING_BACK" || r.state() == "ROLLED_BACK")) {
        rolling = absl::Now();
      }
      if (rolling != absl::InfinitePast() && Running(versions_[2]) == 0 &&
          Running(versions_[1]) == options_.devices) {
        result.rollback_s = absl::ToDoubleSeconds(absl::Now() - rolling);
        result.rolled_back = r.waves(0).devices();
        break;
      }
      if (r.state() == "COMPLETED") return absl::InternalError("the failing rollout completed");
      Progress(r);
      absl::SleepFor(absl::Milliseconds(50));
    }
    return result;
  }

  void Stop() {
    if (sim_) sim_->Stop();
  }

 private:
  absl::StatusOr<tests::HttpResponse> Call(const std::string& method, const std::string& target,
                                           const std::string& body = "") {
    ASSIGN_OR_RETURN(tests::HttpResponse r,
                     tests::HttpClient(server_->http_port()).Request(method, target, body, auth_));
    if (r.status >= 300) {
      return absl::InternalError(absl::StrCat(method, " ", target, ": ", r.status, " ", r.body));
    }
    return r;
  }
  absl::StatusOr<int64_t> Push(const std::string& onnx) {
    ASSIGN_OR_RETURN(tests::HttpResponse blob, Call("POST", "/v1/blobs", onnx));
    v1::Blob b;
    RETURN_IF_ERROR(ParseProtoJson(blob.body, &b));
    ASSIGN_OR_RETURN(tests::HttpResponse pushed,
                     Call("POST", "/v1/models/kws/versions",
                          absl::StrCat(R"({"onnxDigest":")", b.digest(), "\"}")));
    v1::ModelVersion v;
    RETURN_IF_ERROR(ParseProtoJson(pushed.body, &v));
    v1::ModelVersion settled;
    if (!Wait(
            [&] {
              auto got = Call("GET", absl::StrCat("/v1/models/kws/versions/", v.version()));
              return got.ok() && ParseProtoJson(got->body, &settled).ok() &&
                     settled.status() == v1::READY;
            },
            absl::Minutes(2))) {
      return absl::DeadlineExceededError("a version did not become READY");
    }
    return v.version();
  }
  absl::StatusOr<int64_t> Create(int64_t version, const std::string& waves,
                                 const std::string& policy) {
    ASSIGN_OR_RETURN(
        tests::HttpResponse created,
        Call("POST", "/v1/rollouts",
             absl::StrCat(R"({"model":"kws","version":")", version,
                          R"(","selector":"fleetsim","waves":)", waves, R"(,"bakeSeconds":")",
                          options_.bake_seconds, R"(","onFailure":")", policy,
                          R"(","gates":[{"metric":"install_success_ratio","threshold":1},)",
                          R"({"metric":"failed_installs","threshold":0}]})")));
    v1::Rollout r;
    RETURN_IF_ERROR(ParseProtoJson(created.body, &r));
    return r.id();
  }
  absl::StatusOr<v1::Rollout> Get(int64_t id) {
    ASSIGN_OR_RETURN(tests::HttpResponse got, Call("GET", absl::StrCat("/v1/rollouts/", id)));
    v1::Rollout r;
    RETURN_IF_ERROR(ParseProtoJson(got.body, &r));
    return r;
  }
  bool HasArtifact(int64_t version, const std::string& target) {
    auto got = Call("GET", absl::StrCat("/v1/models/kws/versions/", version, "/artifacts"));
    v1::ListArtifactsResponse artifacts;
    if (!got.ok() || !ParseProtoJson(got->body, &artifacts).ok()) return false;
    for (const v1::Artifact& a : artifacts.artifacts()) {
      if (a.target() == target) return true;
    }
    return false;
  }
  // Every 5 s on stderr: where the rollout is and what the fleet has done, so a slow wave
  // shows whether devices are not told, not syncing or not installing.
  void Progress(const v1::Rollout& r) {
    if (absl::Now() - last_progress_ < absl::Seconds(5)) return;
    last_progress_ = absl::Now();
    const sim::SimulatorCounts& c = sim_->counts();
    const v1::WaveCounts w = r.waves_size() > r.current_wave() ? r.waves(r.current_wave()).counts()
                                                               : v1::WaveCounts();
    std::fprintf(stderr,
                 "  %5.1fs %s wave %d: pending %lld downloading %lld active %lld failed %lld | fleetsim: "
                 "watch events %lld syncs %lld installs %lld\n",
                 absl::ToDoubleSeconds(absl::Now() - started_), r.state().c_str(), r.current_wave(),
                 static_cast<long long>(w.pending()),
                 static_cast<long long>(w.downloading()), static_cast<long long>(w.active()),
                 static_cast<long long>(w.failed()), static_cast<long long>(c.watch_events.load()),
                 static_cast<long long>(c.syncs.load()), static_cast<long long>(c.installs.load()));
  }
  // The rollout's transitions from its event log, in seconds since create: where the time
  // beyond the bake minimum went.
  void PrintTimeline(int64_t id, absl::Time start) {
    auto got = Call("GET", absl::StrCat("/v1/rollouts/", id, "/events"));
    v1::ListRolloutEventsResponse events;
    if (!got.ok() || !ParseProtoJson(got->body, &events).ok()) return;
    for (const v1::RolloutEvent& e : events.events()) {
      const absl::Time at = absl::FromUnixMillis(
          google::protobuf::util::TimeUtil::TimestampToMilliseconds(e.time()));
      std::fprintf(stderr, "  %6.2fs wave %d %s -> %s: %s\n",
                   absl::ToDoubleSeconds(at - start), e.wave(), e.from_state().c_str(),
                   e.to_state().c_str(), e.reason().c_str());
    }
  }
  // From the release of wave `wave` (its IN_PROGRESS event) to the `devices`-th Watch event
  // the fleet received after it: how fast the server told the wave's devices.
  absl::StatusOr<double> NotifiedSeconds(int64_t id, int wave, int64_t devices) {
    ASSIGN_OR_RETURN(tests::HttpResponse got,
                     Call("GET", absl::StrCat("/v1/rollouts/", id, "/events")));
    v1::ListRolloutEventsResponse events;
    RETURN_IF_ERROR(ParseProtoJson(got.body, &events));
    absl::Time released = absl::InfiniteFuture();
    for (const v1::RolloutEvent& e : events.events()) {
      if (e.wave() == wave && e.to_state() == "IN_PROGRESS") {
        released = absl::FromUnixMillis(
            google::protobuf::util::TimeUtil::TimestampToMilliseconds(e.time()));
        break;
      }
    }
    // The event's time has millisecond resolution; the first pushes may land inside it.
    released -= absl::Milliseconds(1);
    int64_t seen = 0;
    for (const absl::Time at : sim_->WatchEventTimes()) {
      if (at >= released && ++seen == devices) return absl::ToDoubleSeconds(at - released);
    }
    return absl::InternalError(absl::StrCat("only ", seen, " watch events after wave ", wave + 1,
                                            " was released, for ", devices, " devices"));
  }
  int64_t Running(int64_t version) {
    const auto running = sim_->Running();
    auto it = running.find(absl::StrCat("kws v", version));
    return it == running.end() ? 0 : it->second;
  }
  static bool Wait(const std::function<bool()>& done, absl::Duration timeout) {
    const absl::Time until = absl::Now() + timeout;
    while (!done()) {
      if (absl::Now() > until) return false;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return true;
  }

  Options options_;
  tests::TempDir dir_{"edgeloop-rollout-bench"};
  std::unique_ptr<tests::ServerProcess> server_;
  std::map<std::string, std::string> auth_;
  std::vector<int64_t> versions_;
  std::unique_ptr<sim::FleetSimulator> sim_;
  absl::Time started_, last_progress_ = absl::InfinitePast();
};

}  // namespace
}  // namespace edgeloop::bench

int main(int argc, char** argv) {
  using namespace edgeloop::bench;
  Options options;
  edgeloop::FlagSet flags;
  flags.Int("devices", &options.devices, "virtual devices (default 10000)");
  flags.Int("bake-seconds", &options.bake_seconds, "bake time of each wave (default 10)");
  flags.Int("threads", &options.threads, "fleetsim worker threads (default 8)");
  flags.Bool("postgres", &options.postgres, "run the server on a throwaway PostgreSQL");
  flags.Int("watch-check-threads", &options.watch_check_threads,
            "the server's --watch-check-threads (default: the server's default)");
  flags.String("json", &options.json, "results file (default bench/results/rollout_bench.json)");
  if (std::optional<int> exit_code = ParseFlags(flags, argc, argv)) return *exit_code;
  if (options.devices < 100 || options.bake_seconds < 0) {
    std::fprintf(stderr, "rollout_bench: --devices must be >= 100 and --bake-seconds >= 0\n");
    return 2;
  }
  rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  edgeloop::DisableMutexDeadlockDetection();  // the simulator runs in this process
  Bench bench(options);
  if (absl::Status s = bench.Start(); !s.ok()) {
    std::fprintf(stderr, "rollout_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  absl::StatusOr<Result> r = bench.Run();
  bench.Stop();
  if (!r.ok()) {
    std::fprintf(stderr, "rollout_bench: %s\n", r.status().ToString().c_str());
    return 1;
  }
  const double per_minute =
      r->largest_wave_s > 0 ? 60 * r->largest_wave_devices / r->largest_wave_s : 0;
  std::printf("\nrollout_bench: %d virtual devices, %s, waves 1/10/50/100 %%, bake %d s\n\n",
              options.devices, options.postgres ? "PostgreSQL" : "SQLite", options.bake_seconds);
  std::printf("%-52s %12s %12s\n", "measure", "value", "reference");
  std::printf("%-52s %12.1f %12.1f\n", "create to COMPLETED (s) vs the bake minimum",
              r->create_to_completed_s, r->minimum_s);
  const double notified_per_minute =
      r->largest_notified_s > 0 ? 60 * r->largest_wave_devices / r->largest_notified_s : 0;
  std::printf("%-52s %12.0f %12s\n", "devices notified per minute, largest wave",
              notified_per_minute, "100000");
  std::printf("%-52s %12.0f %12s\n", "  (devices in it, seconds)", r->largest_wave_devices,
              absl::StrFormat("%.2f", r->largest_notified_s).c_str());
  std::printf("%-52s %12.0f %12s\n", "devices switched per minute, largest wave", per_minute,
              "-");
  std::printf("%-52s %12.0f %12s\n", "  (devices in it, seconds)", r->largest_wave_devices,
              absl::StrFormat("%.2f", r->largest_wave_s).c_str());
  std::printf("%-52s %12.2f %12s\n", "server CPU per device during the rollout (ms)",
              1000 * r->server_cpu_s / options.devices, "-");
  std::printf("%-52s %12.2f %12s\n", "failing gate to old module on every device (s)",
              r->rollback_s, "-");
  std::printf("%-52s %12lld %12s\n", "  (devices rolled back)",
              static_cast<long long>(r->rolled_back), "-");
  const std::string json = absl::StrCat(
      "{\"devices\":", options.devices, ",\"database\":\"",
      options.postgres ? "postgres" : "sqlite", "\",\"bake_seconds\":", options.bake_seconds,
      ",\"create_to_completed_s\":", r->create_to_completed_s, ",\"minimum_s\":", r->minimum_s,
      ",\"largest_wave_devices\":", r->largest_wave_devices,
      ",\"largest_wave_s\":", r->largest_wave_s, ",\"devices_per_minute\":", per_minute,
      ",\"largest_notified_s\":", r->largest_notified_s,
      ",\"notified_per_minute\":", notified_per_minute,
      ",\"server_cpu_s\":", r->server_cpu_s, ",\"rollback_s\":", r->rollback_s, "}\n");
  edgeloop::bench::WriteResults(options.json, json);
  return r->rollback_s >= 0 ? 0 : 1;
}
