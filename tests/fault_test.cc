// Faults: kill -9 during uploads and version creation, graceful SIGTERM.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "edgeloop/v1/registry.pb.h"
#include "compiler/testing/onnx_models.h"
#include "tests/testing/fixture.h"
#include "tests/testing/http_client.h"

namespace edgeloop::tests {
namespace {

class FaultTest : public ServerTest {};

TEST_P(FaultTest, KillDuringUploadLeavesNoBlob) {
  const std::string full(1'000'000, 'q');
  auto fd = StartPartialUpload(server_->http_port(), "/v1/blobs", admin_, full.size(),
                               full.substr(0, 300'000));
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(Eventually([&] { return StagedUploads() == 1; }));
  ASSERT_EQ(*server_->Stop(SIGKILL), 128 + SIGKILL);
  ::close(*fd);
  StartServer();
  EXPECT_EQ(StagedUploads(), 0);  // the dead process's staging area was swept at start
  EXPECT_EQ(Call("GET", "/v1/blobs/" + DigestFromHex(Sha256Hex(full))).status, 404);
  EXPECT_EQ(Call("GET", "/v1/blobs/" + DigestFromHex(Sha256Hex(full.substr(0, 300'000)))).status,
            404);
}

TEST_P(FaultTest, KillDuringVersionCreationLeavesConsistentRegistry) {
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"crashy"})").status, 201);
  auto upload = Call("POST", "/v1/blobs", compiler::testing::MlpOnnx(8, 32, 4));
  v1::Blob blob;
  ASSERT_TRUE(ParseProtoJson(upload.body, &blob).ok());
  const std::string body = absl::StrCat(R"({"onnxDigest":")", blob.digest(), "\"}");
  std::atomic<int> acknowledged{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> pushers;
  const int port = server_->http_port();
  const std::string token = admin_;
  for (int t = 0; t < 3; ++t) {
    pushers.emplace_back([&, port, token] {
      HttpClient client(port);
      while (!stop) {
        auto r = client.Request("POST", "/v1/models/crashy/versions", body,
                                {{"Authorization", Bearer(token)}});
        if (!r.ok()) return;  // the server is gone
        if (r->status == 201) ++acknowledged;
      }
    });
  }
  ASSERT_TRUE(Eventually([&] { return acknowledged.load() >= 10; }));
  ASSERT_EQ(*server_->Stop(SIGKILL), 128 + SIGKILL);
  stop = true;
  for (auto& t : pushers) t.join();
  StartServer();

  // Every acknowledged version survived; numbering has no holes; each version is whole.
  HttpResponse model = Call("GET", "/v1/models/crashy");
  v1::Model m;
  ASSERT_TRUE(ParseProtoJson(model.body, &m).ok());
  EXPECT_GE(m.latest_version(), acknowledged.load());
  HttpResponse list = Call("GET", "/v1/models/crashy/versions?pageSize=1000");
  v1::ListVersionsResponse versions;
  ASSERT_TRUE(ParseProtoJson(list.body, &versions).ok());
  ASSERT_EQ(versions.versions_size(), m.latest_version());
  for (int i = 0; i < versions.versions_size(); ++i) {
    EXPECT_EQ(versions.versions(i).version(), i + 1);
    EXPECT_EQ(versions.versions(i).inputs_size(), 1);
    EXPECT_NE(versions.versions(i).status(), v1::FAILED) << versions.versions(i).status_message();
  }
  // Compile jobs the killed server was running are taken up again: every version gets built,
  // each with exactly one artifact for the default target.
  EXPECT_TRUE(Eventually(
      [&] {
        if (!ParseProtoJson(Call("GET", "/v1/models/crashy/versions?pageSize=1000").body, &versions)
                 .ok()) {
          return false;
        }
        bool all_ready = true;
        for (const auto& v : versions.versions()) all_ready = all_ready && v.status() == v1::READY;
        return all_ready;
      },
      absl::Seconds(90)));
  for (int i = 0; i < versions.versions_size(); ++i) {
    v1::ListArtifactsResponse artifacts;
    ASSERT_TRUE(
        ParseProtoJson(
            Call("GET", absl::StrCat("/v1/models/crashy/versions/", i + 1, "/artifacts")).body,
            &artifacts)
            .ok());
    EXPECT_EQ(artifacts.artifacts_size(), 1) << "version " << i + 1;
  }
  HttpResponse events = Call("GET", "/v1/events?limit=1000");
  v1::ListEventsResponse log;
  ASSERT_TRUE(ParseProtoJson(events.body, &log).ok());
  int created = 0;
  for (const auto& e : log.events()) created += e.type() == "version.created";
  EXPECT_EQ(created, m.latest_version());
  // And the next push continues the sequence.
  HttpResponse next = Call("POST", "/v1/models/crashy/versions", body);
  v1::ModelVersion v;
  ASSERT_TRUE(ParseProtoJson(next.body, &v).ok()) << next.body;
  EXPECT_EQ(v.version(), m.latest_version() + 1);
}

TEST_P(FaultTest, SigtermFinishesTheUploadInFlight) {
  const std::string full(500'000, 'g');
  auto fd = StartPartialUpload(server_->http_port(), "/v1/blobs", admin_, full.size(),
                               full.substr(0, 200'000));
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(Eventually([&] { return StagedUploads() == 1; }));
  ::kill(server_->pid(), SIGTERM);
  ASSERT_TRUE(
      Eventually([&] { return absl::StrContains(server_->log(), "\"msg\":\"shutting down\""); }));
  std::string rest = full.substr(200'000);
  ASSERT_EQ(::write(*fd, rest.data(), rest.size()), static_cast<ssize_t>(rest.size()));
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = ::read(*fd, buf, sizeof buf)) > 0;)
    response.append(buf, static_cast<size_t>(n));
  ::close(*fd);
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 201")) << response;
  EXPECT_TRUE(absl::StrContains(response, DigestFromHex(Sha256Hex(full))));
  EXPECT_EQ(*server_->Stop(0), 0);  // signal 0: just wait for the exit already under way
  EXPECT_TRUE(absl::StrContains(server_->log(), "\"msg\":\"stopped\""));
  StartServer();
  EXPECT_EQ(Call("GET", "/v1/blobs/" + DigestFromHex(Sha256Hex(full))).status, 200);
}

// The database goes away (crash, failover) and comes back: requests fail with 503 meanwhile,
// nothing is half-written, and the server recovers without a restart.
TEST(DatabaseFaultTest, LostPostgresConnectionRecovers) {
  auto cluster = store::testing::PostgresCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  auto url = (*cluster)->CreateDatabase("lost");
  ASSERT_TRUE(url.ok());
  ServerProcess::Options options;
  TempDir temp("edgeloop-lostdb");
  options.data_dir = temp.path();
  options.db = *url;
  ServerProcess server(options);
  ASSERT_TRUE(server.Start().ok());
  const std::map<std::string, std::string> auth = {{"Authorization", Bearer(server.admin_token())}};
  HttpClient client(server.http_port());
  ASSERT_EQ(client.Request("POST", "/v1/models", R"({"name":"before"})", auth)->status, 201);

  ASSERT_TRUE((*cluster)->Stop().ok());
  auto down = client.Request("POST", "/v1/models", R"({"name":"during"})", auth);
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(down->status, 503) << down->body;
  EXPECT_EQ(client.Get("/readyz")->status, 503);
  EXPECT_EQ(client.Get("/healthz")->status, 200);  // the process itself is fine

  ASSERT_TRUE((*cluster)->Restart().ok());
  ASSERT_TRUE(Eventually([&] {
    auto r = client.Get("/readyz");
    return r.ok() && r->status == 200;
  })) << client.Get("/readyz")->body;
  // Every pooled connection died with the database; none of them may leak an error now.
  for (int i = 0; i < 40; ++i) {
    auto r = client.Get("/v1/models/before", auth);
    ASSERT_EQ(r->status, 200) << "request " << i << ": " << r->body;
  }
  EXPECT_EQ(client.Get("/v1/models/during", auth)->status, 404);
  EXPECT_EQ(client.Request("POST", "/v1/models", R"({"name":"after"})", auth)->status, 201);
}

// Blobs on a full file system: the upload fails with a clear 503, its partial file is removed
// and the server keeps serving; smaller uploads succeed once there is room.
TEST(DiskFaultTest, FullDiskRefusesUploadAndRecovers) {
  TempDir temp("edgeloop-fulldisk");
  const std::string dir = temp.path();
  const std::string mount_point = dir + "/small";
  std::filesystem::create_directories(mount_point);
  if (RunCommand({"/bin/mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mount_point}).exit_code !=
      0) {
    GTEST_SKIP() << "cannot mount a small tmpfs here (needs root)";
  }
  {
    ServerProcess::Options options;
    options.data_dir = dir + "/data";
    options.blobs = "file://" + mount_point + "/blobs";
    ServerProcess server(options);
    ASSERT_TRUE(server.Start().ok());
    const std::map<std::string, std::string> auth = {
        {"Authorization", Bearer(server.admin_token())}};
    HttpClient client(server.http_port());
    auto full = client.Request("POST", "/v1/blobs", std::string(6 << 20, 'f'), auth);
    ASSERT_TRUE(full.ok()) << full.status();
    EXPECT_EQ(full->status, 503) << full->body;
    EXPECT_TRUE(absl::StrContains(full->body, "No space left on device")) << full->body;
    int leftovers = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(mount_point)) {
      if (e.is_regular_file() && e.path().filename().string().rfind("upload-", 0) == 0) ++leftovers;
    }
    EXPECT_EQ(leftovers, 0);
    auto small = HttpClient(server.http_port())
                     .Request("POST", "/v1/blobs", std::string(1 << 20, 's'), auth);
    ASSERT_TRUE(small.ok());
    EXPECT_EQ(small->status, 201) << small->body;
  }
  RunCommand({"/bin/umount", mount_point});
}

INSTANTIATE_TEST_SUITE_P(Storage, FaultTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
