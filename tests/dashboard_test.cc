// The console dashboards in a real browser: Debian's Prometheus scrapes a live server whose
// agents served and reported calls, serves deploy/prometheus/consoles, and headless Chromium
// loads the pages. The numbers they show must be the server's own (devices, calls), the graphs
// must draw, and screenshots are kept as test artifacts (<build>/test-artifacts/).
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/client/local_client.h"
#include "common/file_util.h"
#include "compiler/testing/onnx_models.h"
#include "edgeloop/v1/device.pb.h"
#include "edgeloop/v1/telemetry.pb.h"
#include "tests/testing/serving_fixture.h"

namespace edgeloop::tests {
namespace {

namespace fs = std::filesystem;

constexpr char kChromium[] = "/usr/bin/chromium";

class DashboardTest : public ServingTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--sync-interval-seconds", "1", "--telemetry-window-seconds", "1"};
  }

  void TearDown() override {
    if (prometheus_pid_ > 0) {
      ::kill(prometheus_pid_, SIGTERM);
      int status = 0;
      ::waitpid(prometheus_pid_, &status, 0);
    }
    ServingTest::TearDown();
  }

  // Prometheus on a free port, scraping the server every second with edgeloop's rules and
  // serving its console pages from the source tree.
  void StartPrometheus() {
    const std::string dir = options_.data_dir + "/prometheus";
    fs::create_directories(dir);
    const std::string deploy = std::string(EDGELOOP_SOURCE_DIR) + "/deploy/prometheus";
    ASSERT_TRUE(WriteFileAtomically(
                    dir + "/prometheus.yml",
                    absl::StrCat("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n",
                                 "rule_files: [\"", deploy, "/edgeloop-telemetry.rules.yml\"]\n",
                                 "scrape_configs:\n  - job_name: edgeloop-server\n",
                                 "    static_configs: [{targets: [\"127.0.0.1:",
                                 server_->http_port(), "\"]}]\n"))
                    .ok());
    prometheus_port_ = PickFreePort();
    prometheus_pid_ = Spawn(
        {"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
         "--storage.tsdb.path=" + dir + "/data", "--web.console.templates=" + deploy + "/consoles",
         "--web.console.libraries=" + deploy + "/console_libraries",
         absl::StrCat("--web.listen-address=127.0.0.1:", prometheus_port_)},
        {}, dir + "/out.log", dir + "/prometheus.log");
    ASSERT_GT(prometheus_pid_, 0);
  }

