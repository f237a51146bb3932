#include "agent/prediction_log.h"

#include <algorithm>
#include <cstdlib>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "agent/thread_slot.h"

namespace edgeloop::agent {
namespace {

uint32_t NewSalt() {
  absl::BitGen random;
  return absl::Uniform<uint32_t>(random);
}

}  // namespace

PredictionLog::PredictionLog(size_t capacity)
    : salt_(NewSalt()),
      per_shard_(std::max<size_t>(capacity / (ThreadSlots() + 1), 1)),
      shards_(static_cast<size_t>(ThreadSlots()) + 1) {
  for (Shard& shard : shards_) shard.slots = std::make_unique<Slot[]>(per_shard_);
}

std::string PredictionLog::Record(const Entry& entry) {
  const int s = ThreadSlot();
  Shard& shard = shards_[static_cast<size_t>(s)];
  // One writer in an exclusive slot: a plain increment; the shared slot's writers race.
  const uint64_t sequence = s < ThreadSlots() ? shard.next.load(std::memory_order_relaxed)
                                              : shard.next.fetch_add(1, std::memory_order_relaxed);
  if (s < ThreadSlots()) shard.next.store(sequence + 1, std::memory_order_relaxed);
  const uint64_t tag = (sequence << 8) | static_cast<uint64_t>(s);
  Slot& slot = shard.slots[sequence % per_shard_];
  slot.tag.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  slot.counters.store(entry.counters, std::memory_order_relaxed);
  slot.predicted.store(entry.predicted, std::memory_order_relaxed);
  slot.at_us.store(absl::ToUnixMicros(entry.at), std::memory_order_relaxed);
  slot.tag.store(tag, std::memory_order_release);
  return absl::StrFormat("%08x%016x", salt_, tag);
}

std::optional<PredictionLog::Entry> PredictionLog::Find(const std::string& request_id) const {
  uint32_t salt = 0;
  uint64_t tag = 0;
  if (request_id.size() != 24 || !absl::SimpleHexAtoi(request_id.substr(0, 8), &salt) ||
      !absl::SimpleHexAtoi(request_id.substr(8), &tag) || salt != salt_ || tag == 0) {
    return std::nullopt;
  }
  const size_t s = tag & 0xff;
  if (s >= shards_.size()) return std::nullopt;
  const Slot& slot = shards_[s].slots[(tag >> 8) % per_shard_];
  if (slot.tag.load(std::memory_order_acquire) != tag) return std::nullopt;
  Entry entry;
  entry.counters = slot.counters.load(std::memory_order_relaxed);
  entry.predicted = slot.predicted.load(std::memory_order_relaxed);
  entry.at = absl::FromUnixMicros(slot.at_us.load(std::memory_order_relaxed));
  std::atomic_thread_fence(std::memory_order_acquire);
  if (slot.tag.load(std::memory_order_relaxed) != tag) return std::nullopt;  // reused meanwhile
  return entry;
}

}  // namespace edgeloop::agent
