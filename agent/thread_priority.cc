#include "agent/thread_priority.h"

#include <sched.h>

#include <thread>

namespace edgeloop::agent {
namespace {

bool SetPolicy(int policy) {
  sched_param param{};
  return ::sched_setscheduler(0, policy, &param) == 0;  // 0: the calling thread
}

}  // namespace

bool BackgroundPriority::Available() {
  // Leaving SCHED_IDLE is checked against RLIMIT_NICE and CAP_SYS_NICE; trying it on a
  // throwaway thread answers for both without reading capabilities.
  static const bool available = [] {
    bool ok = false;
    std::thread([&ok] { ok = SetPolicy(SCHED_IDLE) && SetPolicy(SCHED_OTHER); }).join();
    return ok;
  }();
  return available;
}

BackgroundPriority::BackgroundPriority() : lowered_(Available() && SetPolicy(SCHED_IDLE)) {}

BackgroundPriority::~BackgroundPriority() {
  if (lowered_) SetPolicy(SCHED_OTHER);
}

NormalPriority::NormalPriority()
    : raised_(::sched_getscheduler(0) == SCHED_IDLE && SetPolicy(SCHED_OTHER)) {}

NormalPriority::~NormalPriority() {
  if (raised_) SetPolicy(SCHED_IDLE);
}

}  // namespace edgeloop::agent
