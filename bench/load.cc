#include "bench/load.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"

namespace edgeloop::bench {

Measurement RunClients(int clients, double seconds,
                       const std::function<std::function<bool()>()>& make) {
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<int64_t> errors{0};
  std::vector<std::function<bool()>> ops;
  for (int c = 0; c < clients; ++c) ops.push_back(make());
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      while (absl::Now() < end) {
        const absl::Time t0 = absl::Now();
        if (!ops[c]()) {
          ++errors;
          continue;
        }
        latencies[c].push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
      }
    });
  }
  for (auto& t : threads) t.join();
  Measurement m;
  m.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  m.ops = static_cast<int64_t>(all.size());
  m.errors = errors;
  if (!all.empty()) {
    m.p50_ms = all[all.size() / 2];
    m.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return m;
}

std::optional<int> ParseFlags(FlagSet& flags, int argc, char** argv) {
  bool help = false;
  if (absl::Status s = flags.Parse(std::vector<std::string>(argv + 1, argv + argc), &help);
      !s.ok() || help) {
    std::fprintf(help ? stdout : stderr, "%s\n%s", std::string(s.message()).c_str(),
                 flags.Usage().c_str());
    return help ? 0 : 2;
  }
  return std::nullopt;
}

std::optional<int> ParseRunSettings(int argc, char** argv, RunSettings* settings,
                                    const std::function<void(FlagSet&)>& extra) {
  std::string backends = absl::StrJoin(settings->backends, ",");
  FlagSet flags;
  flags.Double("seconds", &settings->seconds, "seconds per measurement");
  flags.Int("clients", &settings->clients, "client threads, each with its own connection");
  flags.String("backends", &backends, "comma-separated: sqlite,postgres");
  flags.String("json", &settings->json, "where to write the results");
  if (extra) extra(flags);
  if (std::optional<int> exit_code = ParseFlags(flags, argc, argv)) return exit_code;
  settings->backends = absl::StrSplit(backends, ',', absl::SkipEmpty());
  return std::nullopt;
}

std::string MeasurementJson(const Measurement& m) {
  return absl::StrFormat(
      R"({"ops":%d,"errors":%d,"seconds":%.3f,"ops_per_second":%.1f,"p50_ms":%.3f,"p99_ms":%.3f})",
      m.ops, m.errors, m.seconds, m.rate(), m.p50_ms, m.p99_ms);
}

bool WriteResults(const std::string& path, const std::string& json) {
  if (path.empty()) return true;
  std::error_code error;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  if (absl::Status s = WriteFileAtomically(path, json); !s.ok()) {
    std::fprintf(stderr, "could not write the results: %s\n", s.ToString().c_str());
    return false;
  }
  std::printf("wrote %s\n", path.c_str());
  return true;
}

}  // namespace edgeloop::bench
