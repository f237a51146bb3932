#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "edgeloop/v1/device.pb.h"
#include "fleet/device_registry.h"
#include "server/grpc/device_stream_limit.h"
#include "server/metrics.h"

namespace edgeloop::server::grpc_api {

struct WatchHubOptions {
  /// How often the streams' devices' generations are read (one read for all of them), to
  /// catch changes no notification announced (changes made through this replica, and on
  /// PostgreSQL through the others, are pushed at once).
  absl::Duration poll_interval = absl::Seconds(15);
  /// Threads that read the database for streams; the streams themselves hold none.
  int check_threads = 2;
};

/// The open Watch streams. Each is a gRPC callback reactor that holds no thread while it waits:
/// when its device's desired state may have changed (DeviceRegistry's change listener, or the
/// poll finding its generation moved), the stream is queued, a check thread rereads the
/// generation and, when it moved, writes the new desired state. Queuing coalesces: a burst of changes costs one read per stream.
/// 10,000 watching devices cost 10,000 small objects and a few threads.
class WatchHub {
 public:
  WatchHub(fleet::DeviceRegistry* devices, ServerMetrics* metrics, DeviceStreamLimit* limit,
           WatchHubOptions options);
  /// Stop()s, then waits for every stream gRPC still holds to be done.
  ~WatchHub();

  /// The reactor for one Watch call by `device_id` (already authenticated).
  grpc::ServerWriteReactor<v1::WatchEvent>* Open(const std::string& device_id,
                                                 int64_t known_generation);
  /// A Watch call refused before it became a stream.
  static grpc::ServerWriteReactor<v1::WatchEvent>* Refuse(const absl::Status& status);
  /// The device's desired state may have changed ("" = every device's). Only queues work.
  void Notify(absl::string_view device_id);
  /// Ends every open stream (OK: the agent reconnects elsewhere) and refuses new ones.
  void Stop();

 private:
  class Stream;
  /// Queues `stream` for a check unless it is queued already; mu_ held. Urgent checks (a
  /// change named for the stream's device) are taken before the others (fleet-wide changes,
  /// the poll, new streams).
  void EnqueueLocked(Stream* stream, bool urgent);
  void CheckLoop();
  void PollLoop();
  /// Called by a stream's OnDone: it is never queued or listed again.
  void Forget(Stream* stream);

  fleet::DeviceRegistry& devices_;
  ServerMetrics& metrics_;
  DeviceStreamLimit& limit_;
  const WatchHubOptions options_;

  std::mutex mu_;
  std::condition_variable work_;      // a stream was queued, or stopping
  std::condition_variable poll_;      // stopping
  std::condition_variable forgotten_; // a stream is done (the destructor waits for the last)
  bool stopping_ = false;
  std::map<std::string, std::set<Stream*>, std::less<>> by_device_;  // every open stream
  size_t open_ = 0;
  std::deque<Stream*> queue_;   // each holds a reference
  std::deque<Stream*> urgent_;  // each holds a reference
  std::vector<std::thread> threads_;
};

}  // namespace edgeloop::server::grpc_api
