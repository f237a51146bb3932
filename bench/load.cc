#include "bench/load.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

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

std::string MeasurementJson(const Measurement& m) {
  return absl::StrFormat(
      R"({"ops":%d,"errors":%d,"seconds":%.3f,"ops_per_second":%.1f,"p50_ms":%.3f,"p99_ms":%.3f})",
      m.ops, m.errors, m.seconds, m.rate(), m.p50_ms, m.p99_ms);
}

}  // namespace edgeloop::bench
