// REST API integration tests against the real edgeloop-server binary.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "edgeloop/v1/admin.pb.h"
#include "edgeloop/v1/registry.pb.h"
#include "compiler/testing/onnx_models.h"
#include "tests/testing/fixture.h"
#include "tests/testing/http_client.h"

namespace edgeloop::tests {
namespace {

class RestTest : public ServerTest {
 protected:
  HttpResponse Call(const std::string& method, const std::string& target,
                    const std::string& body = "", const std::string& token = "<admin>") {
    std::map<std::string, std::string> headers;
    if (!token.empty()) headers["Authorization"] = Bearer(token == "<admin>" ? admin_ : token);
    auto response = HttpClient(server_->http_port()).Request(method, target, body, headers);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : HttpResponse{};
  }

  std::string Upload(const std::string& bytes) {
    HttpResponse r = Call("POST", "/v1/blobs", bytes);
    EXPECT_EQ(r.status, 201) << r.body;
    v1::Blob blob;
    EXPECT_TRUE(ParseProtoJson(r.body, &blob).ok()) << r.body;
    return blob.digest();
  }

  std::string Token(const std::string& role) {
    HttpResponse r = Call("POST", "/v1/tokens",
                          absl::StrCat(R"({"name":")", role, R"(-token","role":")", role, "\"}"));
    EXPECT_EQ(r.status, 201) << r.body;
    v1::CreateTokenResponse created;
    EXPECT_TRUE(ParseProtoJson(r.body, &created).ok());
    return created.secret();
  }

