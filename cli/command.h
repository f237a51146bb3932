#pragma once

// What every `edgeloop <noun> <verb>` command shares: its context, the one way it prints an
// answer, and the small parsers and formatters the nouns have in common.
#include <map>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "edgeloop/v1/registry.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace edgeloop::cli {

/// One command's words and flags, the server it talks to, and where and how it prints.
struct Command {
  const Args& args;
  Client& client;
  OutputFormat format;
  std::ostream& out;

  bool json() const { return format == OutputFormat::kJson; }
};

/// The nouns, one file each.
absl::Status ModelCommand(const Command& c);      // cli/model_commands.cc
absl::Status DeviceCommand(const Command& c);     // cli/device_commands.cc
absl::Status TokenCommand(const Command& c);      // cli/token_commands.cc
absl::Status TelemetryCommand(const Command& c);  // cli/telemetry_commands.cc
absl::Status RolloutCommand(const Command& c);    // cli/rollout_commands.cc

/// `response` as JSON (-o json).
template <typename Message>
absl::Status PrintJson(const Command& c, const Message& response) {
  c.out << PrintProtoJson(response, true) << "\n";
  return absl::OkStatus();
}

/// How a command answers: `response` as JSON with -o json, else what `human` prints to c.out.
template <typename Message, typename Human>
absl::Status Print(const Command& c, const Message& response, Human human) {
  if (c.json()) return PrintJson(c, response);
  human();
  return absl::OkStatus();
}

/// Every page of a paged list, as one response (the server answers at most 1000 items a page).
template <typename Response, typename Request, typename Call>
absl::StatusOr<Response> AllPages(Request request, Call call) {
  Response all;
  do {
    Response page;
    RETURN_IF_ERROR(call(request, &page));
    request.set_page_token(page.next_page_token());
    all.MergeFrom(page);
  } while (!request.page_token().empty());
  all.clear_next_page_token();
  return all;
}

/// INVALID_ARGUMENT with the usage line when fewer than `words` words were given.
absl::Status Need(const Args& args, size_t words, const char* usage);

/// A positive integer, or INVALID_ARGUMENT naming `what`.
absl::StatusOr<int64_t> Number(const std::string& text, const char* what);

/// "2026-12-06T19:00:00Z", or "-" for an unset time.
std::string Time(const google::protobuf::Timestamp& t);
/// The same for a time in Unix milliseconds, as telemetry carries it.
std::string TimeMs(int64_t unix_ms);

/// "name:dtype[1,16]" (symbolic dimensions by name).
std::string Shape(const v1::TensorSpec& spec);

/// "k=v,k=v" sorted, or "-".
std::string Pairs(const google::protobuf::Map<std::string, std::string>& m);

}  // namespace edgeloop::cli
