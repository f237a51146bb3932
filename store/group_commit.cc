#include "store/group_commit.h"

#include <algorithm>

namespace edgeloop::store {

absl::StatusOr<Rows> GroupCommit::Run(std::string key, std::string sql,
                                      std::vector<Value> params) {
  auto op = std::make_shared<Op>();
  op->key = std::move(key);
  op->sql = std::move(sql);
  op->params = std::move(params);
  std::unique_lock lock(mu_);
  pending_.push_back(op);
  while (!op->done) {
    if (committing_) {
      done_.wait(lock);
      continue;
    }
    // This caller commits the group that gathered while the last commit ran (its own in it).
    committing_ = true;
    std::vector<std::shared_ptr<Op>> group(pending_.begin(), pending_.end());
    pending_.clear();
    lock.unlock();
    Commit(group);
    lock.lock();
    committing_ = false;
    for (const std::shared_ptr<Op>& o : group) o->done = true;
    done_.notify_all();
  }
  return std::move(op->result);
}

void GroupCommit::Commit(std::vector<std::shared_ptr<Op>>& group) {
  std::stable_sort(group.begin(), group.end(),
                   [](const auto& a, const auto& b) { return a->key < b->key; });
  absl::Status s = RunInTransaction(*database_, [&](Transaction& tx) -> absl::Status {
    for (const std::shared_ptr<Op>& o : group) {
      o->result = tx.Query(o->sql, o->params);
      if (!o->result.ok()) return o->result.status();
    }
    return absl::OkStatus();
  });
  if (s.ok()) return;
  if (group.size() == 1) {
    group[0]->result = s;
    return;
  }
  // Nothing of the group committed: each alone, so only a bad statement fails its caller.
  for (const std::shared_ptr<Op>& o : group) {
    absl::Status alone = RunInTransaction(*database_, [&](Transaction& tx) -> absl::Status {
      o->result = tx.Query(o->sql, o->params);
      return o->result.status();
    });
    if (!alone.ok()) o->result = alone;
  }
}

}  // namespace edgeloop::store