  static std::string Code(const HttpResponse& r) {
    // The error body is not a proto message; read its code field directly.
    size_t at = r.body.find("\"code\":\"");
    if (at == std::string::npos) return "";
    return r.body.substr(at + 8, r.body.find('"', at + 8) - at - 8);
  }
};

TEST_P(RestTest, HealthReadinessAndMetricsThatPromtoolAccepts) {
  EXPECT_EQ(Call("GET", "/healthz", "", "").status, 200);
  EXPECT_EQ(Call("GET", "/readyz", "", "").status, 200);
  Call("GET", "/v1/models/nope");
  // A request is counted once its response is written, which can land just after the client
  // has read it; so look again briefly before concluding the count is missing.
  const std::string counted =
      R"(edgeloop_http_requests_total{code="404",method="GET",route="/v1/models/{model}"} 1)";
  HttpResponse metrics;
  Eventually([&] {
    metrics = Call("GET", "/metrics", "", "");
    return metrics.body.find(counted) != std::string::npos;
  });
  ASSERT_EQ(metrics.status, 200);
  EXPECT_TRUE(absl::StartsWith(metrics.headers["content-type"], "text/plain; version=0.0.4"));
  EXPECT_NE(metrics.body.find(counted), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("edgeloop_http_request_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(metrics.body.find(R"(edgeloop_registry_objects{kind="model"} 0)"), std::string::npos);
  EXPECT_NE(metrics.body.find("process_resident_memory_bytes"), std::string::npos);
  std::string file = options_.data_dir + "/metrics.txt";
  std::ofstream(file) << metrics.body;
  CommandResult check = RunCommand({"/bin/sh", "-c", "promtool check metrics < " + file});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

TEST_P(RestTest, AuthenticationAndRoles) {
  HttpResponse missing = Call("GET", "/v1/models", "", "");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(Code(missing), "UNAUTHENTICATED");
  EXPECT_EQ(missing.headers["www-authenticate"], "Bearer");
  EXPECT_EQ(Call("GET", "/v1/models", "", "edgeloop_wrong").status, 401);

  std::string viewer = Token("VIEWER");
  std::string operator_token = Token("OPERATOR");
  EXPECT_EQ(Call("GET", "/v1/models", "", viewer).status, 200);
  HttpResponse denied = Call("POST", "/v1/models", R"({"name":"m"})", viewer);
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(Code(denied), "PERMISSION_DENIED");
  EXPECT_EQ(Call("POST", "/v1/blobs", "bytes", viewer).status, 403);
  EXPECT_EQ(Call("POST", "/v1/models", R"({"name":"m"})", operator_token).status, 201);
  EXPECT_EQ(Call("POST", "/v1/tokens", R"({"name":"x","role":"ADMIN"})", operator_token).status,
            403);

  // Revocation takes effect at once.
  HttpResponse list = Call("GET", "/v1/tokens");
  ASSERT_EQ(list.status, 200);
  v1::ListTokensResponse tokens;
  ASSERT_TRUE(ParseProtoJson(list.body, &tokens).ok());
  std::string viewer_id;
  for (const auto& t : tokens.tokens()) {
    if (t.name() == "VIEWER-token") viewer_id = t.id();
  }
  ASSERT_FALSE(viewer_id.empty());
  EXPECT_EQ(Call("POST", "/v1/tokens/" + viewer_id + ":revoke").status, 200);
  EXPECT_EQ(Call("GET", "/v1/models", "", viewer).status, 401);
  // Secrets are never listed.
  EXPECT_EQ(list.body.find(viewer), std::string::npos);
}

TEST_P(RestTest, ModelVersionAliasLifecycle) {
  HttpResponse created =
      Call("POST", "/v1/models",
           R"({"name":"detector","description":"finds things","labels":{"team":"vision"}})");
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(Call("POST", "/v1/models", R"({"name":"detector"})").status, 409);

  std::string onnx = compiler::testing::MlpOnnx(8, 16, 4);
  std::string digest = Upload(onnx);
  EXPECT_EQ(digest, DigestFromHex(Sha256Hex(onnx)));
  HttpResponse pushed =
      Call("POST", "/v1/models/detector/versions",
           absl::StrCat(R"({"onnxDigest":")", digest,
                        R"(","metrics":{"accuracy":0.9},"lineage":{"source":"git:abc"}})"));
  ASSERT_EQ(pushed.status, 201) << pushed.body;
  v1::ModelVersion version;
  ASSERT_TRUE(ParseProtoJson(pushed.body, &version).ok());
  EXPECT_EQ(version.version(), 1);
  EXPECT_EQ(version.status(), v1::REGISTERED);
  EXPECT_NE(pushed.body.find(R"("status":"REGISTERED")"), std::string::npos);
  ASSERT_EQ(version.inputs_size(), 1);
  EXPECT_EQ(version.inputs(0).shape(1), 8);
  ASSERT_EQ(Call("POST", "/v1/models/detector/versions",
                 absl::StrCat(R"({"onnxDigest":")", digest, "\"}"))
                .status,
            201);

  HttpResponse alias = Call("PUT", "/v1/models/detector/aliases/production", R"({"version":"1"})");
  ASSERT_EQ(alias.status, 200) << alias.body;
  ASSERT_EQ(Call("PUT", "/v1/models/detector/aliases/production", R"({"version":2})").status, 200);
  HttpResponse by_alias = Call("GET", "/v1/models/detector/versions/production");
  ASSERT_EQ(by_alias.status, 200);
  ASSERT_TRUE(ParseProtoJson(by_alias.body, &version).ok());
  EXPECT_EQ(version.version(), 2);
  HttpResponse history = Call("GET", "/v1/models/detector/aliases/production/history");
  ASSERT_EQ(history.status, 200);
  v1::GetAliasHistoryResponse moves;
  ASSERT_TRUE(ParseProtoJson(history.body, &moves).ok());
  ASSERT_EQ(moves.moves_size(), 2);
  EXPECT_EQ(moves.moves(1).from_version(), 1);
  EXPECT_EQ(moves.moves(1).to_version(), 2);
  EXPECT_EQ(moves.moves(1).actor(), "admin (bootstrap)");

  HttpResponse model = Call("GET", "/v1/models/detector");
  EXPECT_NE(model.body.find(R"("latestVersion":"2")"), std::string::npos) << model.body;
  HttpResponse versions = Call("GET", "/v1/models/detector/versions?pageSize=1");
  v1::ListVersionsResponse page;
  ASSERT_TRUE(ParseProtoJson(versions.body, &page).ok());
  EXPECT_EQ(page.versions_size(), 1);
  EXPECT_EQ(page.next_page_token(), "1");
  HttpResponse events = Call("GET", "/v1/events?afterSequence=1");
  v1::ListEventsResponse log;
  ASSERT_TRUE(ParseProtoJson(events.body, &log).ok()) << events.body;
  ASSERT_EQ(log.events_size(), 4);  // 2 versions + 2 alias moves after model.created
  EXPECT_EQ(log.events(3).type(), "alias.moved");
}

// Every list is paged: pageSize=2 walks each one in pages of two, every item once, and a
// malformed page token is a 400.
TEST_P(RestTest, EveryListIsPaged) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Call("POST", "/v1/tokens", absl::StrCat(R"({"name":"t)", i, R"(","role":"VIEWER"})"))
                  .status,
              201);
    ASSERT_EQ(Call("POST", "/v1/enrollment-tokens", R"({"maxUses":1})").status, 201);
  }
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"paged"})").status, 201);
  const std::string digest = Upload(compiler::testing::MlpOnnx(8, 16, 4));
  for (int v = 0; v < 2; ++v) {
    ASSERT_EQ(
        Call("POST", "/v1/models/paged/versions", absl::StrCat(R"({"onnxDigest":")", digest, "\"}"))
            .status,
        201);
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Call("PUT", "/v1/models/paged/aliases/production",
                   absl::StrCat(R"({"version":)", 1 + i % 2, "}"))
                  .status,
              200);
    HttpResponse assigned =
        Call("POST", "/v1/assignments",
             absl::StrCat(R"({"model":"paged","version":1,"selector":"site=s)", i, "\"}"));
    ASSERT_EQ(assigned.status, 201) << assigned.body;
  }
  // Pages of two through `path`, counting what `size` says each page holds.
  auto walk = [&]<typename Response>(const std::string& path, Response, auto size) {
    int items = 0, pages = 0;
    std::string token;
    do {
      const std::string sep = path.find('?') == std::string::npos ? "?" : "&";
      HttpResponse r = Call("GET", absl::StrCat(path, sep, "pageSize=2&pageToken=", token));
      EXPECT_EQ(r.status, 200) << path << ": " << r.body;
      Response page;
      EXPECT_TRUE(ParseProtoJson(r.body, &page).ok()) << r.body;
      EXPECT_LE(size(page), 2) << path;
      items += size(page);
      token = page.next_page_token();
      ++pages;
    } while (!token.empty() && pages < 10);
    return items;
  };
  // The bootstrap admin token is listed too.
  EXPECT_EQ(
      walk("/v1/tokens", v1::ListTokensResponse(), [](const auto& p) { return p.tokens_size(); }),
      4);
  EXPECT_EQ(walk("/v1/enrollment-tokens", v1::ListEnrollmentTokensResponse(),
                 [](const auto& p) { return p.tokens_size(); }),
            3);
  EXPECT_EQ(walk("/v1/assignments?model=paged", v1::ListAssignmentsResponse(),
                 [](const auto& p) { return p.assignments_size(); }),
            3);
  EXPECT_EQ(walk("/v1/models/paged/aliases/production/history", v1::GetAliasHistoryResponse(),
                 [](const auto& p) { return p.moves_size(); }),
            3);
  for (const char* path : {"/v1/tokens", "/v1/enrollment-tokens", "/v1/assignments"}) {
    EXPECT_EQ(Call("GET", absl::StrCat(path, "?pageToken=not-a-token")).status, 400) << path;
  }
}

