#pragma once

#include <atomic>
#include <cstdint>

namespace edgeloop::agent {

/// Per-thread counters without atomic read-modify-writes. Each calling thread holds one of
/// ThreadSlots() exclusive slots for its life (taken on its first call, under a lock taken
/// only then and at thread exit, given back when it exits); threads beyond that share one
/// more slot, ThreadSlots() itself. A counter in an exclusive slot has one writer, so it is
/// bumped with a plain load and store (no lock prefix, no cache line shared with other
/// calls); in the shared slot with an atomic add. Readers only ever read: totals are sums
/// over slots, and a window's counts the difference of two totals.
int ThreadSlot();
int ThreadSlots();  // 2 per core, 4 to 16

/// `exclusive`: the caller's slot is < ThreadSlots() (asked once per call, not per counter).
inline void Bump(std::atomic<int64_t>& counter, bool exclusive) {
  if (exclusive) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  } else {
    counter.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace edgeloop::agent
