#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/database.h"

namespace edgeloop::store {

struct BlobInfo {
  std::string digest;  // "sha256:<hex>"
  int64_t size = 0;
};

/// Streams one upload into the store. Bytes go to a private staging file as they arrive, so
/// memory stays bounded whatever the size. Nothing is visible under its digest until Commit
/// succeeds; destroying the writer without Commit (or a crash) leaves nothing behind that a
/// reader can see. Not thread-safe.
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;
  /// Appends bytes. Fails with PayloadTooLarge once the total passes the writer's limit,
  /// after which the staged bytes are already gone.
  virtual absl::Status Write(absl::string_view bytes) = 0;
  /// Makes the blob durable and visible. When `expected_digest` is not empty and differs
  /// from the bytes' SHA-256, fails with INVALID_ARGUMENT and stores nothing.
  virtual absl::StatusOr<BlobInfo> Commit(absl::string_view expected_digest) = 0;
  virtual int64_t bytes_written() const = 0;
};

/// Random access to one stored blob. Not thread-safe; open one per reader.
class BlobReader {
 public:
  virtual ~BlobReader() = default;
  virtual int64_t size() const = 0;
  /// Reads up to `max_bytes` at `offset` into `out` (replacing its contents); an empty
  /// result means end of blob.
  virtual absl::Status ReadAt(int64_t offset, size_t max_bytes, std::string* out) = 0;
};

struct BlobStoreOptions {
  /// `file:///abs/dir` (the default store: files under the data dir) or `postgresql`
  /// (chunks in the database, for several replicas without a shared volume).
  std::string url;
  /// Where uploads are staged before they commit (PostgreSQL store). The file store stages
  /// under its own directory so the final rename never crosses file systems.
  std::string staging_dir;
  /// Required for `postgresql`.
  Database* database = nullptr;
};

/// Content-addressed storage: a blob's name is the SHA-256 of its bytes, so storing the same
/// bytes twice keeps one copy and a stored blob never changes. Thread-safe.
class BlobStore {
 public:
  virtual ~BlobStore() = default;
  static absl::StatusOr<std::unique_ptr<BlobStore>> Create(const BlobStoreOptions& options);

  /// Starts an upload that may hold at most `max_bytes`.
  virtual absl::StatusOr<std::unique_ptr<BlobWriter>> NewWriter(int64_t max_bytes) = 0;
  /// NOT_FOUND when no blob has that digest; INVALID_ARGUMENT when it is malformed.
  virtual absl::StatusOr<std::unique_ptr<BlobReader>> Open(absl::string_view digest) = 0;
  virtual absl::StatusOr<BlobInfo> Stat(absl::string_view digest) = 0;
};

/// Reads a whole blob into memory; for small blobs (tests, manifests) only.
absl::StatusOr<std::string> ReadWholeBlob(BlobReader& reader);

}  // namespace edgeloop::store