TEST_P(RestTest, ClearErrorsForBadInput) {
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"m"})").status, 201);
  HttpResponse not_onnx =
      Call("POST", "/v1/models/m/versions",
           absl::StrCat(R"({"onnxDigest":")", Upload("plain text, not a model"), "\"}"));
  EXPECT_EQ(not_onnx.status, 400);
  EXPECT_NE(not_onnx.body.find("not an ONNX model"), std::string::npos) << not_onnx.body;
  HttpResponse checker = Call(
      "POST", "/v1/models/m/versions",
      absl::StrCat(R"({"onnxDigest":")", Upload(compiler::testing::DanglingInputOnnx()), "\"}"));
  EXPECT_EQ(checker.status, 400);
  EXPECT_NE(checker.body.find("checker"), std::string::npos);

  EXPECT_EQ(Call("POST", "/v1/models", R"({"name": )").status, 400);  // malformed JSON
  EXPECT_EQ(Call("POST", "/v1/models", R"({"name":"x","colour":1})").status, 400);  // unknown field
  HttpResponse bad_enum = Call("POST", "/v1/tokens", R"({"name":"t","role":"SUPERUSER"})");
  EXPECT_EQ(bad_enum.status, 400);
  EXPECT_EQ(Code(bad_enum), "INVALID_ARGUMENT");
  EXPECT_EQ(Call("POST", "/v1/models", R"({"name":"Bad Name"})").status, 400);

  EXPECT_EQ(Call("GET", "/v1/models/ghost").status, 404);
  EXPECT_EQ(Call("GET", "/v1/models/m/versions/7").status, 404);
  EXPECT_EQ(Call("GET", "/v1/models/m/versions/staging").status, 404);
  EXPECT_EQ(Call("GET", "/v1/models/m/aliases/staging/history").status, 404);
  EXPECT_EQ(Call("PUT", "/v1/models/m/aliases/prod", R"({"version":3})").status, 404);
  EXPECT_EQ(Call("GET", "/v1/no/such/route").status, 404);
  EXPECT_EQ(Call("DELETE", "/v1/models/m").status, 405);

  // A digest that does not match the bytes is refused and stores nothing.
  std::string claimed = DigestFromHex(Sha256Hex("something else"));
  HttpResponse mismatch = Call("POST", "/v1/blobs?digest=" + claimed, "actual bytes");
  EXPECT_EQ(mismatch.status, 400);
  EXPECT_NE(mismatch.body.find("digest mismatch"), std::string::npos);
  EXPECT_EQ(Call("GET", "/v1/blobs/" + claimed).status, 404);
  EXPECT_EQ(Call("GET", "/v1/blobs/" + DigestFromHex(Sha256Hex("actual bytes"))).status, 404);
  EXPECT_EQ(Call("GET", "/v1/blobs/sha256:zzz").status, 400);

  // Nothing above created a version.
  HttpResponse model = Call("GET", "/v1/models/m");
  EXPECT_NE(model.body.find(R"("latestVersion":"0")"), std::string::npos);
}

