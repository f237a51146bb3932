#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edgeloop::store {

/// What the other server processes on one database changed, as they commit: PostgreSQL's
/// LISTEN on a connection of the feed's own, with a thread that waits on it. A transaction
/// announces a change with Transaction::Publish; every process listening on that channel —
/// the one that wrote too — hears the payload once the transaction commits.
///
/// Notifications sent while the feed's connection is down are lost, so after it (re)connects
/// the listener is called with "" ("anything may have changed"). SQLite serves one process,
/// which hears its own changes in process: its feed never calls.
class ChangeFeed {
 public:
  using Listener = std::function<void(absl::string_view payload)>;
  /// Listens on `channel` of the database `url` names (as Database::Open takes it). The
  /// listener runs on the feed's thread, one call at a time.
  static absl::StatusOr<std::unique_ptr<ChangeFeed>> Listen(const std::string& url,
                                                            const std::string& channel,
                                                            Listener listener);
  /// Stops the thread (within about a second) and closes the connection.
  virtual ~ChangeFeed() = default;
};

}  // namespace edgeloop::store
