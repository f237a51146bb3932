// The device port under load and abuse: a real edgeloop-server, real TLS, in-test gRPC clients
// presenting real device certificates.
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/proto_json.h"
#include "common/x509.h"
#include "edgeloop/v1/device.grpc.pb.h"
#include "edgeloop/v1/registry.pb.h"
#include "compiler/testing/onnx_models.h"
#include "tests/testing/fixture.h"
#include "tests/testing/http_client.h"

namespace edgeloop::tests {
namespace {

struct Device {
  std::string id;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::DeviceService::Stub> stub;
  int64_t generation = 0;
};

class DevicePortTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> flags) {
    options_.data_dir = NewTempDir("edgeloop-device-port");
    options_.extra_flags = std::move(flags);
    server_ = std::make_unique<ServerProcess>(options_);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    server_.reset();
    std::error_code ignored;  // an agent a test still holds may write into it until it stops
    std::filesystem::remove_all(options_.data_dir, ignored);
  }

  // A REST call as the admin; a failed connection is a test failure.
  HttpResponse Admin(const std::string& method, const std::string& path,
                     const std::string& body = "") {
    auto r = HttpClient(server_->http_port())
                 .Request(method, path, body, {{"Authorization", Bearer(server_->admin_token())}});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResponse{};
  }

  std::string Token(int uses) {
    v1::CreateEnrollmentTokenResponse token;
    EXPECT_TRUE(ParseProtoJson(
                    Admin("POST", "/v1/enrollment-tokens", absl::StrCat(R"({"maxUses":)", uses, "}"))
                        .body,
                    &token)
                    .ok());
    return token.secret();
  }

  grpc::SslCredentialsOptions Tls() {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = *ReadFile(options_.data_dir + "/ca/ca.pem");
    return tls;
  }

  // Enrolls a device over the device port and opens a channel with its certificate to
  // `address` (the server's device port unless given), on a connection of its own.
  Device Enroll(const std::string& token, const std::string& address = "") {
    auto key = crypto::GenerateKeyAndCsr("pending");
    v1::EnrollRequest request;
    request.set_token(token);
    request.set_csr_pem(key->csr_pem);
    request.mutable_profile()->set_arch("x86_64");
    request.mutable_profile()->set_cores(2);
    request.mutable_profile()->set_ram_mb(1024);
    v1::EnrollResponse enrolled;
    grpc::ClientContext context;
    auto anonymous = v1::DeviceService::NewStub(
        grpc::CreateChannel(server_->device_address(), grpc::SslCredentials(Tls())));
    grpc::Status s = anonymous->Enroll(&context, request, &enrolled);
    EXPECT_TRUE(s.ok()) << s.error_message();
    Device d;
    d.id = enrolled.device_id();
    grpc::SslCredentialsOptions tls = Tls();
    tls.pem_private_key = key->key_pem;
    tls.pem_cert_chain = enrolled.cert_pem();
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // Through a proxy the name checked is still the server's.
    args.SetSslTargetNameOverride("localhost");
    d.channel = grpc::CreateCustomChannel(address.empty() ? server_->device_address() : address,
                                          grpc::SslCredentials(tls), args);
    d.stub = v1::DeviceService::NewStub(d.channel);
    v1::SyncResponse synced;
    grpc::ClientContext sync_context;
    s = d.stub->Sync(&sync_context, v1::SyncRequest(), &synced);
    EXPECT_TRUE(s.ok()) << s.error_message();
    d.generation = synced.desired_generation();
    return d;
  }

