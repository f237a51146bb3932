#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace edgeloop {

/// Parses proto3 JSON into `message`. Malformed JSON, unknown enum names and (unless
/// `ignore_unknown_fields`) unknown fields are INVALID_ARGUMENT naming the problem.
/// Whitespace-only input parses as `{}`.
absl::Status ParseProtoJson(absl::string_view json, google::protobuf::Message* message,
                            bool ignore_unknown_fields = false);

/// proto3 JSON with every field printed (zeros and empty strings included), camelCase names.
std::string PrintProtoJson(const google::protobuf::Message& message, bool pretty = false);

}  // namespace edgeloop
