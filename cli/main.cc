// edgeloop: the operator command line, speaking the operator gRPC API.
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/strings/match.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "common/status.h"

namespace {

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace edgeloop;
  auto args = cli::ParseArgs(std::vector<std::string>(argv + 1, argv + argc), {"help", "enroll", "watch", "active"});
  if (!args.ok()) {
    std::cerr << "edgeloop: " << args.status().message() << "\n";
    return 2;
  }
  if (args->Has("help") || args->words.empty()) {
    std::cout << cli::Usage();
    return args->Has("help") ? 0 : 2;
  }
  std::string output = args->Flag("output", "table");
  if (output != "table" && output != "json") {
    std::cerr << "edgeloop: -o takes table or json\n";
    return 2;
  }
  auto client = cli::Client::Connect(
      args->Flag("server", EnvOr("EDGELOOP_SERVER", "127.0.0.1:9090")),
      args->Flag("token-file", EnvOr("EDGELOOP_TOKEN_FILE", "./var/admin.token")));
  if (!client.ok()) {
    std::cerr << "edgeloop: " << client.status().message() << "\n";
    return 1;
  }
  absl::Status status = cli::RunCommand(
      *args, **client, output == "json" ? cli::OutputFormat::kJson : cli::OutputFormat::kTable,
      std::cout);
  if (!status.ok()) {
    std::cerr << "edgeloop: " << StatusCodeName(status.code()) << ": " << status.message() << "\n";
    return absl::IsInvalidArgument(status) && absl::StartsWith(status.message(), "usage") ? 2 : 1;
  }
  return 0;
}
