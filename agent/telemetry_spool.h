#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop::agent {

/// Closed windows waiting for the server, one file each in `<dir>` (written atomically, so a
/// kill -9 leaves whole windows or none), kept until the server acknowledges them: they
/// survive restarts and outages. Past `cap_bytes` the oldest are deleted to make room and
/// counted as dropped; the count (kept in `<dir>/dropped`) is reported until the server
/// acknowledges it. A file that does not parse (a disk fault) is deleted and counted as
/// dropped too. Thread-safe.
class TelemetrySpool {
 public:
  /// Opens (creating) the spool and reads what an earlier run left.
  static absl::StatusOr<std::unique_ptr<TelemetrySpool>> Open(const std::string& dir,
                                                              int64_t cap_bytes);

  /// Keeps a closed window; one with the id of a window kept (the agent restarted inside it)
  /// is merged into it. A window larger than the cap is dropped (and counted).
  absl::Status Append(const v1::TelemetryWindow& window);

  /// The oldest windows, up to `max_windows` and about `max_bytes`, to send in one report.
  std::vector<v1::TelemetryWindow> Batch(int max_windows, int64_t max_bytes) const;
  /// The server stored these windows (by id): deletes them; and it was told `dropped`
  /// drops, which no longer need reporting.
  absl::Status Acknowledge(const std::vector<std::string>& ids, int64_t dropped);

  /// Deletes windows that can never be sent, counting them as dropped.
  absl::Status Discard(const std::vector<std::string>& ids);

  int64_t dropped() const;  // not yet acknowledged
  int64_t bytes() const;
  size_t windows() const;

 private:
  TelemetrySpool(std::string dir, int64_t cap) : dir_(std::move(dir)), cap_(cap) {}
  struct File {
    std::string path;
    std::string window_id;
    int64_t bytes = 0;
  };
  absl::Status SaveDropped();  // with mu_ held
  void DropOldest();           // with mu_ held
  /// Deletes the files of windows in `ids`; how many. With mu_ held.
  int64_t Remove(const std::vector<std::string>& ids);

  const std::string dir_;
  const int64_t cap_;
  mutable std::mutex mu_;
  std::map<uint64_t, File> files_;  // by sequence: oldest first
  uint64_t next_ = 1;
  int64_t bytes_ = 0;
  int64_t dropped_ = 0;
};

}  // namespace edgeloop::agent
