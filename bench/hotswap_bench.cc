// Hot swaps under load: applications call Predict on the agent's Unix socket (at a steady
// rate with Poisson arrivals, then flat out) while an operator reassigns the model 100+ times,
// cycling through versions so that each swap loads a module the agent is not holding (from its
// disk cache after the first round: dlopen, checks, self-test, warm-up, then the atomic
// publish). Real server, real agent.
//
// Reports requests, failures (must be 0), p50/p99/p99.9 of requests that started in steady
// state versus inside a swap window (from the assignment until the first answer from the new
// version, plus 20 ms), their p99 ratio with its 95% interval over swaps, how long a swap took
// (assignment → serving; the agent's own verified → serving), and Predict's overhead over
// calling the module in-process.
//
//   build/bin/hotswap_bench [--swaps 100] [--saturated-swaps N] [--clients 2] [--rate 1000]
//                           [--versions 4]
//                           [--layout split|shared] [--json bench/results/hotswap_bench.json]
//                           [--calls-csv calls.csv]
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "agent/client/local_client.h"
#include "bench/load.h"
#include "common/flags.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "compiler/compile.h"
#include "compiler/module_loader.h"
#include "edgeloop/v1/device.pb.h"
#include "edgeloop/v1/registry.pb.h"
#include "compiler/testing/onnx_models.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"

namespace edgeloop::bench {
namespace {

using tests::AgentProcess;
using tests::HttpClient;
using tests::ServerProcess;

struct Options {
  std::string layout = "split";
  int swaps = 100;
  int saturated_swaps = 0;  // 0: as many as --swaps
  int clients = 2;
  double rate = 1000;  // requests per second, all clients together, in the steady-rate run
  int versions = 4;
  std::string json = "bench/results/hotswap_bench.json";
  std::string calls_csv;  // every call and window, for looking at a run beyond its summary
};

// Where each side runs. On a fleet the server is on another machine, not on the device's
// cores: by default (--layout split) the server and the operator's calls get the last CPU and
// the device (agent and applications) the others — a device with one core fewer, alone on its
// cores. --layout shared puts everything on all CPUs, the server at idle priority: the
// control plane's own work then lands on the device's cores too (a harder case than a fleet
// has). With one CPU both are the shared layout.
struct CpuSplit {
  cpu_set_t device, control;

  static CpuSplit Make(bool split) {
    CpuSplit cpus;
    ::sched_getaffinity(0, sizeof(cpu_set_t), &cpus.device);
    cpus.control = cpus.device;
    if (!split || CPU_COUNT(&cpus.device) < 2) return cpus;
    int last = CPU_SETSIZE - 1;
    while (!CPU_ISSET(last, &cpus.device)) --last;
    CPU_CLR(last, &cpus.device);
    CPU_ZERO(&cpus.control);
    CPU_SET(last, &cpus.control);
    return cpus;
  }
  bool shared() const { return CPU_EQUAL(&device, &control); }
  // The calling thread, and the processes and threads it starts from now on.
  static void RunOn(const cpu_set_t& cpus) { ::sched_setaffinity(0, sizeof(cpu_set_t), &cpus); }
};

struct Sample {
  absl::Time start;
  double us;
  bool ok;
};

struct Percentiles {
  int64_t n = 0;
  double p50 = 0, p99 = 0, p999 = 0;
};

Percentiles Summarize(std::vector<double> us) {
  Percentiles p;
  p.n = static_cast<int64_t>(us.size());
  if (us.empty()) return p;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))];
  };
  p.p50 = at(0.5);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  return p;
}

// How sure a p99 ratio is. A run's windows hold a few thousand calls, so its p99 rests on a few
// dozen of them, and what one swap does to its calls is not what the next does: resampling
// whole swaps (with replacement, 400 times) gives the 95% interval of the ratio that the
// swaps' own variation allows. Steady state, with five times the calls, is held fixed.
std::pair<double, double> RatioInterval(const std::vector<std::vector<double>>& by_window,
                                        double steady_p99) {
  if (by_window.empty()) return {0, 0};
  std::mt19937_64 random(42);
  std::uniform_int_distribution<size_t> pick(0, by_window.size() - 1);
  std::vector<double> ratios, calls;
  for (int round = 0; round < 400; ++round) {
    calls.clear();
    for (size_t k = 0; k < by_window.size(); ++k) {
      const std::vector<double>& w = by_window[pick(random)];
      calls.insert(calls.end(), w.begin(), w.end());
    }
    if (calls.empty()) continue;
    auto p99 = calls.begin() + std::min(calls.size() - 1, static_cast<size_t>(0.99 * calls.size()));
    std::nth_element(calls.begin(), p99, calls.end());
    ratios.push_back(*p99 / steady_p99);
  }
  if (ratios.empty()) return {0, 0};
  std::sort(ratios.begin(), ratios.end());
  return {ratios[ratios.size() * 25 / 1000], ratios[ratios.size() * 975 / 1000]};
}

