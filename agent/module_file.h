#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace edgeloop::agent {

/// A module file held open. It is hashed through this descriptor and dlopen'ed through it
/// (/proc/self/fd/N), so the bytes verified are the bytes loaded, whatever later happens to the
/// path. Kept open while the module is loaded: the loader knows it by that /proc name, which
/// must not come back for another file until the module is unloaded.
class ModuleFile {
 public:
  static absl::StatusOr<ModuleFile> Open(const std::string& path);
  ModuleFile(ModuleFile&& other) noexcept : fd_(other.fd_), path_(std::move(other.path_)) {
    other.fd_ = -1;
  }
  ModuleFile& operator=(ModuleFile&& other) noexcept;
  ~ModuleFile();

  /// "/proc/self/fd/N": the name to give dlopen.
  std::string ProcPath() const;
  /// "sha256:<hex>" of the bytes behind the descriptor, read from the start.
  absl::StatusOr<std::string> Digest() const;
  const std::string& path() const { return path_; }

 private:
  ModuleFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;  // for messages
};

}  // namespace edgeloop::agent
