#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace edgeloop::server::rest {

/// Parses a request body (proto3 JSON mapping) into `message`. Unknown fields, unknown enum
/// names and malformed JSON are INVALID_ARGUMENT naming the problem. An empty body is `{}`.
absl::Status ParseJson(absl::string_view body, google::protobuf::Message* message);

/// proto3 JSON with every field printed (zeros and empty strings included), camelCase names.
std::string PrintJson(const google::protobuf::Message& message);

/// The one error body: {"code": "NOT_FOUND", "message": "...", "details": []}.
std::string ErrorJson(const absl::Status& status);

}  // namespace edgeloop::server::rest