// One server and one enrolled agent, with `versions` versions of a model compiled.
class Fleet {
 public:
  ~Fleet() {
    agent_.reset();  // stopped before their directory goes
    server_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  absl::Status Start(int versions, const CpuSplit& cpus) {
    CpuSplit::RunOn(cpus.control);
    ServerProcess::Options so;
    so.data_dir = dir_ = tests::NewTempDir("hotswap-bench");
    // Versions are built for this machine's class before they are READY, so no compile for a
    // class that joins later runs (and swaps the device to it) while the bench measures.
    tests::CommandResult profile =
        tests::RunCommand({tests::BinaryPath("edgeloop-agent"), "--print-profile"});
    v1::HardwareProfile hardware;
    RETURN_IF_ERROR(ParseProtoJson(profile.out, &hardware, true));
    so.extra_flags = {"--sync-interval-seconds", "5", "--compile-targets", hardware.target()};
    server_ = std::make_unique<ServerProcess>(so);
    RETURN_IF_ERROR(server_->Start());
    if (cpus.shared()) {
      // The server shares the device's cores here, so it only gets the time the agent and the
      // applications leave idle (threads it starts later inherit the policy).
      for (const auto& task :
           std::filesystem::directory_iterator(absl::StrCat("/proc/", server_->pid(), "/task"))) {
        sched_param idle{};
        ::sched_setscheduler(static_cast<pid_t>(std::stoi(task.path().filename())), SCHED_IDLE,
                             &idle);
      }
    }
    admin_ = server_->admin_token();
    RETURN_IF_ERROR(Call("POST", "/v1/models", R"({"name":"bench"})").status());
    for (int v = 1; v <= versions; ++v) {
      ASSIGN_OR_RETURN(tests::HttpResponse blob,
                       Call("POST", "/v1/blobs",
                            compiler::testing::MlpOnnx(std::vector<int>{64, 128, 64, 10},
                                                       static_cast<uint32_t>(v))));
      v1::Blob b;
      RETURN_IF_ERROR(ParseProtoJson(blob.body, &b));
      RETURN_IF_ERROR(Call("POST", "/v1/models/bench/versions",
                           absl::StrCat(R"({"onnxDigest":")", b.digest(), "\"}"))
                          .status());
    }
    for (int v = 1; v <= versions; ++v) {
      for (int i = 0;; ++i) {
        ASSIGN_OR_RETURN(tests::HttpResponse r,
                         Call("GET", absl::StrCat("/v1/models/bench/versions/", v)));
        v1::ModelVersion mv;
        RETURN_IF_ERROR(ParseProtoJson(r.body, &mv));
        if (mv.status() == v1::READY) break;
        if (mv.status() == v1::FAILED || i > 1200)
          return absl::InternalError("version " + std::to_string(v) + " did not compile");
        absl::SleepFor(absl::Milliseconds(50));
      }
    }
    ASSIGN_OR_RETURN(tests::HttpResponse token,
                     Call("POST", "/v1/enrollment-tokens", R"({"maxUses":1})"));
    v1::CreateEnrollmentTokenResponse created;
    RETURN_IF_ERROR(ParseProtoJson(token.body, &created));
    AgentProcess::Options ao;
    ao.server = server_->device_address();
    ao.state_dir = so.data_dir + "/agent";
    ao.enroll_token = created.secret();
    ao.extra_flags = {"--rollback-min-calls", "0"};  // the swaps are the operator's
    agent_ = std::make_unique<AgentProcess>(ao);
    CpuSplit::RunOn(cpus.device);
    agent_->Start();
    CpuSplit::RunOn(cpus.control);  // this thread is the operator from here on
    if (!agent_->WaitEnrolled()) return absl::InternalError("agent did not enroll");
    return absl::OkStatus();
  }

