#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace edgeloop::agent {

/// The recent predictions a label may still come for (Feedback), in a fixed ring per thread
/// slot (thread_slot.h): recording one is a handful of relaxed atomic stores into this
/// thread's ring — no lock, no read-modify-write — and its request id says where it is, so
/// a lookup is one slot read. A slot is reused after `capacity / rings` predictions on its
/// ring; a label for an overwritten prediction is not found. Each slot is a seqlock, so a lookup
/// racing with a reuse sees the old or the new prediction whole, or nothing.
class PredictionLog {
 public:
  explicit PredictionLog(size_t capacity = 65536);

  struct Entry {
    uint64_t counters = 0;  // WindowCounters id of the version that predicted (0: none)
    int64_t predicted = -1;
    absl::Time at;
  };
  /// Records a prediction; returns its request id (24 hex digits, unique per agent run).
  std::string Record(const Entry& entry);
  /// The prediction `request_id` names, if it is still in the ring.
  std::optional<Entry> Find(const std::string& request_id) const;

 private:
  struct Slot {
    std::atomic<uint64_t> tag{0};  // (sequence << 8 | shard); 0 while being written
    std::atomic<uint64_t> counters{0};
    std::atomic<int64_t> predicted{-1};
    std::atomic<int64_t> at_us{0};
  };
  struct Shard {
    alignas(64) std::atomic<uint64_t> next{1};
    std::unique_ptr<Slot[]> slots;
  };
  const uint32_t salt_;  // a new one each run: ids from an earlier run find nothing
  size_t per_shard_;
  std::vector<Shard> shards_;
};

}  // namespace edgeloop::agent
