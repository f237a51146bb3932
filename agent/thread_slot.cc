#include "agent/thread_slot.h"

#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

namespace edgeloop::agent {
namespace {

struct Slots {
  std::mutex mu;
  std::vector<bool> taken;
  int Take() {
    std::lock_guard lock(mu);
    for (size_t k = 0; k < taken.size(); ++k) {
      if (!taken[k]) {
        taken[k] = true;
        return static_cast<int>(k);
      }
    }
    return static_cast<int>(taken.size());  // the shared slot
  }
  void Give(int slot) {
    std::lock_guard lock(mu);
    if (slot < static_cast<int>(taken.size())) taken[static_cast<size_t>(slot)] = false;
  }
};

Slots& AllSlots() {
  static Slots* slots = [] {
    auto* s = new Slots;  // never destroyed: threads may exit after static destruction
    s->taken.assign(static_cast<size_t>(ThreadSlots()), false);
    return s;
  }();
  return *slots;
}

struct Held {
  int slot = AllSlots().Take();
  ~Held() { AllSlots().Give(slot); }
};

}  // namespace

int ThreadSlots() {
  static const int slots =
      std::clamp(2 * static_cast<int>(std::thread::hardware_concurrency()), 4, 16);
  return slots;
}

int ThreadSlot() {
  thread_local const Held held;
  return held.slot;
}

}  // namespace edgeloop::agent
