#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

/// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status edgeloop_status_ = (expr);            \
    if (!edgeloop_status_.ok()) return edgeloop_status_; \
  } while (0)

#define EDGELOOP_CONCAT_INNER(a, b) a##b
#define EDGELOOP_CONCAT(a, b) EDGELOOP_CONCAT_INNER(a, b)

/// `ASSIGN_OR_RETURN(auto x, F())` assigns the value of a StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(EDGELOOP_CONCAT(edgeloop_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

namespace edgeloop {

/// A request body or upload larger than the configured limit. Carries RESOURCE_EXHAUSTED
/// (the gRPC code) and is answered with HTTP 413 rather than 429.
absl::Status PayloadTooLargeError(absl::string_view message);
bool IsPayloadTooLarge(const absl::Status& status);

/// The HTTP status for a Status: the single place where codes meet HTTP.
int HttpStatusFor(const absl::Status& status);

/// The canonical upper-snake name of a status code, e.g. "NOT_FOUND".
absl::string_view StatusCodeName(absl::StatusCode code);

}  // namespace edgeloop
