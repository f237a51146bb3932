// gRPC API and CLI integration tests against the real edgeloop-server binary.
#include <grpcpp/grpcpp.h>

#include <fstream>

#include "absl/strings/match.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "edgeloop/v1/admin.grpc.pb.h"
#include "edgeloop/v1/registry.grpc.pb.h"
#include "compiler/testing/onnx_models.h"
#include "tests/testing/fixture.h"

namespace edgeloop::tests {
namespace {

class GrpcTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (HasFatalFailure()) return;
    channel_ = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    registry_ = v1::RegistryService::NewStub(channel_);
    admin_stub_ = v1::AdminService::NewStub(channel_);
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "<admin>") {
    auto c = std::make_unique<grpc::ClientContext>();
    if (!token.empty())
      c->AddMetadata("authorization", Bearer(token == "<admin>" ? admin_ : token));
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return c;
  }

  // Streams `bytes` in 100 KB chunks; returns the status and fills `blob`.
  grpc::Status Upload(const std::string& bytes, v1::Blob* blob, const std::string& expected = "",
                      const std::string& token = "<admin>") {
    auto context = Context(token);
    auto writer = registry_->UploadBlob(context.get(), blob);
    v1::UploadBlobRequest message;
    message.mutable_header()->set_expected_digest(expected);
    bool ok = writer->Write(message);
    for (size_t off = 0; ok && off < bytes.size(); off += 100'000) {
      message.set_chunk(bytes.substr(off, 100'000));
      ok = writer->Write(message);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::RegistryService::Stub> registry_;
  std::unique_ptr<v1::AdminService::Stub> admin_stub_;
};

TEST_P(GrpcTest, RegistryLifecycle) {
  v1::CreateModelRequest create;
  create.set_name("keyword-spotter");
  (*create.mutable_labels())["site"] = "plant-3";
  v1::Model model;
  ASSERT_TRUE(registry_->CreateModel(Context().get(), create, &model).ok());
  EXPECT_EQ(registry_->CreateModel(Context().get(), create, &model).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  std::string onnx = compiler::testing::MlpOnnx(40, 64, 12);
  v1::Blob blob;
  ASSERT_TRUE(Upload(onnx, &blob, DigestFromHex(Sha256Hex(onnx))).ok());
  EXPECT_EQ(blob.size(), static_cast<int64_t>(onnx.size()));

  v1::CreateVersionRequest push;
  push.set_model("keyword-spotter");
  push.set_onnx_digest(blob.digest());
  (*push.mutable_metrics())["f1"] = 0.88;
  v1::ModelVersion version;
  grpc::Status pushed = registry_->CreateVersion(Context().get(), push, &version);
  ASSERT_TRUE(pushed.ok()) << pushed.error_message();
  EXPECT_EQ(version.version(), 1);
  EXPECT_EQ(version.outputs(0).shape(1), 12);

  v1::SetAliasRequest alias;
  alias.set_model("keyword-spotter");
  alias.set_alias("canary");
  alias.set_version(1);
  v1::Alias set;
  ASSERT_TRUE(registry_->SetAlias(Context().get(), alias, &set).ok());
  v1::GetVersionRequest get;
  get.set_model("keyword-spotter");
  get.set_alias("canary");
  v1::ModelVersion got;
  ASSERT_TRUE(registry_->GetVersion(Context().get(), get, &got).ok());
  EXPECT_EQ(got.onnx_digest(), blob.digest());

  // Download resumes at an offset.
  v1::DownloadBlobRequest download;
  download.set_digest(blob.digest());
  download.set_offset(1000);
  auto context = Context();
  auto reader = registry_->DownloadBlob(context.get(), download);
  std::string received;
  v1::BlobChunk chunk;
  while (reader->Read(&chunk)) received += chunk.data();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(received, onnx.substr(1000));

  v1::ListEventsRequest events_request;
  v1::ListEventsResponse events;
  ASSERT_TRUE(registry_->ListEvents(Context().get(), events_request, &events).ok());
  ASSERT_EQ(events.events_size(), 3);
  EXPECT_EQ(events.events(2).type(), "alias.moved");
}

TEST_P(GrpcTest, ErrorsCarryTheRightCodes) {
  v1::GetModelRequest get;
  get.set_model("ghost");
  v1::Model model;
  EXPECT_EQ(registry_->GetModel(Context().get(), get, &model).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(registry_->GetModel(Context("").get(), get, &model).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(registry_->GetModel(Context("edgeloop_bogus").get(), get, &model).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  v1::CreateTokenRequest token_request;
  token_request.set_name("reader");
  token_request.set_role(v1::VIEWER);
  v1::CreateTokenResponse viewer;
  ASSERT_TRUE(admin_stub_->CreateToken(Context().get(), token_request, &viewer).ok());
  v1::CreateModelRequest create;
  create.set_name("m");
  EXPECT_EQ(registry_->CreateModel(Context(viewer.secret()).get(), create, &model).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::Blob blob;
  EXPECT_EQ(Upload("data", &blob, "", viewer.secret()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Digest mismatch and oversize uploads are refused; nothing is left staged.
  grpc::Status mismatch = Upload("real bytes", &blob, DigestFromHex(Sha256Hex("other")));
  EXPECT_EQ(mismatch.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(mismatch.error_message(), "digest mismatch"));
  EXPECT_EQ(Upload(std::string(3'100'000, 'z'), &blob).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(StagedUploads(), 0);

  ASSERT_TRUE(registry_->CreateModel(Context().get(), create, &model).ok());
  ASSERT_TRUE(Upload("not onnx at all", &blob).ok());
  v1::CreateVersionRequest push;
  push.set_model("m");
  push.set_onnx_digest(blob.digest());
  v1::ModelVersion version;
  grpc::Status bad = registry_->CreateVersion(Context().get(), push, &version);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(bad.error_message(), "not an ONNX model"));
  v1::GetVersionRequest get_version;
  get_version.set_model("m");
  get_version.set_version(1);
  EXPECT_EQ(registry_->GetVersion(Context().get(), get_version, &version).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_P(GrpcTest, CommandLineDrivesTheRegistry) {
  const std::string onnx_path = options_.data_dir + "/model.onnx";
  std::ofstream(onnx_path, std::ios::binary) << compiler::testing::MlpOnnx(16, 32, 5);
  const std::string token_file = options_.data_dir + "/admin.token";
  auto cli = [&](std::vector<std::string> words) {
    std::vector<std::string> argv = {BinaryPath("edgeloop"), "--server", server_->grpc_address(),
                                     "--token-file", token_file};
    argv.insert(argv.end(), words.begin(), words.end());
    return RunCommand(argv);
  };
  CommandResult created =
      cli({"model", "create", "gesture", "--label", "team=hci", "--description", "IMU gestures"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  CommandResult pushed =
      cli({"model", "push", "gesture", onnx_path, "--metric", "accuracy=0.97", "--source", "ci"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  EXPECT_TRUE(absl::StrContains(pushed.out, "pushed gesture version 1 sha256:")) << pushed.out;
  ASSERT_EQ(cli({"model", "push", "gesture", onnx_path, "--parent", "1"}).exit_code, 0);
  ASSERT_EQ(cli({"model", "alias", "set", "gesture", "production", "2"}).exit_code, 0);

  CommandResult listed = cli({"-o", "json", "model", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  v1::ListModelsResponse models;
  ASSERT_TRUE(ParseProtoJson(listed.out, &models).ok()) << listed.out;
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).latest_version(), 2);
  EXPECT_EQ(models.models(0).aliases().at("production"), 2);

  CommandResult shown = cli({"-o", "json", "model", "show", "gesture", "production"});
  v1::ModelVersion version;
  ASSERT_TRUE(ParseProtoJson(shown.out, &version).ok()) << shown.out;
  EXPECT_EQ(version.lineage().parent_version(), 1);
  CommandResult table = cli({"model", "show", "gesture"});
  EXPECT_TRUE(absl::StrContains(table.out, "input:float32[batch,16]")) << table.out;
  CommandResult history = cli({"model", "alias", "history", "gesture", "production"});
  EXPECT_TRUE(absl::StrContains(history.out, "admin (bootstrap)")) << history.out;

  CommandResult token = cli(
      {"-o", "json", "token", "create", "--name", "dashboard", "--role", "viewer", "--ttl", "24h"});
  ASSERT_EQ(token.exit_code, 0) << token.err;
  v1::CreateTokenResponse created_token;
  ASSERT_TRUE(ParseProtoJson(token.out, &created_token).ok());
  EXPECT_TRUE(created_token.token().has_expire_time());
  const std::string viewer_file = options_.data_dir + "/viewer.token";
  std::ofstream(viewer_file) << created_token.secret() << "\n";
  CommandResult denied = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(),
                                     "--token-file", viewer_file, "model", "create", "nope"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(denied.err, "PERMISSION_DENIED")) << denied.err;
  ASSERT_EQ(cli({"token", "revoke", created_token.token().id()}).exit_code, 0);
  CommandResult revoked = RunCommand({BinaryPath("edgeloop"), "--server", server_->grpc_address(),
                                      "--token-file", viewer_file, "model", "list"});
  EXPECT_TRUE(absl::StrContains(revoked.err, "UNAUTHENTICATED")) << revoked.err;

  CommandResult missing = cli({"model", "show", "ghost"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(missing.err, "NOT_FOUND"));
  EXPECT_EQ(cli({"model", "frobnicate"}).exit_code, 1);
  EXPECT_EQ(cli({"model", "push", "gesture"}).exit_code, 2);
}

INSTANTIATE_TEST_SUITE_P(Storage, GrpcTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace edgeloop::tests