  absl::StatusOr<tests::HttpResponse> Call(const std::string& method, const std::string& target,
                                           const std::string& body = "") {
    return HttpClient(server_->http_port())
        .Request(method, target, body, {{"Authorization", "Bearer " + admin_}});
  }

  absl::Status Assign(int version) {
    ASSIGN_OR_RETURN(tests::HttpResponse r,
                     Call("POST", "/v1/assignments",
                          absl::StrCat(R"({"model":"bench","deviceId":")", agent_->device_id(),
                                       R"(","version":")", version, "\"}")));
    if (r.status != 201) return absl::InternalError(r.body);
    return absl::OkStatus();
  }

  std::string socket() const { return agent_->state_dir() + "/agent.sock"; }
  std::string log() const { return agent_->log(); }
  pid_t agent_pid() const { return agent_->pid(); }
  // The agent's copy of the module it runs: its store, by the digest it reports.
  std::string active_module_path() {
    client::LocalClient c(socket());
    auto models = c.ListModels();
    if (!models.ok() || models->models_size() == 0) return "";
    return agent_->state_dir() + "/modules/" + models->models(0).module_digest().substr(7) + ".so";
  }

 private:
  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<AgentProcess> agent_;
  std::string admin_;
};

// On-CPU time of the agent's background threads (sync, watch: the install, the state file,
// the report), from the kernel's per-thread schedstat: what a swap costs the device's CPU.
int64_t BackgroundCpuNs(pid_t agent) {
  int64_t ns = 0;
  std::error_code ec;
  const std::string tasks = absl::StrCat("/proc/", agent, "/task");
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    std::string comm;
    std::getline(std::ifstream(task.path() / "comm"), comm);
    if (comm != "agent-sync" && comm != "agent-watch") continue;
    int64_t on_cpu = 0;
    if (std::ifstream(task.path() / "schedstat") >> on_cpu) ns += on_cpu;
  }
  return ns;
}

struct RunResult {
  std::string mode;
  int64_t requests = 0, failed = 0;
  Percentiles steady, swapping;
  double ratio_low = 0, ratio_high = 0;  // 95% interval of the p99 ratio, over swaps
  int swaps = 0;
  double assign_to_serving_ms_p50 = 0, assign_to_serving_ms_max = 0;
  double background_cpu_us = 0;  // per reassignment
};

