#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "store/database.h"

namespace edgeloop::fleet {

/// The channel (store::ChangeFeed) on which every replica hears that devices' desired state
/// changed, so that their Watch streams look again at once, wherever the change was made.
inline constexpr char kDesiredChangeChannel[] = "edgeloop_desired_state";

/// Announces, when `tx` commits, that the desired state of these devices (none: of every
/// device) changed. Ids go several to a notification, within PostgreSQL's payload limit.
absl::Status PublishDesiredChange(store::Transaction& tx, const std::vector<std::string>& ids = {});

/// The device ids a payload names; empty when it names every device ("").
std::vector<std::string> ParseDesiredChange(absl::string_view payload);

}  // namespace edgeloop::fleet
