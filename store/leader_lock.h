#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace edgeloop::store {

/// Which one of the server processes on a database runs the singletons (the rollout
/// controller): the leader.
///
/// PostgreSQL: a session-level advisory lock taken on a connection of the lock's own. The
/// lock lives as long as that session: a leader that dies (kill -9, a lost host) lets it go as
/// soon as PostgreSQL sees the session end — at once for a dead process, within the TCP
/// keepalive time (about 10 s) for a vanished host — and a follower's next TryHold takes it.
/// The holder renews its lease with a round trip on every TryHold; when one fails (connection
/// lost, the statement timing out) it stops being leader at once, before anyone else can have
/// the lock, and drops the session so the lock is freed.
///
/// SQLite serves one node: Create takes an exclusive lock on `<path>.server-lock` and fails
/// while another process holds it, so a second server on the same file is refused with a
/// message that says so; TryHold is then always true.
///
/// Not thread-safe: one thread calls TryHold.
class LeaderLock {
 public:
  /// `url` as Database::Open takes it. FAILED_PRECONDITION for a SQLite database another
  /// server uses.
  static absl::StatusOr<std::unique_ptr<LeaderLock>> Create(const std::string& url);
  virtual ~LeaderLock() = default;

  /// Takes the lock when free, or renews it when held; whether this process leads now.
  virtual bool TryHold() = 0;
  /// Whether the lock is shared by several processes (PostgreSQL) or this one's (SQLite).
  virtual bool shared() const = 0;
};

}  // namespace edgeloop::store
