#include "common/proto_json.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace edgeloop {

absl::Status ParseProtoJson(absl::string_view json, google::protobuf::Message* message,
                            bool ignore_unknown_fields) {
  if (json.find_first_not_of(" \t\r\n") == absl::string_view::npos) json = "{}";
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = ignore_unknown_fields;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), message, options);
  if (!status.ok()) return absl::InvalidArgumentError(std::string(status.message().as_string()));
  return absl::OkStatus();
}

std::string PrintProtoJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.add_whitespace = pretty;
  std::string out;
  // Printing a message we hold cannot fail: every field is representable in JSON.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

}  // namespace edgeloop