TEST_P(RestTest, OversizedUploadsAre413AndLeaveNothing) {
  std::string big(3'000'001, 'x');  // the server runs with --max-upload-bytes 3000000
  HttpResponse declared = Call("POST", "/v1/blobs", big);
  EXPECT_EQ(declared.status, 413);
  EXPECT_EQ(Code(declared), "RESOURCE_EXHAUSTED");
  // Without Content-Length (chunked), the limit trips while streaming.
  auto chunked =
      HttpClient(server_->http_port())
          .Request("POST", "/v1/blobs", big,
                   {{"Authorization", Bearer(admin_)}, {"Transfer-Encoding", "chunked"}});
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  EXPECT_EQ(chunked->status, 413);
  EXPECT_EQ(StagedUploads(), 0);
  EXPECT_EQ(Call("GET", "/v1/blobs/" + DigestFromHex(Sha256Hex(big))).status, 404);
  // A JSON body over its own limit.
  EXPECT_EQ(Call("POST", "/v1/models", std::string(5 << 20, ' ')).status, 413);
  // The server is still fine.
  EXPECT_EQ(Call("POST", "/v1/models", R"({"name":"after"})").status, 201);
}

TEST_P(RestTest, DownloadsWithRangeAndETag) {
  std::string data;
  for (int i = 0; i < 200'000; ++i) data.push_back(static_cast<char>('a' + i % 26));
  std::string digest = Upload(data);
  HttpResponse full = Call("GET", "/v1/blobs/" + digest);
  ASSERT_EQ(full.status, 200);
  EXPECT_EQ(full.body, data);
  EXPECT_EQ(full.headers["etag"], "\"" + digest + "\"");
  // Authenticated content: no shared cache may keep it.
  EXPECT_TRUE(absl::StartsWith(full.headers["cache-control"], "private"))
      << full.headers["cache-control"];
  auto client = HttpClient(server_->http_port());
  auto part = client.Get("/v1/blobs/" + digest,
                         {{"Authorization", Bearer(admin_)}, {"Range", "bytes=70000-70009"}});
  ASSERT_TRUE(part.ok());
  EXPECT_EQ(part->status, 206);
  EXPECT_EQ(part->body, data.substr(70000, 10));
  EXPECT_EQ(part->headers["content-range"], "bytes 70000-70009/200000");
  auto tail =
      client.Get("/v1/blobs/" + digest, {{"Authorization", Bearer(admin_)}, {"Range", "bytes=-5"}});
  EXPECT_EQ(tail->body, data.substr(199995));
  auto cached = client.Get("/v1/blobs/" + digest, {{"Authorization", Bearer(admin_)},
                                                   {"If-None-Match", "\"" + digest + "\""}});
  EXPECT_EQ(cached->status, 304);
  auto bad = client.Get("/v1/blobs/" + digest,
                        {{"Authorization", Bearer(admin_)}, {"Range", "bytes=300000-"}});
  EXPECT_EQ(bad->status, 416);
}

TEST_P(RestTest, ConcurrentPushesGetDistinctVersions) {
  ASSERT_EQ(Call("POST", "/v1/models", R"({"name":"race"})").status, 201);
  std::string body =
      absl::StrCat(R"({"onnxDigest":")", Upload(compiler::testing::MlpOnnx(4, 4, 2)), "\"}");
  constexpr int kClients = 4, kEach = 5;
  std::mutex mu;
  std::vector<int64_t> numbers;
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&] {
      HttpClient client(server_->http_port());
      for (int i = 0; i < kEach; ++i) {
        auto r = client.Request("POST", "/v1/models/race/versions", body,
                                {{"Authorization", Bearer(admin_)}});
        v1::ModelVersion v;
        if (r.ok() && r->status == 201 && ParseProtoJson(r->body, &v).ok()) {
          std::lock_guard lock(mu);
          numbers.push_back(v.version());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<int64_t> distinct(numbers.begin(), numbers.end());
  EXPECT_EQ(numbers.size(), static_cast<size_t>(kClients * kEach));
  EXPECT_EQ(distinct.size(), numbers.size());
  EXPECT_EQ(*distinct.rbegin(), kClients * kEach);
}

TEST(AdminTokenTest, BootstrapFileIsPrivateAndEnvironmentTokenWorks) {
  ServerProcess::Options options;
  TempDir temp("edgeloop-admin");
  options.data_dir = temp.path();
  {
    ServerProcess server(options);
    ASSERT_TRUE(server.Start().ok());
    struct stat st;
    ASSERT_EQ(::stat((options.data_dir + "/admin.token").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    const std::string first = server.admin_token();
    ASSERT_TRUE(server.Stop(SIGTERM).ok());
    // A restart keeps the same admin token.
    ASSERT_TRUE(server.Start().ok());
    EXPECT_EQ(server.admin_token(), first);
    EXPECT_EQ(HttpClient(server.http_port())
                  .Get("/v1/tokens", {{"Authorization", Bearer(first)}})
                  ->status,
              200);
  }

  TempDir temp_env("edgeloop-admin-env");
  options.data_dir = temp_env.path();
  options.env["EDGELOOP_ADMIN_TOKEN"] = "operator-chosen-secret-0123456789";
  ServerProcess server(options);
  ASSERT_TRUE(server.Start().ok());
  EXPECT_FALSE(std::filesystem::exists(options.data_dir + "/admin.token"));
  HttpClient client(server.http_port());
  EXPECT_EQ(
      client.Get("/v1/tokens", {{"Authorization", Bearer("operator-chosen-secret-0123456789")}})
          ->status,
      200);
  EXPECT_EQ(
      client.Get("/v1/tokens", {{"Authorization", Bearer("operator-chosen-secret-0123456780")}})
          ->status,
      401);
}

// A 1 GiB upload streams to disk: the server's peak resident memory stays far below the
// upload's size.
TEST(LargeUploadTest, OneGibibyteStreamsWithBoundedMemory) {
  ServerProcess::Options options;
  TempDir temp("edgeloop-large");
  options.data_dir = temp.path();
  ServerProcess server(options);
  ASSERT_TRUE(server.Start().ok());
  constexpr int64_t kBytes = int64_t{1} << 30;
  std::string digest;
  auto response = StreamUpload(server.http_port(), server.admin_token(), kBytes, &digest);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(absl::StartsWith(*response, "HTTP/1.1 201")) << *response;
  EXPECT_TRUE(absl::StrContains(*response, digest)) << *response;
  std::ifstream status("/proc/" + std::to_string(server.pid()) + "/status");
  int64_t peak_kb = 0;
  for (std::string line; std::getline(status, line);) {
    if (absl::StartsWith(line, "VmHWM:")) peak_kb = std::stoll(line.substr(6));
  }
  std::printf("server peak RSS while receiving 1 GiB: %lld kB\n", static_cast<long long>(peak_kb));
  EXPECT_GT(peak_kb, 0);
  EXPECT_LT(peak_kb, 128 * 1024) << "peak RSS " << peak_kb << " kB while uploading 1 GiB";
  auto tail = HttpClient(server.http_port())
                  .Get("/v1/blobs/" + digest,
                       {{"Authorization", Bearer(server.admin_token())}, {"Range", "bytes=-4"}});
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->status, 206);
  EXPECT_EQ(tail->headers["content-range"],
            absl::StrCat("bytes ", kBytes - 4, "-", kBytes - 1, "/", kBytes));
}

INSTANTIATE_TEST_SUITE_P(Storage, RestTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

// Clients that abuse the port: they are cut off or refused, and everyone else is served.
class RestAbuseTest : public RestTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    return {"--max-upload-bytes",          "64000000", "--http-body-timeout-seconds", "2",
            "--http-idle-timeout-seconds", "3",        "--http-max-connections",      "24"};
  }

  // A raw loopback connection (optionally with a tiny receive buffer: a client that reads
  // slowly fills it at once).
  static int Connect(int port, int receive_buffer = 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0)
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    return fd;
  }
  // Reads until the server closes (true) or `limit` passes (false); what was read in `*got`.
  static bool ClosedWithin(int fd, absl::Duration limit, int64_t* got = nullptr) {
    const absl::Time deadline = absl::Now() + limit;
    char buffer[65536];
    int64_t total = 0;
    for (;;) {
      const int left = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (left <= 0) return false;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, left) <= 0) continue;
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;  // EOF or reset
      total += n;
    }
    if (got) *got = total;
    return true;
  }
  // The label sets of edgeloop_http_requests_total now (values cut off).
  std::vector<std::string> HttpSeries() {
    HttpResponse metrics = Call("GET", "/metrics", "", "");
    std::vector<std::string> series;
    for (absl::string_view line : absl::StrSplit(metrics.body, '\n'))
      if (absl::StartsWith(line, "edgeloop_http_requests_total{"))
        series.emplace_back(line.substr(0, line.rfind('}') + 1));
    return series;
  }
};

