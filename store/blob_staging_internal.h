#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/sha256.h"

namespace edgeloop::store {

/// A directory for in-flight uploads owned by this process. It lives at
/// `<root>/<random id>/` and holds a lock (flock) for the process's lifetime. On creation
/// every sibling directory whose lock is free — left by a process that crashed or was
/// killed — is removed, while those of live processes sharing the volume are kept.
class StagingArea {
 public:
  static absl::StatusOr<std::unique_ptr<StagingArea>> Create(const std::string& root);
  ~StagingArea();
  const std::string& dir() const { return dir_; }

 private:
  StagingArea(std::string dir, int lock_fd) : dir_(std::move(dir)), lock_fd_(lock_fd) {}
  std::string dir_;
  int lock_fd_;
};

/// One staging file: appends bytes while hashing them and enforcing a size limit. The file
/// is unlinked on destruction unless it was moved away (`Release`).
class StagingFile {
 public:
  static absl::StatusOr<std::unique_ptr<StagingFile>> Create(const StagingArea& area,
                                                             int64_t max_bytes);
  ~StagingFile();

  absl::Status Write(absl::string_view bytes);
  /// fsyncs the file and returns "sha256:<hex>" of everything written. Call once.
  absl::StatusOr<std::string> Finish();
  /// Checks `expected` (may be empty) against the digest Finish returned.
  static absl::Status CheckExpected(absl::string_view expected, const std::string& actual);

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }
  /// The caller renamed the file; do not unlink it.
  void Release() { released_ = true; }

 private:
  StagingFile(std::string path, int fd, int64_t max_bytes)
      : path_(std::move(path)), fd_(fd), max_bytes_(max_bytes) {}
  void Discard();

  std::string path_;
  int fd_;
  int64_t max_bytes_;
  int64_t size_ = 0;
  Sha256 hash_;
  bool released_ = false;
};

}  // namespace edgeloop::store