  // The one number `expr` evaluates to in Prometheus now; nullopt while it has none.
  std::optional<double> PromQuery(const std::string& expr) {
    std::string encoded;
    for (char c : expr) {
      if (std::isalnum(static_cast<unsigned char>(c))) {
        encoded += c;
      } else {
        absl::StrAppend(&encoded, "%", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
      }
    }
    auto r = HttpClient(prometheus_port_).Get("/api/v1/query?query=" + encoded);
    if (!r.ok() || r->status != 200) return std::nullopt;
    static const std::regex value(R"re("value":\[[0-9.]+,"([^"]+)"\])re");
    std::smatch m;
    double v = 0;
    if (!std::regex_search(r->body, m, value) || !absl::SimpleAtod(m[1].str(), &v)) {
      return std::nullopt;
    }
    return v;
  }

  // What the browser shows of `page` once its scripts ran: the DOM, and a screenshot saved
  // under <build>/test-artifacts/<name>.png.
  std::string Browse(const std::string& page, const std::string& name) {
    const std::string url = absl::StrCat("http://127.0.0.1:", prometheus_port_, "/consoles/", page);
    const std::vector<std::string> browser = {kChromium,
                                              "--headless",
                                              "--no-sandbox",  // we run as root
                                              "--disable-gpu",
                                              "--hide-scrollbars",
                                              "--window-size=1280,1500",
                                              "--virtual-time-budget=10000"};
    std::vector<std::string> dump = browser;
    dump.insert(dump.end(), {"--dump-dom", url});
    CommandResult dom = RunCommand(dump);
    EXPECT_EQ(dom.exit_code, 0) << dom.err;

    const std::string artifacts = std::string(EDGELOOP_BIN_DIR) + "/../test-artifacts";
    fs::create_directories(artifacts);
    const std::string png = artifacts + "/" + name + ".png";
    fs::remove(png);
    std::vector<std::string> shot = browser;
    shot.insert(shot.end(), {"--screenshot=" + png, url});
    CommandResult taken = RunCommand(shot);
    EXPECT_EQ(taken.exit_code, 0) << taken.err;
    auto bytes = ReadFile(png);
    EXPECT_TRUE(bytes.ok() && absl::StartsWith(*bytes, "\x89PNG\r\n\x1a\n") &&
                bytes->size() > 10'000)
        << png;
    return dom.out;
  }

  pid_t prometheus_pid_ = -1;
  int prometheus_port_ = 0;
};

// The text of the element with `id` in `dom`.
std::string ElementText(const std::string& dom, const std::string& id) {
  const std::regex element("id=\"" + id + "\"[^>]*>([^<]*)<");
  std::smatch m;
  return std::regex_search(dom, m, element) ? std::string(m[1].str()) : "(no #" + id + ")";
}

TEST_P(DashboardTest, ConsolesShowTheServersNumbersAndDraw) {
  // Two devices at two sites, serving one model; 30 calls on one and 12 on the other.
  auto a = StartAgent({"--telemetry-spread-seconds", "0"}, R"({"site":"plant-1"})");
  auto b = StartAgent({"--telemetry-spread-seconds", "0"}, R"({"site":"plant-2"})");
  client::LocalClient client_a(a->state_dir() + "/agent.sock");
  client::LocalClient client_b(b->state_dir() + "/agent.sock");
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"kws"})").status, 201);
  std::vector<float> set;
  for (int k = 0; k < 8; ++k) {
    const std::vector<float> x = Input(16, 0.2f * static_cast<float>(k + 1));
    set.insert(set.end(), x.begin(), x.end());
  }
  const int64_t v1 = Push("kws", compiler::testing::MlpOnnx(std::vector<int>{16, 32, 4}, 1),
                          absl::StrCat(R"(,"validationDigest":")",
                                       Upload(compiler::testing::ValidationSetOnnx(
                                           "input", {8, 16}, set, {0, 1, 2, 3, 0, 1, 2, 3})),
                                       "\""));
  ASSERT_GT(v1, 0);
  for (const auto* agent : {a.get(), b.get()}) Assign("kws", v1, agent->device_id());
  ASSERT_TRUE(WaitServing(client_a, "kws", v1)) << a->log();
  ASSERT_TRUE(WaitServing(client_b, "kws", v1)) << b->log();
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(a->log(), "\"msg\":\"monitoring\"") &&
           absl::StrContains(b->log(), "\"msg\":\"monitoring\"");
  }));
  const std::vector<std::pair<client::LocalClient*, int>> calls = {{&client_a, 30},
                                                                   {&client_b, 12}};
  for (auto [client, n] : calls) {
    for (int k = 0; k < n; ++k) {
      auto p =
          client->Predict("kws", {{"input", {1, 16}, Input(16, 0.05f * static_cast<float>(k))}});
      ASSERT_TRUE(p.ok()) << p.status();
      if (k % 3 == 0) {
        ASSERT_TRUE(client->Feedback(p->request_id, k % 4).ok());
      }
    }
  }

  // What the server says: its devices, and the calls its telemetry API counts.
  v1::ListDevicesResponse devices;
  ASSERT_TRUE(ParseProtoJson(Call("GET", "/v1/devices").body, &devices).ok());
  ASSERT_EQ(devices.devices_size(), 2);
  int64_t server_calls = 0;
  ASSERT_TRUE(Eventually([&] {
    v1::ModelTelemetry t;
    ParseProtoJson(Call("GET", "/v1/models/kws/telemetry").body, &t).IgnoreError();
    server_calls = t.versions_size() == 1 ? t.versions(0).total().requests() : 0;
    return server_calls == 42;
  })) << "the server counted "
      << server_calls << " calls";

  StartPrometheus();
  // Scraped, and the recording rules evaluated, with everything the server has.
  ASSERT_TRUE(Eventually(
      [&] {
        return PromQuery("sum(edgeloop_model_requests_total)") == 42.0 &&
               PromQuery(
                   "sum(max by (target, connectivity) "
                   "(edgeloop_devices{status=\"ACTIVE\"}))") == 2.0 &&
               PromQuery("count(edgeloop:model_requests:rate5m)") == 2.0 &&
               PromQuery("count(edgeloop_model_cohort_drifted_feature_ratio)") == 2.0;
      },
      absl::Seconds(60)))
      << ReadFile(options_.data_dir + "/prometheus/prometheus.log").value_or("");

  const std::string fleet = Browse("edgeloop-fleet.html", "dashboard-fleet");
  EXPECT_EQ(ElementText(fleet, "devices-active"), std::to_string(devices.devices_size()));
  EXPECT_EQ(ElementText(fleet, "devices-online"), "2");
  EXPECT_EQ(ElementText(fleet, "requests-total"), std::to_string(server_calls));
  EXPECT_TRUE(absl::StrContains(fleet, "edgeloop-model.html?model=kws")) << fleet;
  // PromConsole drew the graphs from query_range: an SVG each, a legend entry per series.
  EXPECT_TRUE(absl::StrContains(fleet, "<svg")) << fleet;
  EXPECT_FALSE(absl::StrContains(fleet, "Error loading data")) << fleet;

  const std::string model = Browse("edgeloop-model.html?model=kws", "dashboard-model");
  const std::regex version_row("<tr id=\"version-1\">\\s*<td[^>]*>1</td>\\s*<td[^>]*>([0-9]+)<");
  std::smatch row;
  ASSERT_TRUE(std::regex_search(model, row, version_row)) << model;
  EXPECT_EQ(row[1].str(), std::to_string(server_calls));
  EXPECT_TRUE(absl::StrContains(model, "plant-1")) << model;
  EXPECT_TRUE(absl::StrContains(model, "plant-2")) << model;
  // Each cohort's drift: judged on too few values yet, so none drifted (and not "-").
  const std::regex cohort_row(
      "<td>plant-1</td>(\\s*<td[^>]*>[^<]*</td>){4}\\s*<td[^>]*>([^<]*)</td>");
  ASSERT_TRUE(std::regex_search(model, row, cohort_row)) << model;
  EXPECT_EQ(row[2].str(), "0 %");
  EXPECT_TRUE(absl::StrContains(model, "<svg")) << model;
  EXPECT_FALSE(absl::StrContains(model, "Error loading data")) << model;
}

// What the pages show does not depend on the database behind the server.
INSTANTIATE_TEST_SUITE_P(Storage, DashboardTest, ::testing::Values("sqlite"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