  // A value from the server's /metrics (-1 when absent).
  double Metric(const std::string& series) {
    auto r = HttpClient(server_->http_port()).Get("/metrics");
    if (!r.ok()) return -1;
    for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
      if (!absl::StartsWith(line, series + " ")) continue;
      double v = 0;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) return v;
    }
    return -1;
  }

  int ServerThreads() {
    std::ifstream status(absl::StrCat("/proc/", server_->pid(), "/status"));
    for (std::string line; std::getline(status, line);) {
      int n = 0;
      if (absl::StartsWith(line, "Threads:") &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(8)), &n))
        return n;
    }
    return -1;
  }

  void Relabel(const std::string& device_id) {
    HttpResponse r = Admin("PATCH", "/v1/devices/" + device_id, R"({"labels":{"room":"B12"}})");
    ASSERT_EQ(r.status, 200) << r.body;
  }

  // A model with one version, for changes every device's desired state depends on.
  void PushModel(const std::string& name) {
    ASSERT_EQ(Admin("POST", "/v1/models", absl::StrCat(R"({"name":")", name, "\"}")).status, 201);
    v1::Blob blob;
    ASSERT_TRUE(
        ParseProtoJson(Admin("POST", "/v1/blobs", compiler::testing::MlpOnnx(8, 16, 4)).body, &blob)
            .ok());
    ASSERT_EQ(Admin("POST", absl::StrCat("/v1/models/", name, "/versions"),
                    absl::StrCat(R"({"onnxDigest":")", blob.digest(), "\"}"))
                  .status,
              201);
    // Built and signed before the streams open: a module signed later changes what every
    // device should run, which is not the change under test.
    ASSERT_TRUE(Eventually(
        [&] {
          v1::ModelVersion v;
          return ParseProtoJson(Admin("GET", absl::StrCat("/v1/models/", name, "/versions/1")).body,
                                &v)
                     .ok() &&
                 v.status() != v1::REGISTERED && v.status() != v1::COMPILING;
        },
        absl::Seconds(120)));
  }

  int64_t ServerRssKb() {
    std::ifstream status(absl::StrCat("/proc/", server_->pid(), "/status"));
    for (std::string line; std::getline(status, line);) {
      int64_t kb = 0;
      if (absl::StartsWith(line, "VmRSS:") &&
          absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(line.substr(6)), " kB"),
                           &kb))
        return kb;
    }
    return -1;
  }

  ServerProcess::Options options_;
  std::unique_ptr<ServerProcess> server_;
};

// Many Watch streams opened and read through one completion queue.
class AsyncWatches {
 public:
  struct Call {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientAsyncReader<v1::WatchEvent>> reader;
    v1::WatchEvent event;
    int events = 0;
    bool open = true;
    grpc::Status status;
  };

  void Open(Device& device, int streams) {
    for (int i = 0; i < streams; ++i) {
      auto call = std::make_unique<Call>();
      v1::WatchRequest request;
      request.set_known_generation(device.generation);
      call->reader = device.stub->PrepareAsyncWatch(&call->context, request, &cq_);
      call->reader->StartCall(Tag(call.get(), kStarted));
      calls_.push_back(std::move(call));
    }
  }

  // Drains completions until `done()` or the deadline; reads again after every event.
  bool Pump(const std::function<bool()>& done, absl::Duration timeout) {
    const auto deadline = std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
    while (!done()) {
      void* tag = nullptr;
      bool ok = false;
      if (cq_.AsyncNext(&tag, &ok, deadline) != grpc::CompletionQueue::GOT_EVENT) return done();
      Call* call = reinterpret_cast<Call*>(reinterpret_cast<uintptr_t>(tag) & ~uintptr_t{3});
      const int kind = static_cast<int>(reinterpret_cast<uintptr_t>(tag) & 3);
      if (kind == kFinished) {
        call->open = false;
        ++finished_;
        continue;
      }
      if (kind == kRead && ok) ++call->events, ++events_;
      if (ok) {
        call->reader->Read(&call->event, Tag(call, kRead));
      } else {
        call->reader->Finish(&call->status, Tag(call, kFinished));
      }
    }
    return true;
  }

  void CancelAll() {
    for (auto& c : calls_) c->context.TryCancel();
  }

  std::vector<std::unique_ptr<Call>>& calls() { return calls_; }
  int events() const { return events_; }
  int finished() const { return finished_; }

  ~AsyncWatches() {
    CancelAll();
    Pump([&] { return finished_ == static_cast<int>(calls_.size()); }, absl::Seconds(30));
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

 private:
  enum { kStarted = 0, kRead = 1, kFinished = 2 };
  static void* Tag(Call* call, int kind) {
    return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(call) | kind);
  }

  grpc::CompletionQueue cq_;
  std::vector<std::unique_ptr<Call>> calls_;
  int events_ = 0;
  int finished_ = 0;
};

