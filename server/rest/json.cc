#include "server/rest/json.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"

namespace edgeloop::server::rest {

std::string ErrorJson(const absl::Status& status) {
  return absl::StrCat("{\"code\":\"", StatusCodeName(status.code()), "\",\"message\":\"",
                      JsonEscape(status.message()), "\",\"details\":[]}");
}

}  // namespace edgeloop::server::rest
