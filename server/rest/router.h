#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth.h"

namespace edgeloop::server::rest {

/// A REST request as the route handlers see it: no transport types.
struct RestRequest {
  const Principal* principal = nullptr;     // null on public routes
  std::map<std::string, std::string> path;  // "{model}" → value, percent-decoded
  std::map<std::string, std::string> query;
  std::string body;
};

struct RestResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

using RestHandler = std::function<absl::StatusOr<RestResponse>(const RestRequest&)>;

enum class RouteKind {
  kJson,          // authenticated; body read whole (bounded), handler returns the response
  kPublic,        // no authentication (/healthz, /readyz, /metrics)
  kBlobUpload,    // authenticated; body streamed into the blob store
  kBlobDownload,  // authenticated; blob streamed out with Range and ETag
};

struct Route {
  std::string method;
  std::string pattern;  // "/v1/models/{model}/versions/{version}"; "{id}:revoke" matches a suffix
  RouteKind kind;
  RestHandler handler;
  std::vector<std::string> segments;
};

/// Method + path template → route. Patterns are matched segment by segment.
class Router {
 public:
  void Add(std::string method, std::string pattern, RouteKind kind, RestHandler handler = nullptr);

  struct Match {
    const Route* route = nullptr;
    std::map<std::string, std::string> params;
    bool other_method = false;  // the path exists with another method (405)
  };
  Match Find(absl::string_view method, absl::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

/// Decodes %XX escapes; `+` becomes a space only in query strings (form encoding).
std::string PercentDecode(absl::string_view s, bool plus_as_space = false);
std::map<std::string, std::string> ParseQuery(absl::string_view query);

}  // namespace edgeloop::server::rest