// 10,000 devices watching hold no thread each: the server's thread count stays bounded, and a
// change still reaches the streams watching it at once.
TEST_F(DevicePortTest, TenThousandWatchStreamsKeepTheThreadCountBounded) {
  constexpr int kDevices = 100, kStreamsEach = 100;
  Start({"--device-streams-per-device", std::to_string(kStreamsEach)});
  PushModel("fleetwide");
  const int idle_threads = ServerThreads();
  const int64_t idle_rss_kb = ServerRssKb();
  const std::string token = Token(kDevices);
  std::vector<Device> devices;
  for (int i = 0; i < kDevices; ++i) devices.push_back(Enroll(token));
  AsyncWatches watches;
  for (Device& d : devices) watches.Open(d, kStreamsEach);
  ASSERT_TRUE(Eventually(
      [&] {
        watches.Pump([] { return false; }, absl::Milliseconds(100));
        return Metric("edgeloop_device_watch_streams") == kDevices * kStreamsEach;
      },
      absl::Seconds(120)))
      << Metric("edgeloop_device_watch_streams");
  const int watching_threads = ServerThreads();
  // gRPC's own pollers and executor, the HTTP workers, the watch checkers: not one per stream.
  EXPECT_LT(watching_threads, idle_threads + 64) << idle_threads << " idle";
  RecordProperty("server_threads_idle", idle_threads);
  RecordProperty("server_threads_10000_watches", watching_threads);
  RecordProperty("server_rss_kb_idle", static_cast<int>(idle_rss_kb));
  RecordProperty("server_rss_kb_10000_watches", static_cast<int>(ServerRssKb()));

  // A change to one device reaches each of its streams, and only those.
  Relabel(devices[7].id);
  ASSERT_TRUE(watches.Pump([&] { return watches.events() == kStreamsEach; }, absl::Seconds(30)))
      << watches.events();
  for (size_t i = 0; i < watches.calls().size(); ++i) {
    EXPECT_EQ(watches.calls()[i]->events, i / kStreamsEach == 7 ? 1 : 0) << i;
  }
  EXPECT_EQ(watches.calls()[7 * kStreamsEach]->event.desired().desired_generation(),
            devices[7].generation + 1);
  EXPECT_EQ(watches.finished(), 0);

  // A fleet-wide change (an alias every device's state depends on) reaches every stream.
  std::vector<int> before;
  for (auto& c : watches.calls()) before.push_back(c->events);
  const absl::Time moved = absl::Now();
  ASSERT_EQ(Admin("PUT", "/v1/models/fleetwide/aliases/production", R"({"version":1})").status,
            200);
  auto everyone_told = [&] {
    for (size_t i = 0; i < before.size(); ++i)
      if (watches.calls()[i]->events <= before[i]) return false;
    return true;
  };
  ASSERT_TRUE(watches.Pump(everyone_told, absl::Seconds(120))) << watches.events();
  RecordProperty("fleetwide_change_to_10000_streams_ms",
                 static_cast<int>(absl::ToInt64Milliseconds(absl::Now() - moved)));
  EXPECT_EQ(watches.finished(), 0);

  watches.CancelAll();
  EXPECT_TRUE(Eventually(
      [&] {
        watches.Pump([] { return false; }, absl::Milliseconds(100));
        return Metric("edgeloop_device_watch_streams") == 0;
      },
      absl::Seconds(60)));
}

