#include "server/grpc/watch_hub.h"

#include <pthread.h>

#include <atomic>

#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status.h"
#include "server/grpc/call_internal.h"

namespace edgeloop::server::grpc_api {

/// One Watch call. gRPC holds one reference until OnDone; each queued check holds one more, so
/// a check never runs on a stream that is gone. Its state is guarded by mu_; `next_poll` and
/// `queued` by the hub's mu_.
class WatchHub::Stream final : public grpc::ServerWriteReactor<v1::WatchEvent> {
 public:
  Stream(WatchHub* hub, std::string device_id, int64_t known,
         std::unique_ptr<DeviceStreamLimit::Slot> slot)
      : hub_(*hub), device_id_(std::move(device_id)), known_(known), slot_(std::move(slot)) {}

  const std::string& device_id() const { return device_id_; }
  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  /// On a check thread: writes the desired state when the generation moved since the last
  /// one this stream sent. A decommissioned or deleted device ends the stream with the reason.
  /// `named`: a change named this device, so it has most likely moved: the desired state is
  /// read at once (its generation with it) instead of after a read of the generation alone.
  void Check(bool named) {
    int64_t known;
    {
      std::lock_guard lock(mu_);
      if (finished_) return;
      if (writing_) {  // one write at a time: check again once it is done
        check_after_write_ = true;
        return;
      }
      known = known_;
    }
    absl::StatusOr<v1::SyncResponse> desired = absl::UnknownError("");
    if (named) {
      desired = hub_.devices_.DesiredState(device_id_);
    } else {
      absl::StatusOr<int64_t> generation = hub_.devices_.Generation(device_id_);
      if (generation.ok() && *generation == known) return;
      desired = generation.ok() ? hub_.devices_.DesiredState(device_id_) : generation.status();
    }
    if (desired.ok() && desired->desired_generation() == known) return;
    if (!desired.ok()) {
      // A database that is briefly away is not the device's fault: the next poll tries again.
      if (absl::IsUnavailable(desired.status()) || absl::IsDeadlineExceeded(desired.status()))
        return;
      FinishOnce(desired.status());
      return;
    }
    {
      std::lock_guard lock(mu_);
      if (finished_) return;
      // Two check threads can read for one stream at once (it is queued again while a check
      // reads). Only one write may be in flight, and event_ is its buffer: the later check
      // looks again once that write is done (a second StartWrite crashed the server).
      if (writing_) {
        check_after_write_ = true;
        return;
      }
      known_ = desired->desired_generation();
      event_.Clear();
      event_.set_desired_generation(known_);
      *event_.mutable_desired() = std::move(*desired);  // the device need not sync to learn it
      writing_ = true;
    }
    StartWrite(&event_);
  }

  /// Ends the call once, whoever asks first (a check, Stop, a cancelled or broken stream).
  void FinishOnce(const absl::Status& status) {
    {
      std::lock_guard lock(mu_);
      if (finished_) return;
      finished_ = true;
      status_ = status;
    }
    Finish(ToGrpcStatus(status));
  }

  /// The generation this stream last sent (or the device said it knew).
  int64_t known() {
    std::lock_guard lock(mu_);
    return known_;
  }

  bool queued = false;         // in queue_; hub's mu_
  bool queued_urgent = false;  // in urgent_; hub's mu_

 private:
  void OnWriteDone(bool ok) override {
    if (!ok) {  // the device went away
      FinishOnce(absl::OkStatus());
      return;
    }
    bool again;
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      again = check_after_write_;
      check_after_write_ = false;
    }
    if (again) {
      std::lock_guard lock(hub_.mu_);
      hub_.EnqueueLocked(this, /*urgent=*/true);
    }
  }
  void OnCancel() override { FinishOnce(absl::CancelledError("the device ended the watch")); }
  void OnDone() override {
    hub_.metrics_.ObserveGrpc("device.Watch", StatusCodeName(status_.code()),
                              absl::Now() - started_);
    slot_.reset();
    hub_.Forget(this);
    Unref();
  }

  WatchHub& hub_;
  const std::string device_id_;
  const absl::Time started_ = absl::Now();
  std::atomic<int> refs_{1};
  std::mutex mu_;
  int64_t known_;
  bool writing_ = false;
  bool check_after_write_ = false;
  bool finished_ = false;
  absl::Status status_;
  v1::WatchEvent event_;  // the write in flight
  std::unique_ptr<DeviceStreamLimit::Slot> slot_;
};

