// Telemetry ingestion: windows stored per second by TelemetryIngest (reports from many devices
// group-committed by one writer, multi-row INSERT on SQLite, COPY on PostgreSQL) against the
// same windows stored the plain way, each report in a transaction of its own. Both on the real
// databases (PostgreSQL started for the run), side by side:
//   build/bin/ingest_bench [--seconds 3] [--clients 16] [--backends sqlite,postgres]
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "bench/load.h"
#include "common/latency_buckets.h"
#include "common/prediction.h"
#include "common/random.h"
#include "common/signing.h"
#include "common/status.h"
#include "common/telemetry_window.h"
#include "compiler/testing/onnx_models.h"
#include "fleet/testing/profiles.h"
#include "fleet/testing/test_fleet.h"
#include "telemetry/ingest.h"
#include "telemetry/schema.h"

namespace edgeloop::bench {
namespace {

constexpr char kModel[] = "sensor";
constexpr int64_t kWindowMs = 60'000;

struct Setup {
  std::unique_ptr<fleet::testing::TestFleet> fleet;
  std::unique_ptr<crypto::SigningKey> signer;
  std::unique_ptr<telemetry::MonitoringSpecs> specs;
  int64_t model_id = 0;
  std::vector<std::string> devices;
  v1::TelemetryWindow prototype;  // what an agent with the version's spec sends
};

absl::StatusOr<Setup> Prepare(const std::string& backend, const std::string& dir, int devices) {
  Setup s;
  ASSIGN_OR_RETURN(
      s.fleet, fleet::testing::TestFleet::Create({.driver = backend,
                                                  .dir = dir,
                                                  .clock = SystemClock::Get(),
                                                  .more_components = {&telemetry::Migrations()}}));
  ASSIGN_OR_RETURN(s.signer, crypto::SigningKey::LoadOrCreate(dir + "/signing.key"));
  s.specs = std::make_unique<telemetry::MonitoringSpecs>(telemetry::MonitoringOptions{
      .database = s.fleet->db.get(), .clock = SystemClock::Get(), .signer = s.signer.get()});
  ASSIGN_OR_RETURN(s.model_id, s.fleet->AddModel(kModel, compiler::testing::MlpOnnx(8, 16, 4),
                                                 {{1, {"x86_64-v1"}}}));
  const v1::HardwareProfile profile =
      fleet::testing::Profile("x86_64", {"cmov", "cx8", "fpu", "fxsr", "mmx", "sse", "sse2"}, 4096);
  for (int i = 0; i < devices; ++i) {
    ASSIGN_OR_RETURN(std::string id,
                     s.fleet->EnrollDevice(profile, {{"site", absl::StrCat("site-", i % 4)}}));
    s.devices.push_back(std::move(id));
  }
  ASSIGN_OR_RETURN(std::optional<v1::MonitoringSpec> spec, s.specs->Spec(s.model_id, kModel, 1));
  v1::TelemetryWindow& w = s.prototype;
  w.set_model(kModel);
  w.set_version(1);
  w.set_module_digest(fleet::testing::TestFleet::ModuleDigest(kModel, 1, "x86_64-v1"));
  w.set_requests(600);
  for (size_t k = 0; k < kLatencyBuckets; ++k) w.add_latency_counts(k == 6 ? 600 : 0);
  for (const auto& f : spec->features()) {
    v1::TelemetryWindow::Feature* out = w.add_features();
    out->set_name(f.feature().name());
    for (int k = 0; k < spec->sample_values(); ++k) out->add_samples(0.01f * k);
  }
  for (int c = 0; c < 4; ++c) w.add_class_counts(150);
  for (int k = 0; k < kConfidenceBins; ++k) w.add_confidence_counts(k == 19 ? 600 : 0);
  return s;
}

// A client's next window: its own devices, each window one earlier than its last, so every
// window is new (a retention of years keeps them all acceptable).
struct Cursor {
  std::vector<std::string> devices;
  int64_t back = 0;
  size_t next = 0;
  // Moves to the next device (device() names it) and makes its window.
  v1::TelemetryWindow Next(const v1::TelemetryWindow& prototype, int64_t base_ms) {
    if (++next % devices.size() == 0) ++back;
    v1::TelemetryWindow w = prototype;
    w.set_start_ms(base_ms - back * kWindowMs);
    w.set_end_ms(w.start_ms() + kWindowMs);
    w.set_id(TelemetryWindowId(w.model(), w.version(), w.start_ms()));
    return w;
  }
  const std::string& device() const { return devices[(next - 1) % devices.size()]; }
};

absl::StatusOr<std::vector<std::pair<std::string, Measurement>>> Run(const std::string& backend,
                                                                     const RunSettings& settings,
                                                                     int devices_per_client) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           absl::StrCat("edgeloop-ingest-bench-", RandomHex(6)))
                              .string();
  std::filesystem::create_directories(dir);
  ASSIGN_OR_RETURN(Setup s, Prepare(backend, dir, settings.clients * devices_per_client));
  const int64_t now = absl::ToUnixMillis(absl::Now());
  std::atomic<int> next_client{0};
  auto cursor = [&](int64_t offset) {
    const int c = next_client++ % settings.clients;
    Cursor cur;
    for (int i = 0; i < devices_per_client; ++i) {
      cur.devices.push_back(s.devices[static_cast<size_t>(c * devices_per_client + i)]);
    }
    cur.back = offset;
    return cur;
  };
  std::vector<std::pair<std::string, Measurement>> results;

