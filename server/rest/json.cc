#include "server/rest/json.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "google/protobuf/util/json_util.h"

namespace edgeloop::server::rest {

absl::Status ParseJson(absl::string_view body, google::protobuf::Message* message) {
  if (body.find_first_not_of(" \t\r\n") == absl::string_view::npos) body = "{}";
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(body.data(), body.size()), message, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("malformed request body: ", status.message().as_string()));
  }
  return absl::OkStatus();
}

std::string PrintJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

std::string ErrorJson(const absl::Status& status) {
  return absl::StrCat("{\"code\":\"", StatusCodeName(status.code()), "\",\"message\":\"",
                      JsonEscape(status.message()), "\",\"details\":[]}");
}

}  // namespace edgeloop::server::rest
