#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "store/database.h"

namespace edgeloop::store {

/// Small writes from many callers, committed in groups: a caller that arrives while a commit
/// runs waits for the next one, which runs every statement that arrived meanwhile in one
/// transaction (in the order of their keys, so two replicas' groups never lock rows in opposite
/// orders). A commit is one fsync however many callers it serves: on this kind of disk about a
/// millisecond, which otherwise caps a database at about a thousand writes a second. The first
/// waiter runs the commit (no thread of its own); the others sleep until it is done. A group
/// that fails is run again one statement per transaction, so one bad write fails only its own
/// caller. Thread-safe.
class GroupCommit {
 public:
  explicit GroupCommit(Database* database) : database_(database) {}

  /// Runs `sql` (one statement; rows from its RETURNING) in a group's transaction; returns once
  /// that transaction has committed.
  absl::StatusOr<Rows> Run(std::string key, std::string sql, std::vector<Value> params);

 private:
  struct Op {
    std::string key, sql;
    std::vector<Value> params;
    absl::StatusOr<Rows> result = Rows();
    bool done = false;
  };
  /// Commits `group` (sorted by key); each op's result is set.
  void Commit(std::vector<std::shared_ptr<Op>>& group);

  Database* database_;  // not owned
  std::mutex mu_;
  std::condition_variable done_;
  std::deque<std::shared_ptr<Op>> pending_;  // guarded by mu_
  bool committing_ = false;                  // guarded by mu_
};

}  // namespace edgeloop::store
