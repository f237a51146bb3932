#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "store/database.h"

namespace edgeloop::registry {

// Internal to the registry: every change it records (its own and those other components make
// through its methods, like the CI stage's version.ready) appends to the event log here.

/// Appends one event to the log in `tx`. The counter row's lock orders events by commit.
absl::Status AppendEvent(store::Transaction& tx, absl::string_view type, absl::string_view model,
                         int64_t version, absl::string_view alias, absl::string_view actor,
                         int64_t at_ms);

}  // namespace edgeloop::registry