  // Each report in its own transaction, as a server without a writer would store it.
  const int64_t base = now - now % kWindowMs - 2 * kWindowMs;
  results.emplace_back(
      "one transaction per report", RunClients(settings.clients, settings.seconds, [&] {
        auto cur = std::make_shared<Cursor>(cursor(0));
        return [&, cur]() {
          telemetry::IncomingWindow in;
          in.window = cur->Next(s.prototype, base);
          in.device_id = cur->device();
          in.model_id = s.model_id;
          in.target = "x86_64-v1";
          in.cohort = "site-0";
          return store::RunInTransaction(
                     *s.fleet->db,
                     [&](store::Transaction& tx) -> absl::Status {
                       ASSIGN_OR_RETURN(std::vector<bool> fresh,
                                        telemetry::WindowStore::Store(
                                            tx, s.fleet->db->dialect(), {in}, absl::Seconds(60),
                                            absl::ToUnixMillis(absl::Now())));
                       return telemetry::WindowStore::CountReport(tx, in.device_id,
                                                                  fresh[0] ? 1 : 0, 0, 0, "",
                                                                  absl::ToUnixMillis(absl::Now()));
                     })
              .ok();
        };
      }));

  // The same load through TelemetryIngest: every client's report waits for the group commit.
  telemetry::IngestOptions options;
  options.database = s.fleet->db.get();
  options.clock = SystemClock::Get();
  options.specs = s.specs.get();
  options.cohort_label = "site";
  options.device_windows_per_minute = 1e9;
  options.device_burst_windows = 1e9;
  options.bounds.max_age = absl::Hours(24 * 365 * 20);
  options.raw_retention = options.bounds.max_age;
  telemetry::TelemetryIngest ingest(options);
  ingest.Start();
  next_client = 0;
  results.emplace_back(
      "TelemetryIngest (group commit)", RunClients(settings.clients, settings.seconds, [&] {
        // Older windows than the first run's, so none is a duplicate.
        auto cur = std::make_shared<Cursor>(cursor(1'000'000));
        return [&, cur]() {
          v1::ReportTelemetryRequest request;
          request.set_format(kTelemetryFormat);
          *request.add_windows() = cur->Next(s.prototype, base);
          absl::StatusOr<v1::ReportTelemetryResponse> r = ingest.Report(cur->device(), request);
          return r.ok() && r->stored_size() == 1;
        };
      }));
  ingest.Stop();
  s = Setup();
  std::filesystem::remove_all(dir);
  return results;
}

}  // namespace
}  // namespace edgeloop::bench

int main(int argc, char** argv) {
  edgeloop::bench::RunSettings settings;
  settings.clients = 16;
  int devices_per_client = 4;
  if (auto exit_code =
          edgeloop::bench::ParseRunSettings(argc, argv, &settings, [&](edgeloop::FlagSet& f) {
            f.Int("devices-per-client", &devices_per_client,
                  "devices each client sends for (default 4)");
          })) {
    return *exit_code;
  }
  std::printf("%-10s | %-32s | %10s | %8s | %8s | %6s\n", "backend", "how windows are stored",
              "windows/s", "p50 ms", "p99 ms", "errors");
  for (const std::string& backend : settings.backends) {
    auto results = edgeloop::bench::Run(backend, settings, devices_per_client);
    if (!results.ok()) {
      std::fprintf(stderr, "ingest_bench: %s: %s\n", backend.c_str(),
                   results.status().ToString().c_str());
      return 1;
    }
    for (const auto& [how, m] : *results) {
      std::printf("%-10s | %-32s | %10.0f | %8.2f | %8.2f | %6lld\n", backend.c_str(), how.c_str(),
                  m.rate(), m.p50_ms, m.p99_ms, static_cast<long long>(m.errors));
    }
  }
  return 0;
}