// One device cannot take the stream capacity for itself: past its cap a stream is refused
// RESOURCE_EXHAUSTED, and a slot freed is a slot it can use again.
TEST_F(DevicePortTest, StreamsPerDeviceAreCapped) {
  Start({"--device-streams-per-device", "3"});
  Device device = Enroll(Token(1));
  AsyncWatches watches;
  watches.Open(device, 3);
  ASSERT_TRUE(Eventually(
      [&] {
        watches.Pump([] { return false; }, absl::Milliseconds(50));
        return Metric("edgeloop_device_watch_streams") == 3;
      },
      absl::Seconds(30)));
  grpc::ClientContext extra;
  v1::WatchRequest request;
  request.set_known_generation(device.generation);
  auto refused = device.stub->Watch(&extra, request);
  v1::WatchEvent event;
  EXPECT_FALSE(refused->Read(&event));
  grpc::Status status = refused->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  v1::FetchModuleRequest fetch;
  fetch.set_digest(std::string(64, 'a'));
  grpc::ClientContext fetch_context;
  auto fetching = device.stub->FetchModule(&fetch_context, fetch);
  v1::ModuleChunk chunk;
  EXPECT_FALSE(fetching->Read(&chunk));
  EXPECT_EQ(fetching->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Sync is not a stream: it still works.
  v1::SyncResponse synced;
  grpc::ClientContext sync_context;
  EXPECT_TRUE(device.stub->Sync(&sync_context, v1::SyncRequest(), &synced).ok());

  watches.calls()[0]->context.TryCancel();
  ASSERT_TRUE(Eventually(
      [&] {
        watches.Pump([] { return false; }, absl::Milliseconds(50));
        return Metric("edgeloop_device_watch_streams") == 2;
      },
      absl::Seconds(30)));
  watches.Open(device, 1);
  EXPECT_TRUE(Eventually(
      [&] {
        watches.Pump([] { return false; }, absl::Milliseconds(50));
        return Metric("edgeloop_device_watch_streams") == 3;
      },
      absl::Seconds(30)));
}

// Forwards TCP connections to the server until frozen; frozen, it holds every socket open and
// passes nothing: a peer that lost power, or a NAT that dropped the mapping.
class FreezableProxy {
 public:
  explicit FreezableProxy(int upstream_port) : upstream_port_(upstream_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = Loopback(0);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listener_, 16), 0);
    socklen_t length = sizeof(addr);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &length);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~FreezableProxy() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
    for (const auto& [fd, to] : peer_) ::close(fd);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  void Freeze() { frozen_ = true; }

 private:
  static sockaddr_in Loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    return addr;
  }

  void Run() {
    while (!stop_) {
      if (frozen_) {
        absl::SleepFor(absl::Milliseconds(20));
        continue;
      }
      std::vector<pollfd> fds = {{listener_, POLLIN, 0}};
      for (const auto& [from, to] : peer_) fds.push_back({from, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        const int client = ::accept(listener_, nullptr, nullptr);
        const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr = Loopback(upstream_port_);
        ::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        peer_[client] = upstream;
        peer_[upstream] = client;
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        auto pair = peer_.find(fds[i].fd);
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)) || pair == peer_.end()) continue;
        char buffer[16384];
        const ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
        const int to = pair->second;
        for (ssize_t sent = 0; n > 0 && sent < n;) {
          const ssize_t w = ::write(to, buffer + sent, n - sent);
          if (w <= 0) break;
          sent += w;
        }
        if (n <= 0) {  // pass the close on; the other way stays open until it closes too
          ::shutdown(to, SHUT_WR);
          ::close(fds[i].fd);
          peer_.erase(fds[i].fd);
        }
      }
    }
  }

  int upstream_port_;
  int listener_ = -1;
  int port_ = 0;
  std::map<int, int> peer_;  // each socket and the one it forwards to
  std::atomic<bool> frozen_{false}, stop_{false};
  std::thread thread_;
};

// A device that goes silent without closing its connection is found by keepalive, and its
// stream (and the device's slot) is released; the port keeps serving others.
TEST_F(DevicePortTest, ASilentPeerIsDroppedByKeepalive) {
  Start({"--device-keepalive-seconds", "1", "--device-streams-per-device", "1"});
  const std::string token = Token(2);
  FreezableProxy proxy(server_->device_port());
  Device silent = Enroll(token, proxy.address());
  AsyncWatches watches;
  watches.Open(silent, 1);
  ASSERT_TRUE(Eventually(
      [&] {
        watches.Pump([] { return false; }, absl::Milliseconds(50));
        return Metric("edgeloop_device_watch_streams") == 1;
      },
      absl::Seconds(30)));
  proxy.Freeze();
  EXPECT_TRUE(Eventually([&] { return Metric("edgeloop_device_watch_streams") == 0; },
                         absl::Seconds(30)));
  Device other = Enroll(token);
  AsyncWatches others;
  others.Open(other, 1);
  EXPECT_TRUE(Eventually(
      [&] {
        others.Pump([] { return false; }, absl::Milliseconds(50));
        return Metric("edgeloop_device_watch_streams") == 1;
      },
      absl::Seconds(30)));
  watches.CancelAll();
}

}  // namespace
}  // namespace edgeloop::tests