TEST_P(RestAbuseTest, ASlowBodyIsCutOffAtItsDeadlineWhileOthersAreServed) {
  // A JSON body trickling in a byte every 200 ms: never idle, never finished.
  const int json = Connect(server_->http_port());
  const std::string head =
      absl::StrCat("POST /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ", admin_,
                   "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{");
  ASSERT_EQ(::send(json, head.data(), head.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(head.size()));
  std::atomic<bool> closed{false};
  std::thread trickle([&] {
    for (int i = 0; i < 100 && !closed; ++i) {
      if (::send(json, " ", 1, MSG_NOSIGNAL) != 1) break;
      absl::SleepFor(absl::Milliseconds(200));
    }
  });
  // A blob upload that stalls after its first bytes.
  auto blob = StartPartialUpload(server_->http_port(), "/v1/blobs", admin_, 1 << 20,
                                 std::string(1000, 'x'));
  ASSERT_TRUE(blob.ok()) << blob.status();
  // Meanwhile everyone else is served.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Call("GET", "/v1/models").status, 200);
  EXPECT_TRUE(ClosedWithin(json, absl::Seconds(15)));
  closed = true;
  trickle.join();
  EXPECT_TRUE(ClosedWithin(*blob, absl::Seconds(15)));
  ::close(json);
  ::close(*blob);
  // The stalled upload leaves nothing behind (discarded as the server drops it, which the
  // client may see a moment before).
  EXPECT_TRUE(Eventually([&] { return StagedUploads() == 0; }, absl::Seconds(5)))
      << StagedUploads();
  EXPECT_EQ(Call("GET", "/v1/models").status, 200);
}

TEST_P(RestAbuseTest, AClientThatStopsReadingADownloadIsCutOff) {
  std::string digest;
  auto uploaded = StreamUpload(server_->http_port(), admin_, 48 << 20, &digest);
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  ASSERT_TRUE(absl::StrContains(*uploaded, " 201 ")) << *uploaded;
  const int reader = Connect(server_->http_port(), 4096);
  const std::string request =
      absl::StrCat("GET /v1/blobs/", digest, " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ",
                   admin_, "\r\n\r\n");
  ASSERT_EQ(::send(reader, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  // It reads nothing; the server's writes stall and hit the deadline. Then whatever sat in the
  // buffers is read, and the connection ends short of the 48 MiB.
  EXPECT_EQ(Call("GET", "/v1/models").status, 200);
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(Call("GET", "/metrics", "", "").body, "route=\"/v1/blobs/{digest}\"");
  })) << "the stalled download never ended";
  int64_t got = 0;
  EXPECT_TRUE(ClosedWithin(reader, absl::Seconds(15), &got));
  EXPECT_LT(got, int64_t{48} << 20);
  ::close(reader);
}

