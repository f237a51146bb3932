#include "cli/client.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace edgeloop::cli {

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const std::string& server,
                                                        const std::string& token_file) {
  auto client = std::make_unique<Client>();
  auto token = ReadFile(token_file);
  if (!token.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read the token file ", token_file, ": ", token.status().message(),
                     " (set --token-file or EDGELOOP_TOKEN_FILE)"));
  }
  std::string first_line = token->substr(0, token->find('\n'));
  client->token_ = std::string(absl::StripAsciiWhitespace(first_line));
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  client->channel_ =
      grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), channel_args);
  client->registry_ = v1::RegistryService::NewStub(client->channel_);
  client->admin_ = v1::AdminService::NewStub(client->channel_);
  client->fleet_ = v1::FleetService::NewStub(client->channel_);
  client->telemetry_ = v1::TelemetryService::NewStub(client->channel_);
  client->rollouts_ = v1::RolloutService::NewStub(client->channel_);
  return client;
}

std::unique_ptr<grpc::ClientContext> Client::Context(int timeout_seconds) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds));
  return context;
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace edgeloop::cli
