#pragma once

#include <cstdint>
#include <memory>

#include "absl/time/time.h"

namespace edgeloop::agent {

/// The agent's background work (syncing, downloading, verifying and loading modules) runs
/// under SCHED_IDLE, so applications' calls get the CPU the moment they want it. That is only
/// safe while the background thread holds nothing a call waits for: an idle thread holding a
/// lock gets no CPU while the calls behind it keep the cores busy, and every call stalls. So a
/// background thread about to take a lock the calls take raises itself with NormalPriority
/// for that moment.
///
/// Idle priority must not mean never: on a device whose applications keep every core busy, a
/// SCHED_IDLE thread gets a weight of 3 against their 1,024 and an update would crawl for
/// minutes. A guard thread watches how long each background thread has waited for a CPU (its
/// state and CPU time, /proc/self/task/TID); one kept waiting through kStarvedAfter is
/// lifted to nice 19 (a small fair share, about 1.5% of a core against one busy application
/// thread) until it next sleeps, and is idle again from then on.

/// How long a background thread may wait for a CPU before the guard lifts it.
inline constexpr absl::Duration kStarvedAfter = absl::Seconds(1);

/// While alive, the calling thread runs under SCHED_IDLE (Linux; this thread only) — if the
/// process may also take it back out (Available()); otherwise it changes nothing.
class BackgroundPriority {
 public:
  BackgroundPriority();
  ~BackgroundPriority();
  BackgroundPriority(const BackgroundPriority&) = delete;
  BackgroundPriority& operator=(const BackgroundPriority&) = delete;

  /// Whether a thread of this process can leave SCHED_IDLE again: root, CAP_SYS_NICE, or an
  /// RLIMIT_NICE that allows nice 0 (systemd: LimitNICE=+0). Without it background work stays
  /// at normal priority, which beats an idle thread that cannot be raised while holding a lock.
  static bool Available();

  /// How many times the guard has lifted a starved background thread (for metrics).
  static int64_t Lifts();
  /// How long, in the guard's looks, the last lifted thread had been starving when it was
  /// lifted (for tests: the guard counts looks, not the wall clock).
  static absl::Duration LastLiftStarvedFor();

  struct Thread;  // one background thread's state, which the guard looks at too

 private:
  std::unique_ptr<Thread> thread_;
};

/// While alive, a background thread runs as a normal one (nice 0); on any other thread it does
/// nothing. Scopes nest.
class NormalPriority {
 public:
  NormalPriority();
  ~NormalPriority();
  NormalPriority(const NormalPriority&) = delete;
  NormalPriority& operator=(const NormalPriority&) = delete;

 private:
  BackgroundPriority::Thread* thread_;
};

}  // namespace edgeloop::agent
