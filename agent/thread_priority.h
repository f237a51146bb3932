#pragma once

namespace edgeloop::agent {

/// The agent's background work (syncing, downloading, verifying and loading modules) runs
/// under SCHED_IDLE, so applications' calls get the CPU the moment they want it. That is only
/// safe while the background thread holds nothing a call waits for: an idle thread holding a
/// lock gets no CPU while the calls behind it keep the cores busy, and every call stalls. So a
/// background thread about to take a lock the calls take raises itself with NormalPriority
/// for that moment.

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

 private:
  bool lowered_;
};

/// While alive, a SCHED_IDLE thread runs as a normal one; on any other thread it does nothing.
class NormalPriority {
 public:
  NormalPriority();
  ~NormalPriority();
  NormalPriority(const NormalPriority&) = delete;
  NormalPriority& operator=(const NormalPriority&) = delete;

 private:
  bool raised_;
};

}  // namespace edgeloop::agent