namespace {

/// A call refused before it was a stream (the device's cap, shutdown).
class Refusal final : public grpc::ServerWriteReactor<v1::WatchEvent> {
 public:
  explicit Refusal(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::WatchEvent>* WatchHub::Refuse(const absl::Status& status) {
  return new Refusal(status);
}

WatchHub::WatchHub(fleet::DeviceRegistry* devices, ServerMetrics* metrics,
                   DeviceStreamLimit* limit, WatchHubOptions options)
    : devices_(*devices), metrics_(*metrics), limit_(*limit), options_(options) {
  for (int i = 0; i < options_.check_threads; ++i) {
    threads_.emplace_back([this] {
      ::pthread_setname_np(::pthread_self(), "watch-check");
      CheckLoop();
    });
  }
  threads_.emplace_back([this] {
    ::pthread_setname_np(::pthread_self(), "watch-poll");
    PollLoop();
  });
}

WatchHub::~WatchHub() {
  Stop();
  std::unique_lock lock(mu_);
  forgotten_.wait(lock, [&] { return open_ == 0; });
  lock.unlock();
  for (std::thread& t : threads_) t.join();
  for (Stream* s : queue_) s->Unref();
  for (Stream* s : urgent_) s->Unref();
}

grpc::ServerWriteReactor<v1::WatchEvent>* WatchHub::Open(const std::string& device_id,
                                                         int64_t known_generation) {
  std::unique_ptr<DeviceStreamLimit::Slot> slot = limit_.Acquire(device_id);
  if (slot == nullptr) {
    metrics_.ObserveGrpc("device.Watch", StatusCodeName(absl::StatusCode::kResourceExhausted),
                         absl::ZeroDuration());
    return Refuse(absl::ResourceExhaustedError(absl::StrCat(
        "device \"", device_id, "\" already has ", limit_.per_device(), " streams open")));
  }
  auto* stream = new Stream(this, device_id, known_generation, std::move(slot));
  {
    std::lock_guard lock(mu_);
    ++open_;  // until OnDone Forgets it
    if (!stopping_) {
      by_device_[device_id].insert(stream);
      metrics_.SetWatchStreams(open_);
      EnqueueLocked(stream, false);  // the first check answers at once if the device is behind
      return stream;
    }
  }
  stream->FinishOnce(absl::UnavailableError("the server is shutting down"));
  return stream;
}

void WatchHub::EnqueueLocked(Stream* stream, bool urgent) {
  if (stopping_ || stream->queued_urgent || (!urgent && stream->queued)) return;
  (urgent ? stream->queued_urgent : stream->queued) = true;
  stream->Ref();
  (urgent ? urgent_ : queue_).push_back(stream);
  work_.notify_one();
}

void WatchHub::Notify(absl::string_view device_id) {
  std::lock_guard lock(mu_);
  if (device_id.empty()) {
    for (auto& [id, streams] : by_device_)
      for (Stream* s : streams) EnqueueLocked(s, false);
    return;
  }
  auto it = by_device_.find(device_id);
  if (it == by_device_.end()) return;
  for (Stream* s : it->second) EnqueueLocked(s, true);
}

void WatchHub::CheckLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    work_.wait(lock, [&] { return stopping_ || !queue_.empty() || !urgent_.empty(); });
    if (stopping_) return;
    // Changes named for a device first: a wave's release is not held up behind a fleet-wide
    // check (a build finishing wakes every stream) of thousands of streams.
    const bool urgent = !urgent_.empty();
    std::deque<Stream*>& from = urgent ? urgent_ : queue_;
    Stream* stream = from.front();
    from.pop_front();
    if (!(urgent ? stream->queued_urgent : stream->queued)) {  // checked since, from the other
      lock.unlock();
      stream->Unref();
      lock.lock();
      continue;
    }
    // Unqueued before the read: a change that lands during it queues the stream again. A
    // check serves the stream's place in both queues.
    stream->queued = false;
    stream->queued_urgent = false;
    lock.unlock();
    stream->Check(urgent);
    stream->Unref();
    lock.lock();
  }
}

void WatchHub::PollLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    poll_.wait_for(lock, absl::ToChronoNanoseconds(options_.poll_interval),
                   [&] { return stopping_; });
    if (stopping_) return;
    lock.unlock();
    // One read for the whole fleet, and a check only for the streams whose device moved on
    // (or left). Checking every stream instead kept the check threads busy with a fleet of
    // 10,000 (two reads each, every interval), and the changes pushed for a rollout's wave
    // queued behind them for tens of seconds.
    absl::StatusOr<absl::flat_hash_map<std::string, int64_t>> generations =
        devices_.Generations();
    lock.lock();
    if (!generations.ok()) {
      Log(LogLevel::kWarning, "watch poll could not read the generations; trying again",
          {{"error", generations.status().ToString()}});
      continue;
    }
    for (auto& [id, streams] : by_device_) {
      auto it = generations->find(id);
      for (Stream* s : streams) {
        if (it == generations->end() || s->known() != it->second) EnqueueLocked(s, false);
      }
    }
  }
}

void WatchHub::Forget(Stream* stream) {
  std::lock_guard lock(mu_);
  auto it = by_device_.find(stream->device_id());
  if (it != by_device_.end()) {
    it->second.erase(stream);
    if (it->second.empty()) by_device_.erase(it);
  }
  --open_;
  metrics_.SetWatchStreams(open_);
  forgotten_.notify_all();
}

void WatchHub::Stop() {
  std::vector<Stream*> open;
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      work_.notify_all();
      poll_.notify_all();
    }
    for (auto& [id, streams] : by_device_) {
      for (Stream* s : streams) {
        s->Ref();
        open.push_back(s);
      }
    }
  }
  for (Stream* s : open) {
    s->FinishOnce(absl::OkStatus());
    s->Unref();
  }
}

}  // namespace edgeloop::server::grpc_api