// Clients call as fast as they can (rate 0) or at `rate` per second in total, while the model
// is reassigned `swaps` times.
// With `control` set, the model is reassigned to the version it already runs: the server,
// the push and the device's sync all happen, the swap does not; windows last `control`.
absl::StatusOr<RunResult> RunSwaps(Fleet& fleet, const Options& options, const CpuSplit& cpus,
                                   double rate, int* next_version,
                                   std::optional<absl::Duration> control = std::nullopt) {
  const std::vector<float> input(64, 0.25f);
  std::atomic<bool> done{false};
  // The version of the latest answer any client got; clients signal when it changes, so the
  // bench does not poll (and take CPU) inside the windows it measures.
  std::atomic<int64_t> last_seen{0};
  std::mutex seen_mu;
  std::condition_variable seen_changed;
  std::vector<std::vector<Sample>> samples(options.clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < options.clients; ++c) {
    threads.emplace_back([&, c] {
      CpuSplit::RunOn(cpus.device);  // the applications run on the device
      client::LocalClient client(fleet.socket());
      // Independent applications: each sends at the times of a Poisson process (at a fixed
      // period every client fires in the same instants, and the operator's swaps lock onto
      // that phase — then a run measures one alignment over and over, not the swap). A call
      // is timed from when it was due, so one that waited behind a slow one counts that wait.
      std::mt19937_64 random(0x5eed + c);
      std::exponential_distribution<double> gap(rate > 0 ? rate / options.clients : 1.0);
      absl::Time due = absl::Now();
      while (!done) {
        if (rate > 0) {
          due += absl::Seconds(gap(random));
          const absl::Duration wait = due - absl::Now();
          if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
        }
        const absl::Time start = rate > 0 ? due : absl::Now();
        auto p = client.Predict("bench", {{"", {1, 64}, input}});
        const absl::Time end = absl::Now();
        samples[c].push_back({start, absl::ToDoubleMicroseconds(end - start), p.ok()});
        if (p.ok() && p->model_version != last_seen.load(std::memory_order_relaxed)) {
          std::lock_guard lock(seen_mu);
          last_seen = p->model_version;
          seen_changed.notify_all();
        }
      }
    });
  }
  std::vector<std::pair<absl::Time, absl::Time>> windows;
  std::vector<double> swap_ms;
  absl::SleepFor(absl::Milliseconds(300));  // steady state before the first swap
  absl::Status failure;
  const int swaps = rate > 0 || options.saturated_swaps <= 0 ? options.swaps
                                                             : options.saturated_swaps;
  const int64_t background_ns = BackgroundCpuNs(fleet.agent_pid());
  for (int s = 0; s < swaps && failure.ok(); ++s) {
    // Cycling through the versions, the one assigned is never the one kept as previous: each
    // swap loads a module.
    const int version = control ? ((*next_version - 1) % options.versions) + 1
                                : (*next_version % options.versions) + 1;
    if (!control) ++*next_version;
    const absl::Time assigned = absl::Now();
    failure = fleet.Assign(version);
    if (control) {
      windows.push_back({assigned, assigned + *control});
      swap_ms.push_back(0);
      absl::SleepFor(*control + absl::Milliseconds(150));  // the window, then steady state
      continue;
    }
    // Until the first answer from the new module, to any client.
    if (failure.ok()) {
      std::unique_lock lock(seen_mu);
      if (!seen_changed.wait_until(lock, absl::ToChronoTime(assigned + absl::Seconds(30)),
                                   [&] { return last_seen.load() == version; })) {
        failure = absl::DeadlineExceededError("swap never happened");
      }
    }
    const absl::Time serving = absl::Now();
    windows.push_back({assigned, serving + absl::Milliseconds(20)});
    swap_ms.push_back(absl::ToDoubleMilliseconds(serving - assigned));
    absl::SleepFor(absl::Milliseconds(150));  // steady state between swaps
  }
  const int64_t background_used_ns = BackgroundCpuNs(fleet.agent_pid()) - background_ns;
  done = true;
  for (auto& t : threads) t.join();
  RETURN_IF_ERROR(failure);

  RunResult r;
  r.background_cpu_us = static_cast<double>(background_used_ns) / 1000.0 / std::max(swaps, 1);
  r.mode = absl::StrCat(rate > 0 ? absl::StrFormat("%.0f/s", rate) : "saturated",
                        control ? ", sync only" : "");
  r.swaps = static_cast<int>(windows.size());
  std::vector<double> steady, swapping;
  std::vector<std::vector<double>> by_window(windows.size());
  for (const auto& per_client : samples) {
    for (const Sample& s : per_client) {
      ++r.requests;
      if (!s.ok) {
        ++r.failed;
        continue;
      }
      // Windows are in time order and do not overlap: the last one starting before s.
      auto after = std::upper_bound(
          windows.begin(), windows.end(), s.start,
          [](absl::Time t, const std::pair<absl::Time, absl::Time>& w) { return t < w.first; });
      if (after != windows.begin() && s.start <= std::prev(after)->second) {
        swapping.push_back(s.us);
        by_window[std::prev(after) - windows.begin()].push_back(s.us);
      } else {
        steady.push_back(s.us);
      }
    }
  }
  r.steady = Summarize(steady);
  r.swapping = Summarize(swapping);
  if (!options.calls_csv.empty()) {
    // run,kind,start_us,value: "window" rows give each window's start and end, "call" rows
    // each call's due time and latency; times in µs since the first window opened.
    std::ofstream csv(options.calls_csv, std::ios::app);
    const absl::Time t0 = windows.empty() ? absl::Now() : windows.front().first;
    auto us = [&](absl::Time t) { return absl::ToInt64Microseconds(t - t0); };
    for (const auto& [from, to] : windows) {
      csv << r.mode << ",window," << us(from) << "," << us(to) << "\n";
    }
    for (const auto& per_client : samples) {
      for (const Sample& s : per_client) {
        csv << r.mode << ",call," << us(s.start) << "," << (s.ok ? s.us : -1) << "\n";
      }
    }
  }
  if (r.steady.p99 > 0) {
    std::tie(r.ratio_low, r.ratio_high) = RatioInterval(by_window, r.steady.p99);
  }
  std::sort(swap_ms.begin(), swap_ms.end());
  r.assign_to_serving_ms_p50 = swap_ms[swap_ms.size() / 2];
  r.assign_to_serving_ms_max = swap_ms.back();
  return r;
}

