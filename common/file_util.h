#pragma once

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edgeloop {

/// Writes `contents` to `path` so that readers see either the old file or the whole new one:
/// temp file in the same directory, fsync, rename, fsync of the directory.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents,
                                 mode_t mode = 0644);

absl::StatusOr<std::string> ReadFile(const std::string& path);

/// fsync of a directory, so that a rename or create inside it survives a power cut.
absl::Status SyncDirectory(const std::string& dir);

/// mkdir -p.
absl::Status MakeDirectories(const std::string& dir, mode_t mode = 0755);

/// An errno value as a Status with context, e.g. "open /x: No such file or directory".
absl::Status ErrnoStatus(absl::string_view context, int err);

}  // namespace edgeloop
