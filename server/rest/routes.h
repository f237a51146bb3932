#pragma once

#include <functional>

#include "absl/status/status.h"
#include "server/api.h"
#include "server/metrics.h"
#include "server/rest/router.h"

namespace edgeloop::server::rest {

/// The REST resources of ../docs/api.md, each translated into one Api call.
/// `readiness` answers /readyz (database reachable, migrations applied).
Router BuildRouter(Api* api, ServerMetrics* metrics, std::function<absl::Status()> readiness);

}  // namespace edgeloop::server::rest