int Main(int argc, char** argv) {
  Options options;
  FlagSet flags;
  flags.Int("swaps", &options.swaps, "reassignments per run");
  flags.Int("saturated-swaps", &options.saturated_swaps,
            "reassignments in the saturated runs, if not --swaps (a saturated one-core device "
            "swaps in about a second: the agent waits for idle CPU)");
  flags.Int("clients", &options.clients, "application threads calling Predict");
  flags.Double("rate", &options.rate, "requests per second in the steady-rate run (all clients)");
  flags.Int("versions", &options.versions, "versions cycled through (each swap loads a module)");
  flags.String("json", &options.json, "where to write the results");
  flags.String("calls-csv", &options.calls_csv,
               "also write every call (due time, latency) and window to this CSV");
  flags.String("layout", &options.layout,
               "split: the server on the last CPU, the agent and applications on the others; "
               "shared: all on all CPUs, the server at idle priority");
  if (std::optional<int> exit_code = ParseFlags(flags, argc, argv)) return *exit_code;
  if (options.versions < 3) options.versions = 3;  // 2 would only flip active and previous

  if (options.layout != "split" && options.layout != "shared") {
    std::fprintf(stderr, "hotswap_bench: --layout is split or shared, not %s\n",
                 options.layout.c_str());
    return 2;
  }
  // Each run appends its calls; a file left by an earlier bench must not mix with them.
  if (!options.calls_csv.empty()) std::ofstream(options.calls_csv, std::ios::trunc);
  const CpuSplit cpus = CpuSplit::Make(options.layout == "split");
  Fleet fleet;
  if (absl::Status s = fleet.Start(options.versions, cpus); !s.ok()) {
    std::fprintf(stderr, "hotswap_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  int next_version = 0;
  if (absl::Status s = fleet.Assign(1); !s.ok()) return 1;
  ++next_version;
  // The applications' gRPC runtime belongs on the device too: its timer, executor and
  // event-engine threads start with this process's first channel and inherit the affinity of
  // the thread that starts them. Started from the operator's CPU, they left the clients'
  // calls waiting on threads that share a CPU with the server (the device's CPU idled while
  // the server handled an assignment).
  CpuSplit::RunOn(cpus.device);
  client::LocalClient client(fleet.socket());
  for (int i = 0; i < 600; ++i) {
    auto m = client.ListModels();
    if (m.ok() && m->models_size() > 0) break;
    absl::SleepFor(absl::Milliseconds(50));
  }

  // Predict's overhead: the same module called in this process versus through the socket, by
  // an application on the device.
  const std::vector<float> input(64, 0.25f);
  std::vector<double> rpc_us, local_us;
  for (int i = 0; i < 2000; ++i) {
    const absl::Time t = absl::Now();
    if (!client.Predict("bench", {{"", {1, 64}, input}}).ok()) return 1;
    rpc_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t));
  }
  auto module = compiler::LoadedModule::Load(fleet.active_module_path());
  if (!module.ok()) {
    std::fprintf(stderr, "hotswap_bench: %s\n", module.status().ToString().c_str());
    return 1;
  }
  std::vector<float> out(10);
  std::vector<char> workspace((*module)->module().workspace_bytes + 64);
  const void* ins[] = {input.data()};
  void* outs[] = {out.data()};
  for (int i = 0; i < 2000; ++i) {
    const absl::Time t = absl::Now();
    (*module)->module().run(workspace.data(), ins, outs);
    local_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t));
  }
  const Percentiles rpc = Summarize(rpc_us), local = Summarize(local_us);
  CpuSplit::RunOn(cpus.control);

  std::vector<RunResult> runs;
  for (double rate : {options.rate, 0.0}) {
    auto r = RunSwaps(fleet, options, cpus, rate, &next_version);
    if (!r.ok()) {
      std::fprintf(stderr, "hotswap_bench: %s\n%s\n", r.status().ToString().c_str(),
                   fleet.log().c_str());
      return 1;
    }
    runs.push_back(*r);
  }
  // Controls: the same loads and reassignments without a swap, windows as long as the swaps'
  // were at that load. What a control measures above 1.0× is the reassignment's other work
  // plus this machine's noise: the floor under the ratio above it.
  const size_t swapped_runs = runs.size();
  for (size_t k = 0; k < swapped_runs; ++k) {
    const double rate = k == 0 ? options.rate : 0.0;
    const absl::Duration window = absl::Milliseconds(runs[k].assign_to_serving_ms_p50 + 20);
    auto r = RunSwaps(fleet, options, cpus, rate, &next_version, window);
    if (!r.ok()) return 1;
    runs.push_back(*r);
  }
  // The agent's own verified → serving times (load + publish), from its log.
  std::vector<double> verified_us;
  const std::regex field("\"verified_to_serving_us\":([0-9]+)");
  const std::string log = fleet.log();
  for (auto it = std::sregex_iterator(log.begin(), log.end(), field); it != std::sregex_iterator();
       ++it) {
    verified_us.push_back(std::stod((*it)[1]));
  }
  const Percentiles verified = Summarize(verified_us);

  std::printf(
      "\nPredict on the agent's Unix socket while the model is swapped; latency in µs; %s\n"
      "%-22s %9s %6s | %8s %8s %8s | %8s %8s %8s %7s %11s | %6s %10s %10s %9s\n",
      cpus.shared() ? "server and device share all CPUs (server at idle priority)"
                    : "server on the last CPU, agent and applications on the others",
      "clients", "requests", "failed", "p50", "p99", "p99.9", "swap p50", "swap p99", "p99.9",
      "p99 x", "95% CI", "swaps", "assign→srv", "max", "agent CPU");
  for (const RunResult& r : runs) {
    std::printf(
        "%-22s %9lld %6lld | %8.1f %8.1f %8.1f | %8.1f %8.1f %8.1f %6.2fx %5.2f–%4.2fx | %6d "
        "%8.1fms %8.1fms %7.0fµs\n",
        r.mode.c_str(), static_cast<long long>(r.requests), static_cast<long long>(r.failed),
        r.steady.p50, r.steady.p99, r.steady.p999, r.swapping.p50, r.swapping.p99, r.swapping.p999,
        r.steady.p99 > 0 ? r.swapping.p99 / r.steady.p99 : 0, r.ratio_low, r.ratio_high, r.swaps,
        r.assign_to_serving_ms_p50, r.assign_to_serving_ms_max, r.background_cpu_us);
  }
  std::printf("agent CPU: the agent's sync and watch threads' CPU time per reassignment\n");
  std::printf(
      "agent verified→serving (load, self-test, warm-up, publish): p50 %.0f µs, p99 %.0f µs over "
      "%lld swaps\nPredict p50 %.1f µs vs the module in-process %.2f µs: %.1f µs of overhead\n",
      verified.p50, verified.p99, static_cast<long long>(verified.n), rpc.p50, local.p50,
      rpc.p50 - local.p50);

  std::string json =
      absl::StrCat("{\"layout\":\"", cpus.shared() ? "shared" : "split", "\",\"runs\":[");
  for (const RunResult& r : runs) {
    absl::StrAppend(
        &json, json.back() == '[' ? "\n " : ",\n ",
        absl::StrFormat(
            R"({"mode":"%s","requests":%d,"failed":%d,"steady":{"n":%d,"p50_us":%.1f,"p99_us":%.1f,"p999_us":%.1f},)"
            R"("swapping":{"n":%d,"p50_us":%.1f,"p99_us":%.1f,"p999_us":%.1f},)"
            R"("p99_ratio_ci95":[%.3f,%.3f],"swaps":%d,)"
            R"("assign_to_serving_ms_p50":%.1f,"assign_to_serving_ms_max":%.1f,)"
            R"("agent_background_cpu_us":%.0f})",
            r.mode, r.requests, r.failed, r.steady.n, r.steady.p50, r.steady.p99, r.steady.p999,
            r.swapping.n, r.swapping.p50, r.swapping.p99, r.swapping.p999, r.ratio_low,
            r.ratio_high, r.swaps, r.assign_to_serving_ms_p50, r.assign_to_serving_ms_max,
            r.background_cpu_us));
  }
  absl::StrAppend(
      &json, absl::StrFormat("\n],\"verified_to_serving_us\":{\"n\":%d,\"p50\":%.0f,\"p99\":%.0f},"
                             "\"predict_p50_us\":%.1f,\"in_process_p50_us\":%.2f}\n",
                             verified.n, verified.p50, verified.p99, rpc.p50, local.p50));
  WriteResults(options.json, json);
  for (const RunResult& r : runs) {
    if (r.failed > 0) return 1;  // the one result that is not a number to look at
  }
  return 0;
}

}  // namespace
}  // namespace edgeloop::bench

int main(int argc, char** argv) { return edgeloop::bench::Main(argc, argv); }