TEST_P(RestAbuseTest, InventedMethodsDoNotGrowTheMetricSeries) {
  HttpClient client(server_->http_port());
  ASSERT_TRUE(client.Request("BREW", "/v1/models").ok());
  // A request is counted once its answer is written, so the "other" series may show up a
  // moment after the client has the answer; the scrape's own series after the first scrape.
  auto settled = [](const std::vector<std::string>& series) {
    bool other = false, scrape = false;
    for (const auto& s : series) {
      other |= absl::StrContains(s, "method=\"other\"");
      scrape |= absl::StrContains(s, "route=\"/metrics\"");
    }
    return other && scrape;
  };
  std::vector<std::string> before;
  ASSERT_TRUE(Eventually([&] {
    before = HttpSeries();
    return settled(before);
  }));
  std::sort(before.begin(), before.end());
  uint32_t state = 12345;
  for (int i = 0; i < 10000; ++i) {
    std::string method;
    for (int k = 0; k < 6; ++k) {
      state = state * 1664525u + 1013904223u;
      method.push_back(static_cast<char>('A' + (state >> 24) % 26));
    }
    auto r = client.Request(method, "/v1/models");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 405) << method;
  }
  std::vector<std::string> after = HttpSeries();
  std::sort(after.begin(), after.end());
  EXPECT_EQ(after, before);
  EXPECT_TRUE(absl::StrContains(Call("GET", "/metrics", "", "").body, "method=\"other\""));
}

TEST_P(RestAbuseTest, ConnectionsBeyondTheCapAreAnswered503) {
  std::vector<int> idle;
  for (int i = 0; i < 24; ++i) idle.push_back(Connect(server_->http_port()));
  // The cap is reached once the server has accepted them all: the next one is refused.
  EXPECT_TRUE(Eventually([&] {
    auto r = HttpClient(server_->http_port()).Request("GET", "/healthz");
    return r.ok() && r->status == 503;
  }));
  for (int fd : idle) ::close(fd);
  // Freed connections serve again.
  EXPECT_TRUE(Eventually([&] {
    auto r = HttpClient(server_->http_port()).Request("GET", "/healthz");
    return r.ok() && r->status == 200;
  }));
}

INSTANTIATE_TEST_SUITE_P(Storage, RestAbuseTest, ::testing::Values("sqlite"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
