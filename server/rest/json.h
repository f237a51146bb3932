#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace edgeloop::server::rest {

/// The one error body: {"code": "NOT_FOUND", "message": "...", "details": []}.
std::string ErrorJson(const absl::Status& status);

}  // namespace edgeloop::server::rest
