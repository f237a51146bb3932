#include "agent/thread_priority.h"

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"

namespace edgeloop::agent {

// What one background thread runs as. Its own NormalPriority scopes and the guard both change
// it, under `mu`; the policy follows from the state (Apply).
struct BackgroundPriority::Thread {
  enum class As { kIdle, kLifted, kNormal };
  pid_t tid = 0;
  std::mutex mu;
  int raised = 0;       // NormalPriority scopes open
  bool lifted = false;  // starved: nice 19 instead of SCHED_IDLE
  As applied = As::kNormal;
  // The guard's own bookkeeping, touched by its thread only.
  int64_t last_on_cpu_ns = -1;
  absl::Duration starving;
};

namespace {

using Thread = BackgroundPriority::Thread;

thread_local Thread* current = nullptr;  // the calling thread's, if it is a background thread
std::atomic<int64_t> lifts{0};
std::atomic<int64_t> last_lift_starved_ns{0};

// The kernel's struct sched_attr, first version (linux/sched/types.h cannot be included next
// to <sched.h>: both define sched_param).
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime, sched_deadline, sched_period;
};

// Policy and nice in one call (glibc 2.36 has no sched_setattr wrapper). `tid` 0 is the caller.
bool SetPolicy(pid_t tid, int policy, int nice) {
  SchedAttr attr{};
  attr.size = sizeof(attr);
  attr.sched_policy = policy;
  attr.sched_nice = nice;
  return ::syscall(SYS_sched_setattr, tid, &attr, 0) == 0;
}

// With `t.mu` held. A syscall only when the outcome changes.
void Apply(Thread& t) {
  const Thread::As want = t.raised > 0 ? Thread::As::kNormal
                          : t.lifted   ? Thread::As::kLifted
                                       : Thread::As::kIdle;
  if (want == t.applied) return;
  const bool ok = want == Thread::As::kIdle
                      ? SetPolicy(t.tid, SCHED_IDLE, 0)
                      : SetPolicy(t.tid, SCHED_OTHER, want == Thread::As::kNormal ? 0 : 19);
  if (ok) t.applied = want;
}

// Whether the thread is runnable (running or waiting for a CPU) and how much CPU time it has
// had in all, in ns; nullopt when the kernel does not say. The run-queue delay in schedstat
// would be the direct measure, but the kernel adds a wait to it only when the wait ends: a
// thread that never gets the CPU shows none.
struct CpuState {
  bool runnable;
  int64_t on_cpu_ns;
};
std::optional<CpuState> ReadCpuState(pid_t tid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/task/%d/stat", static_cast<int>(tid));
  std::ifstream stat(path);
  std::string line;
  if (!std::getline(stat, line)) return std::nullopt;
  const size_t name_end = line.rfind(')');  // the name may hold spaces and parentheses
  if (name_end == std::string::npos || name_end + 2 >= line.size()) return std::nullopt;
  CpuState state{line[name_end + 2] == 'R', 0};
  std::snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", static_cast<int>(tid));
  std::ifstream schedstat(path);
  if (!(schedstat >> state.on_cpu_ns)) return std::nullopt;
  return state;
}

// Looks at every background thread each kPeriod: one that starved through kStarvedAfter is
// lifted; one that did not starve through a period (it ran, or it slept) is idle again.
class StarvationGuard {
 public:
  static StarvationGuard& Get() {
    static StarvationGuard* guard = new StarvationGuard;  // lives as long as the process
    return *guard;
  }
  void Add(Thread* t) {
    std::lock_guard lock(mu_);
    threads_.push_back(t);
  }
  void Remove(const Thread* t) {  // after it returns, the guard no longer touches `t`
    std::lock_guard lock(mu_);
    threads_.erase(std::find(threads_.begin(), threads_.end(), t));
  }

 private:
  static constexpr absl::Duration kPeriod = absl::Milliseconds(250);

  StarvationGuard() {
    std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "agent-guard");
      SetPolicy(0, SCHED_OTHER, 0);  // whoever started it, the guard itself must get the CPU
      for (;;) {
        absl::SleepFor(kPeriod);
        std::lock_guard lock(mu_);
        for (Thread* t : threads_) Check(*t);
      }
    }).detach();
  }

  // Starving: runnable at the look, but on a CPU for under a tenth of the period since the
  // last. Asleep at a look, or running more, and it is not.
  static void Check(Thread& t) {
    const std::optional<CpuState> now = ReadCpuState(t.tid);
    if (!now) return;
    const bool starving = now->runnable && t.last_on_cpu_ns >= 0 &&
                          absl::Nanoseconds(now->on_cpu_ns - t.last_on_cpu_ns) < kPeriod / 10;
    t.last_on_cpu_ns = now->on_cpu_ns;
    t.starving = starving ? t.starving + kPeriod : absl::ZeroDuration();
    const bool lift = t.starving >= kStarvedAfter;
    std::lock_guard lock(t.mu);
    if (lift && !t.lifted) {
      last_lift_starved_ns.store(absl::ToInt64Nanoseconds(t.starving), std::memory_order_relaxed);
      lifts.fetch_add(1, std::memory_order_relaxed);
    }
    t.lifted = lift;
    Apply(t);
  }

  std::mutex mu_;
  std::vector<Thread*> threads_;
};

}  // namespace

bool BackgroundPriority::Available() {
  // Leaving SCHED_IDLE is checked against RLIMIT_NICE and CAP_SYS_NICE; trying it on a
  // throwaway thread answers for both without reading capabilities.
  static const bool available = [] {
    bool ok = false;
    std::thread([&ok] { ok = SetPolicy(0, SCHED_IDLE, 0) && SetPolicy(0, SCHED_OTHER, 0); }).join();
    return ok;
  }();
  return available;
}

int64_t BackgroundPriority::Lifts() { return lifts.load(std::memory_order_relaxed); }

absl::Duration BackgroundPriority::LastLiftStarvedFor() {
  return absl::Nanoseconds(last_lift_starved_ns.load(std::memory_order_relaxed));
}

BackgroundPriority::BackgroundPriority() {
  if (current != nullptr || !Available()) return;
  StarvationGuard& guard = StarvationGuard::Get();  // started before this thread is idle
  auto t = std::make_unique<Thread>();
  t->tid = ::gettid();
  {
    std::lock_guard lock(t->mu);
    Apply(*t);
    if (t->applied != Thread::As::kIdle) return;
  }
  thread_ = std::move(t);
  current = thread_.get();
  guard.Add(current);
}

BackgroundPriority::~BackgroundPriority() {
  if (thread_ == nullptr) return;
  StarvationGuard::Get().Remove(thread_.get());
  current = nullptr;
  SetPolicy(0, SCHED_OTHER, 0);
}

NormalPriority::NormalPriority() : thread_(current) {
  if (thread_ == nullptr) return;
  std::lock_guard lock(thread_->mu);
  ++thread_->raised;
  Apply(*thread_);
}

NormalPriority::~NormalPriority() {
  if (thread_ == nullptr) return;
  std::lock_guard lock(thread_->mu);
  --thread_->raised;
  Apply(*thread_);
}

}  // namespace edgeloop::agent
