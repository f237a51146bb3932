// The fleet end to end: a real edgeloop-server and real edgeloop-agent processes.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/proto_json.h"
#include "common/x509.h"
#include "edgeloop/v1/device.grpc.pb.h"
#include "tests/testing/fixture.h"
#include "tests/testing/http_client.h"

namespace edgeloop::tests {
namespace {

class FleetTest : public ServerTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--sync-interval-seconds", "1", "--offline-after-seconds", "5"};
  }

  std::unique_ptr<grpc::ClientContext> Context() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", Bearer(admin_));
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return c;
  }
  v1::FleetService::Stub& Fleet() {
    if (!fleet_) {
      fleet_ = v1::FleetService::NewStub(
          grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials()));
    }
    return *fleet_;
  }

  std::string EnrollmentToken(const std::string& labels_json, int max_uses, int ttl_seconds = 3600,
                              absl::Time* expires = nullptr) {
    auto r = HttpClient(server_->http_port())
                 .Request("POST", "/v1/enrollment-tokens",
                          absl::StrCat(R"({"labels":)", labels_json, R"(,"maxUses":)", max_uses,
                                       R"(,"ttlSeconds":)", ttl_seconds, "}"),
                          {{"Authorization", Bearer(admin_)}});
    EXPECT_TRUE(r.ok() && r->status == 201) << (r.ok() ? r->body : r.status().ToString());
    v1::CreateEnrollmentTokenResponse created;
    EXPECT_TRUE(ParseProtoJson(r->body, &created).ok());
    if (expires != nullptr) {
      *expires = absl::FromUnixSeconds(created.token().expire_time().seconds()) +
                 absl::Nanoseconds(created.token().expire_time().nanos());
    }
    return created.secret();
  }

  std::unique_ptr<AgentProcess> StartAgent(const std::string& name, const std::string& token,
                                           const std::string& labels = "") {
    AgentProcess::Options o;
    o.server = server_->device_address();
    o.state_dir = options_.data_dir + "/agent-" + name;
    o.enroll_token = token;
    o.labels = labels;
    o.extra_flags = {"--max-backoff-seconds", "1"};
    auto agent = std::make_unique<AgentProcess>(o);
    agent->Start();
    return agent;
  }

  v1::ListDevicesResponse List(const std::string& selector) {
    v1::ListDevicesRequest r;
    r.set_selector(selector);
    v1::ListDevicesResponse out;
    grpc::Status s = Fleet().ListDevices(Context().get(), r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  v1::Device Get(const std::string& id) {
    v1::GetDeviceRequest r;
    r.set_id(id);
    v1::Device out;
    EXPECT_TRUE(Fleet().GetDevice(Context().get(), r, &out).ok());
    return out;
  }

  // A DeviceService stub that presents `agent`'s identity (or none).
  std::unique_ptr<v1::DeviceService::Stub> DeviceStub(const AgentProcess* agent) {
    const std::string dir = agent ? agent->state_dir() + "/identity" : "";
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = *ReadFile(options_.data_dir + "/ca/ca.pem");
    if (agent) {
      tls.pem_private_key = *ReadFile(dir + "/key.pem");
      tls.pem_cert_chain = *ReadFile(dir + "/cert.pem");
    }
    return v1::DeviceService::NewStub(
        grpc::CreateChannel(server_->device_address(), grpc::SslCredentials(tls)));
  }

  std::unique_ptr<v1::FleetService::Stub> fleet_;
};

TEST_P(FleetTest, AgentsEnrollSyncAndAreSelectable) {
  std::string token = EnrollmentToken(R"({"site":"plant-3"})", 3);
  auto cam1 = StartAgent("cam1", token, "role=camera");
  auto cam2 = StartAgent("cam2", token, "role=camera");
  auto gw = StartAgent("gw", token, "role=gateway");
  for (auto* a : {cam1.get(), cam2.get(), gw.get()}) ASSERT_TRUE(a->WaitEnrolled()) << a->log();
  // The key the device generated stays private to it.
  struct stat key_stat;
  ASSERT_EQ(::stat((gw->state_dir() + "/identity/key.pem").c_str(), &key_stat), 0);
  EXPECT_EQ(key_stat.st_mode & 0777, 0600u);

  ASSERT_TRUE(Eventually([&] { return List("site=plant-3").devices_size() == 3; }));
  EXPECT_EQ(List("role=camera").devices_size(), 2);
  EXPECT_EQ(List("site=plant-3,role!=camera").devices_size(), 1);
  EXPECT_EQ(List("hw.cores>=1,hw.ram_mb>0").devices_size(), 3);
  v1::Device device = Get(gw->device_id());
  EXPECT_EQ(device.status(), v1::ACTIVE);
  EXPECT_TRUE(device.online());
  EXPECT_FALSE(device.profile().target().empty());
  EXPECT_EQ(List(absl::StrCat("hw.target=", device.profile().target())).devices_size(), 3);
  // Syncs keep coming: the health report moves.
  const double uptime = device.state().health().uptime_seconds();
  ASSERT_TRUE(
      Eventually([&] { return Get(gw->device_id()).state().health().uptime_seconds() > uptime; }));

  // A label edit reaches the agent at once through Watch.
  const std::string cli_token = options_.data_dir + "/admin.token";
  auto cli = [&](std::vector<std::string> words) {
    std::vector<std::string> argv = {BinaryPath("edgeloop"), "--server", server_->grpc_address(),
                                     "--token-file", cli_token};
    argv.insert(argv.end(), words.begin(), words.end());
    return RunCommand(argv);
  };
  CommandResult label = cli({"device", "label", gw->device_id(), "floor=2", "role-"});
  ASSERT_EQ(label.exit_code, 0) << label.err;
  EXPECT_TRUE(absl::StrContains(label.out, "floor=2"));
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(gw->log(), "\"generation\":2"); }))
      << gw->log();
  // It came with the state itself, so the agent did not sync to learn it — unless one of its
  // 1 s syncs happened to be in flight just then; a second edit cannot race that too.
  if (!absl::StrContains(gw->log(), R"("generation":2,"modules":0,"from":"watch")")) {
    ASSERT_EQ(cli({"device", "label", gw->device_id(), "floor=2", "again=1"}).exit_code, 0);
    ASSERT_TRUE(Eventually([&] {
      return absl::StrContains(gw->log(), R"("generation":3,"modules":0,"from":"watch")");
    })) << gw->log();
  }
  {
    // What Watch streams: the generation and the device's desired state with it.
    grpc::ClientContext context;
    v1::WatchRequest request;
    request.set_known_generation(1);
    auto stream = DeviceStub(gw.get())->Watch(&context, request);
    v1::WatchEvent event;
    ASSERT_TRUE(stream->Read(&event));
    EXPECT_GE(event.desired_generation(), 2);
    ASSERT_TRUE(event.has_desired());
    EXPECT_EQ(event.desired().desired_generation(), event.desired_generation());
    EXPECT_TRUE(absl::StrContains(event.desired().module_signing_key(), "PUBLIC KEY"));
    context.TryCancel();
  }
  CommandResult listed = cli({"device", "list", "--selector", "floor=2"});
  EXPECT_TRUE(absl::StrContains(listed.out, gw->device_id())) << listed.out << listed.err;
  EXPECT_FALSE(absl::StrContains(listed.out, cam1->device_id()));

  // Decommissioned: its certificate stops working at once; the others go on.
  CommandResult gone = cli({"device", "decommission", cam2->device_id()});
  ASSERT_EQ(gone.exit_code, 0) << gone.err;
  ASSERT_TRUE(
      Eventually([&] { return absl::StrContains(cam2->log(), "has been decommissioned"); }));
  EXPECT_TRUE(cam2->running());  // it keeps running and retrying, it just is not served
  EXPECT_EQ(Get(cam2->device_id()).status(), v1::DECOMMISSIONED);
  v1::SyncResponse out;
  grpc::ClientContext context;
  EXPECT_EQ(DeviceStub(cam2.get())->Sync(&context, v1::SyncRequest(), &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Get(cam1->device_id()).online());

  // Clean stop on SIGTERM.
  EXPECT_EQ(*cam1->Stop(SIGTERM), 0);
  EXPECT_TRUE(absl::StrContains(cam1->log(), "\"msg\":\"stopped\""));

  // Metrics count devices by status and class, and promtool accepts the exposition.
  auto metrics = HttpClient(server_->http_port()).Get("/metrics");
  EXPECT_TRUE(absl::StrContains(metrics->body, "edgeloop_devices{connectivity=")) << metrics->body;
  EXPECT_TRUE(absl::StrContains(metrics->body, "status=\"DECOMMISSIONED\""));
  std::ofstream(options_.data_dir + "/metrics.txt") << metrics->body;
  CommandResult check = RunCommand(
      {"/bin/sh", "-c", "promtool check metrics < " + options_.data_dir + "/metrics.txt"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

// Desired-state changes in a burst queue one device's stream again while a check thread is
// still reading for it, so two checks can answer one stream at once; only one write may be in
// flight (two crashed the server). The stream ends on the last generation, the server alive.
TEST_P(FleetTest, ABurstOfChangesReachesAWatchStreamInOrder) {
  auto gw = StartAgent("gw", EnrollmentToken(R"({"role":"gateway"})", 1));
  ASSERT_TRUE(Eventually([&] { return !gw->device_id().empty(); }));
  auto stub = DeviceStub(gw.get());
  grpc::ClientContext watch;
  watch.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stream = stub->Watch(&watch, v1::WatchRequest());
  constexpr int kThreads = 4, kEdits = 40;
  v1::FleetService::Stub& fleet = Fleet();  // made here: Fleet() creates it unguarded
  std::vector<std::thread> editors;
  for (int t = 0; t < kThreads; ++t) {
    editors.emplace_back([&, t] {
      for (int k = 0; k < kEdits; ++k) {
        v1::UpdateDeviceRequest r;
        r.set_id(gw->device_id());
        (*r.mutable_labels())[absl::StrCat("editor", t)] = std::to_string(k);
        v1::Device out;
        EXPECT_TRUE(fleet.UpdateDevice(Context().get(), r, &out).ok());
      }
    });
  }
  for (std::thread& t : editors) t.join();
  // A new stream's first event is the generation now.
  v1::WatchEvent now;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto fresh = stub->Watch(&context, v1::WatchRequest());
    ASSERT_TRUE(fresh->Read(&now)) << "the server went away";
    context.TryCancel();
  }
  v1::WatchEvent event;
  int64_t last = 0;
  while (last < now.desired_generation() && stream->Read(&event)) {
    EXPECT_EQ(event.desired().desired_generation(), event.desired_generation());
    EXPECT_GT(event.desired_generation(), 0);
    last = event.desired_generation();
  }
  EXPECT_EQ(last, now.desired_generation());
  watch.TryCancel();
  auto ready = HttpClient(server_->http_port()).Get("/readyz");
  EXPECT_TRUE(ready.ok() && ready->status == 200);
}

TEST_P(FleetTest, BadEnrollmentTokensAreRefusedWithAReason) {
  std::string once = EnrollmentToken("{}", 1);
  auto first = StartAgent("first", once);
  ASSERT_TRUE(first->WaitEnrolled()) << first->log();

  auto used = StartAgent("used", once);
  ASSERT_EQ(*used->WaitExit(), 1);
  EXPECT_TRUE(absl::StrContains(used->log(), "used up")) << used->log();

  absl::Time expires;
  std::string short_lived = EnrollmentToken("{}", 5, 1, &expires);
  // The server judges expiry by its own clock, a real process's: wait until it has passed.
  ASSERT_TRUE(Eventually([&] { return absl::Now() > expires; }));
  auto late = StartAgent("late", short_lived);
  ASSERT_EQ(*late->WaitExit(), 1);
  EXPECT_TRUE(absl::StrContains(late->log(), "expired")) << late->log();

  std::string revoked = EnrollmentToken("{}", 5);
  v1::RevokeEnrollmentTokenRequest revoke;
  revoke.set_id(revoked.substr(0, 16));
  v1::EnrollmentToken ignored;
  ASSERT_TRUE(Fleet().RevokeEnrollmentToken(Context().get(), revoke, &ignored).ok());
  auto refused = StartAgent("revoked", revoked);
  ASSERT_EQ(*refused->WaitExit(), 1);
  EXPECT_TRUE(absl::StrContains(refused->log(), "revoked")) << refused->log();

  std::string forged = revoked.substr(0, 17) + std::string(64, 'f') + revoked.substr(81);
  auto wrong = StartAgent("wrong", forged);
  ASSERT_EQ(*wrong->WaitExit(), 1);
  EXPECT_TRUE(absl::StrContains(wrong->log(), "unknown enrollment token")) << wrong->log();

  // A token whose pin names another CA: the agent will not even talk to this server.
  std::string other_pin = revoked.substr(0, 82) + std::string(64, '0');
  auto pinned = StartAgent("pinned", other_pin);
  ASSERT_EQ(*pinned->WaitExit(), 1);
  EXPECT_TRUE(absl::StrContains(pinned->log(), "does not present the CA")) << pinned->log();

  auto none = StartAgent("none", "");
  ASSERT_EQ(*none->WaitExit(), 1);
  EXPECT_TRUE(absl::StrContains(none->log(), "not enrolled")) << none->log();

  EXPECT_EQ(List("").devices_size(), 1);  // only the first agent
}

TEST_P(FleetTest, IdentitiesCannotBeBorrowedOrForged) {
  std::string token = EnrollmentToken("{}", 2);
  auto a = StartAgent("a", token);
  auto b = StartAgent("b", token);
  ASSERT_TRUE(a->WaitEnrolled() && b->WaitEnrolled());

  // A device cannot act as another device.
  v1::SyncRequest impersonate;
  impersonate.set_device_id(b->device_id());
  v1::SyncResponse out;
  grpc::ClientContext c1;
  grpc::Status s = DeviceStub(a.get())->Sync(&c1, impersonate, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();

  // An operator token does not open device APIs, and no certificate means no device call.
  grpc::ClientContext c2;
  c2.AddMetadata("authorization", Bearer(admin_));
  EXPECT_EQ(DeviceStub(nullptr)->Sync(&c2, v1::SyncRequest(), &out).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // A device certificate does not open operator APIs (they want a bearer token).
  v1::ListDevicesResponse devices;
  grpc::ClientContext c3;
  EXPECT_EQ(Fleet().ListDevices(&c3, v1::ListDevicesRequest(), &devices).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // A certificate from another CA does not get through the handshake.
  const std::string rogue_dir = options_.data_dir + "/rogue";
  auto rogue_ca = crypto::CertificateAuthority::LoadOrCreate(rogue_dir, absl::Now());
  ASSERT_TRUE(rogue_ca.ok());
  auto key = crypto::GenerateKeyAndCsr("x");
  auto rogue_cert =
      (*rogue_ca)->SignClientCsr(key->csr_pem, a->device_id(), absl::Now(), absl::Hours(1));
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = *ReadFile(options_.data_dir + "/ca/ca.pem");
  tls.pem_private_key = key->key_pem;
  tls.pem_cert_chain = *rogue_cert;
  auto rogue = v1::DeviceService::NewStub(
      grpc::CreateChannel(server_->device_address(), grpc::SslCredentials(tls)));
  grpc::ClientContext c4;
  c4.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  EXPECT_NE(rogue->Sync(&c4, v1::SyncRequest(), &out).error_code(), grpc::StatusCode::OK);

  // Absurd profiles are rejected, not stored.
  std::string fresh = EnrollmentToken("{}", 5);
  auto csr = crypto::GenerateKeyAndCsr("d");
  v1::EnrollRequest enroll;
  enroll.set_token(fresh);
  enroll.set_csr_pem(csr->csr_pem);
  enroll.mutable_profile()->set_arch("x86_64");
  enroll.mutable_profile()->set_ram_mb(-1);
  v1::EnrollResponse enrolled;
  grpc::ClientContext c5;
  EXPECT_EQ(DeviceStub(nullptr)->Enroll(&c5, enroll, &enrolled).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  enroll.mutable_profile()->set_ram_mb(512);
  (*enroll.mutable_profile()->mutable_labels())["junk"] = std::string(10 << 20, 'j');
  grpc::ClientContext c6;
  EXPECT_NE(DeviceStub(nullptr)->Enroll(&c6, enroll, &enrolled).error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(List("").devices_size(), 2);
}

TEST_P(FleetTest, AgentRestartKeepsItsIdentity) {
  std::string token = EnrollmentToken(R"({"site":"lab"})", 1);
  auto agent = StartAgent("restart", token);
  ASSERT_TRUE(agent->WaitEnrolled());
  const std::string id = agent->device_id();
  ASSERT_EQ(*agent->Stop(SIGTERM), 0);
  // The token is spent; a restart must not need it again.
  agent = StartAgent("restart", token);
  const absl::Time restarted = absl::Now();
  ASSERT_TRUE(Eventually([&] {
    v1::Device d = Get(id);
    return d.last_seen_time().seconds() >= absl::ToUnixSeconds(restarted);
  }));
  EXPECT_TRUE(agent->running()) << agent->log();
  EXPECT_EQ(agent->device_id(), id);
  EXPECT_EQ(List("").devices_size(), 1);
  // The log spans both runs: one enrollment, in the first.
  const std::string log = agent->log();
  EXPECT_EQ(log.find("\"msg\":\"enrolled\""), log.rfind("\"msg\":\"enrolled\""));
}

// deploy/agent/install.sh from a token to an enrolled, listed, syncing device. Installed into a
// staging root (no systemd here); the agent then runs exactly as the unit starts it.
TEST_P(FleetTest, InstallScriptEnrollsADevice) {
  const std::string token = EnrollmentToken(R"({"site":"plant-7"})", 1);
  const std::string root = options_.data_dir + "/device-root";
  const std::string script = std::string(EDGELOOP_SOURCE_DIR) + "/deploy/agent/install.sh";
  std::vector<std::string> install = {"/bin/sh",    script,
                                      "--server",   server_->device_address(),
                                      "--token",    token,
                                      "--labels",   "line=2",
                                      "--binary",   BinaryPath("edgeloop-agent"),
                                      "--root",     root,
                                      "--no-start", "--metrics-listen",
                                      "127.0.0.1:0"};
  CommandResult first = RunCommand(install);
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  EXPECT_TRUE(absl::StrContains(first.out, "enrolled as dev-")) << first.out;
  EXPECT_TRUE(std::filesystem::exists(root + "/usr/local/bin/edgeloop-agent"));
  EXPECT_TRUE(std::filesystem::exists(root + "/etc/systemd/system/edgeloop-agent.service"));
  const std::string env = *ReadFile(root + "/etc/edgeloop/agent.env");
  EXPECT_TRUE(absl::StrContains(env, "EDGELOOP_SERVER=" + server_->device_address())) << env;
  EXPECT_FALSE(absl::StrContains(env, token));  // the token is not kept
  // Running it again changes nothing (and does not need the spent token).
  CommandResult again = RunCommand(install);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(absl::StrContains(again.out, "already enrolled")) << again.out;

  // The service: EnvironmentFile + ExecStart.
  std::map<std::string, std::string> environment;
  for (absl::string_view line : absl::StrSplit(env, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    environment[kv.first] = kv.second;
  }
  AgentProcess::Options o;
  o.server = environment["EDGELOOP_SERVER"];
  o.state_dir = root + "/var/lib/edgeloop";
  o.labels = environment["EDGELOOP_LABELS"];
  AgentProcess service(o);
  service.Start();
  const std::string id = service.device_id();
  ASSERT_TRUE(Eventually([&] { return List("site=plant-7,line=2").devices_size() == 1; }));
  EXPECT_EQ(List("site=plant-7,line=2").devices(0).id(), id);
  const absl::Time started = absl::Now();
  ASSERT_TRUE(Eventually(
      [&] { return Get(id).last_seen_time().seconds() >= absl::ToUnixSeconds(started); }));
  EXPECT_TRUE(Get(id).online());
}

INSTANTIATE_TEST_SUITE_P(Storage, FleetTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

// Certificates are renewed before they expire, and the device keeps syncing past the first
// certificate's end. The agent's own metrics say so, in a form promtool accepts.
TEST(FleetCertificateTest, AgentRenewsItsCertificateAndReportsMetrics) {
  ServerProcess::Options options;
  TempDir temp("edgeloop-renew");
  options.data_dir = temp.path();
  options.extra_flags = {"--sync-interval-seconds", "1", "--device-cert-validity", "6s"};
  ServerProcess server(options);
  ASSERT_TRUE(server.Start().ok());
  auto created = HttpClient(server.http_port())
                     .Request("POST", "/v1/enrollment-tokens", R"({"maxUses":1})",
                              {{"Authorization", Bearer(server.admin_token())}});
  v1::CreateEnrollmentTokenResponse token;
  ASSERT_TRUE(ParseProtoJson(created->body, &token).ok());
  AgentProcess::Options o;
  o.server = server.device_address();
  o.state_dir = options.data_dir + "/agent";
  o.enroll_token = token.secret();
  // Trust the CA from a file instead of the token's pin (an operator distributing ca.pem).
  o.extra_flags = {"--ca-file", options.data_dir + "/ca/ca.pem", "--max-backoff-seconds", "1"};
  AgentProcess agent(o);
  agent.Start();
  ASSERT_TRUE(agent.WaitEnrolled()) << agent.log();
  const std::string first_cert = *ReadFile(o.state_dir + "/identity/cert.pem");
  const absl::Time first_expiry = crypto::InspectCertificate(first_cert)->not_after;
  // Past the first certificate's expiry the device still syncs.
  auto device = [&] {
    auto r = HttpClient(server.http_port())
                 .Get("/v1/devices/" + agent.device_id(),
                      {{"Authorization", Bearer(server.admin_token())}});
    v1::Device d;
    EXPECT_TRUE(ParseProtoJson(r->body, &d).ok()) << r->body;
    return d;
  };
  EXPECT_TRUE(Eventually([&] {
    return device().last_seen_time().seconds() > absl::ToUnixSeconds(first_expiry) + 1;
  })) << agent.log();
  EXPECT_TRUE(absl::StrContains(agent.log(), "certificate renewed")) << agent.log();
  EXPECT_NE(*ReadFile(o.state_dir + "/identity/cert.pem"), first_cert);
  EXPECT_GT(absl::FromUnixSeconds(device().cert_expire_time().seconds()), first_expiry);

  const std::string ports = *ReadFile(o.state_dir + "/ports.json");
  const int metrics_port = std::stoi(ports.substr(ports.find(':') + 1));
  auto metrics = HttpClient(metrics_port).Get("/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->status, 200);
  EXPECT_TRUE(absl::StrContains(metrics->body, "edgeloop_agent_enrolled 1")) << metrics->body;
  EXPECT_TRUE(absl::StrContains(metrics->body, "edgeloop_agent_syncs_total{result=\"ok\"}"));
  EXPECT_TRUE(absl::StrContains(metrics->body, "edgeloop_agent_background_lifts_total 0"));
  EXPECT_TRUE(absl::StrContains(metrics->body, "process_resident_memory_bytes"));
  EXPECT_EQ(HttpClient(metrics_port).Get("/other")->status, 404);
  std::ofstream(options.data_dir + "/agent-metrics.txt") << metrics->body;
  CommandResult check = RunCommand(
      {"/bin/sh", "-c", "promtool check metrics < " + options.data_dir + "/agent-metrics.txt"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

std::string CreateToken(const ServerProcess& server, const std::string& body) {
  auto created = HttpClient(server.http_port())
                     .Request("POST", "/v1/enrollment-tokens", body,
                              {{"Authorization", Bearer(server.admin_token())}});
  v1::CreateEnrollmentTokenResponse token;
  EXPECT_TRUE(created.ok() && ParseProtoJson(created->body, &token).ok());
  return token.secret();
}

v1::ListDevicesResponse ListDevices(const ServerProcess& server) {
  auto list = HttpClient(server.http_port())
                  .Get("/v1/devices", {{"Authorization", Bearer(server.admin_token())}});
  v1::ListDevicesResponse devices;
  EXPECT_TRUE(list.ok() && ParseProtoJson(list->body, &devices).ok());
  return devices;
}

// The server commits an enrollment and dies before answering (the answer a network can lose).
// The agent retries with the same key and serial and gets that same device, not "used up".
TEST(FleetEnrollmentTest, AnEnrollWhoseAnswerIsLostSucceedsOnRetry) {
  ServerProcess::Options options;
  TempDir temp("edgeloop-lost-answer");
  options.data_dir = temp.path();
  options.device_listen = absl::StrCat("127.0.0.1:", PickFreePort());
  ServerProcess::Options crashing = options;
  crashing.env = {{"EDGELOOP_FAILPOINT", "fleet.enrolled"}};
  auto server = std::make_unique<ServerProcess>(crashing);
  ASSERT_TRUE(server->Start().ok());
  AgentProcess::Options o;
  o.server = options.device_listen;
  o.state_dir = options.data_dir + "/agent";
  o.enroll_token = CreateToken(*server, R"({"maxUses":1})");
  o.extra_flags = {"--ca-file", options.data_dir + "/ca/ca.pem", "--max-backoff-seconds", "1"};
  AgentProcess agent(o);
  agent.Start();
  auto died = server->WaitExit();
  ASSERT_TRUE(died.ok()) << server->log();
  EXPECT_EQ(*died, 128 + SIGKILL);
  server = std::make_unique<ServerProcess>(options);
  ASSERT_TRUE(server->Start().ok());
  ASSERT_TRUE(agent.WaitEnrolled()) << agent.log();
  v1::ListDevicesResponse devices = ListDevices(*server);
  ASSERT_EQ(devices.devices_size(), 1);
  EXPECT_EQ(devices.devices(0).id(), agent.device_id());
  EXPECT_TRUE(absl::StrContains(agent.log(), "enrollment failed, retrying")) << agent.log();
}

// A device offline past its certificate's end comes back with a new token as the same device:
// its id, key, pinned signing key and installed state stay. With only its spent token it keeps
// running (and says why it cannot sync) rather than exiting.
TEST(FleetEnrollmentTest, AnExpiredDeviceReEnrollsAsItselfWithANewToken) {
  ServerProcess::Options options;
  TempDir temp("edgeloop-reenroll");
  options.data_dir = temp.path();
  options.extra_flags = {"--sync-interval-seconds", "1", "--device-cert-validity", "3s"};
  ServerProcess server(options);
  ASSERT_TRUE(server.Start().ok());
  AgentProcess::Options o;
  o.server = server.device_address();
  o.state_dir = options.data_dir + "/agent";
  o.enroll_token = CreateToken(server, R"({"maxUses":1,"labels":{"site":"lab"}})");
  o.extra_flags = {"--max-backoff-seconds", "1"};
  auto agent = std::make_unique<AgentProcess>(o);
  agent->Start();
  ASSERT_TRUE(agent->WaitEnrolled()) << agent->log();
  ASSERT_EQ(*agent->Stop(SIGTERM), 0);
  const std::string id = agent->device_id();
  const std::string key = *ReadFile(o.state_dir + "/identity/key.pem");
  const absl::Time expiry =
      crypto::InspectCertificate(*ReadFile(o.state_dir + "/identity/cert.pem"))->not_after;
  // A real certificate, checked by the server's TLS stack against the real clock: only time
  // passing expires it.
  ASSERT_TRUE(Eventually([&] { return absl::Now() > expiry; }, absl::Seconds(10)));

  // The spent token cannot re-enroll it; the agent stays up and says what it needs.
  agent = std::make_unique<AgentProcess>(o);
  agent->Start();
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(agent->log(), "re-enrollment refused"); }))
      << agent->log();
  EXPECT_TRUE(agent->running()) << agent->log();
  ASSERT_EQ(*agent->Stop(SIGTERM), 0);

  o.enroll_token = CreateToken(server, R"({"maxUses":1,"labels":{"zone":"b"}})");
  agent = std::make_unique<AgentProcess>(o);
  agent->Start();
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(agent->log(), "\"msg\":\"re-enrolled\"");
  })) << agent->log();
  EXPECT_EQ(agent->device_id(), id);
  EXPECT_EQ(*ReadFile(o.state_dir + "/identity/key.pem"), key);
  v1::ListDevicesResponse devices = ListDevices(server);
  ASSERT_EQ(devices.devices_size(), 1);
  EXPECT_EQ(devices.devices(0).id(), id);
  EXPECT_EQ(devices.devices(0).labels().at("site"), "lab");  // kept
  EXPECT_EQ(devices.devices(0).labels().at("zone"), "b");    // the new token's
  const absl::Time reenrolled = absl::Now();
  EXPECT_TRUE(Eventually([&] {
    return ListDevices(server).devices(0).last_seen_time().seconds() >
           absl::ToUnixSeconds(reenrolled);
  })) << agent->log();
  agent.reset();
}

// The server goes away and comes back (same address): agents keep running, back off, and
// resume syncing without enrolling again; nothing is lost.
TEST(FleetOutageTest, AgentsRideOutAServerOutage) {
  ServerProcess::Options options;
  TempDir temp("edgeloop-outage");
  options.data_dir = temp.path();
  options.device_listen = absl::StrCat("127.0.0.1:", PickFreePort());
  options.extra_flags = {"--sync-interval-seconds", "1"};
  auto server = std::make_unique<ServerProcess>(options);
  ASSERT_TRUE(server->Start().ok());
  auto created = HttpClient(server->http_port())
                     .Request("POST", "/v1/enrollment-tokens", R"({"maxUses":2})",
                              {{"Authorization", Bearer(server->admin_token())}});
  v1::CreateEnrollmentTokenResponse token;
  ASSERT_TRUE(ParseProtoJson(created->body, &token).ok());
  std::vector<std::unique_ptr<AgentProcess>> agents;
  for (const char* name : {"one", "two"}) {
    AgentProcess::Options o;
    o.server = options.device_listen;
    o.state_dir = options.data_dir + "/agent-" + name;
    o.enroll_token = token.secret();
    o.extra_flags = {"--max-backoff-seconds", "1"};
    agents.push_back(std::make_unique<AgentProcess>(o));
    agents.back()->Start();
    ASSERT_TRUE(agents.back()->WaitEnrolled());
  }
  ASSERT_EQ(*server->Stop(SIGTERM), 0);
  for (auto& a : agents) {
    EXPECT_TRUE(Eventually([&] { return absl::StrContains(a->log(), "sync failed"); })) << a->log();
    EXPECT_TRUE(a->running());
  }
  server = std::make_unique<ServerProcess>(options);
  ASSERT_TRUE(server->Start().ok());
  for (auto& a : agents) {
    EXPECT_TRUE(Eventually([&] { return absl::StrContains(a->log(), "server reachable again"); }))
        << a->log();
  }
  auto list = HttpClient(server->http_port())
                  .Get("/v1/devices?selector=hw.cores>0",
                       {{"Authorization", Bearer(server->admin_token())}});
  v1::ListDevicesResponse devices;
  ASSERT_TRUE(ParseProtoJson(list->body, &devices).ok()) << list->body;
  ASSERT_EQ(devices.devices_size(), 2);
  for (const auto& d : devices.devices()) EXPECT_TRUE(d.online());
  agents.clear();
  server.reset();
}

}  // namespace
}  // namespace edgeloop::tests
