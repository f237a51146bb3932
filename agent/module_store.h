#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::agent {

/// Modules on the device's disk, by digest: `<dir>/<hex>.so` (complete and verified bytes only)
/// with `<hex>.json` (the ModuleRef: model, version, manifest, signature). A download grows
/// `<hex>.partial`, so a broken connection or a restart resumes from the bytes already there;
/// the file becomes `<hex>.so` by rename only after its size and SHA-256 check out.
class ModuleStore {
 public:
  explicit ModuleStore(std::string dir) : dir_(std::move(dir)) {}

  /// Receives the bytes of a module from `offset` on, in order; returns what the sink
  /// returned when the sink refused a chunk, or the transport's error.
  using ChunkSink = std::function<absl::Status(int64_t offset, absl::string_view data)>;
  using Fetcher = std::function<absl::Status(const std::string& digest, int64_t offset,
                                             const ChunkSink& sink)>;

  struct Limits {
    int64_t max_kbps = 0;  // 0: no cap
    int attempts = 5;      // fetch calls before giving up (each resumes)
    absl::Duration first_backoff = absl::Milliseconds(200);
    int64_t reserve_bytes = 16 << 20;  // free space to leave on the disk
  };

  const std::string& dir() const { return dir_; }
  std::string SoPath(absl::string_view digest) const;
  bool Have(absl::string_view digest) const;

  /// Makes `<hex>.so` present: resumes or starts the download, with bounded retries and
  /// back-off, under the bandwidth cap. RESOURCE_EXHAUSTED before starting when the disk
  /// cannot hold the module (plus the reserve); DATA_LOSS when the bytes do not hash to the
  /// digest (the partial file is discarded, so the next attempt starts over).
  absl::Status Download(const v1::ModuleRef& ref, const Fetcher& fetch, const Limits& limits);

  /// Keeps the ref (manifest and signature) next to the module, for restarts.
  absl::Status SaveRef(const v1::ModuleRef& ref);
  absl::StatusOr<v1::ModuleRef> LoadRef(absl::string_view digest) const;

  /// Deletes the oldest modules beyond `max_bytes`, never one in `keep` (active, previous).
  absl::Status Prune(int64_t max_bytes, const std::set<std::string>& keep);

 private:
  std::string dir_;
};

/// The manifest is signed by `signing_key_pem` and names the ref's digest, size and target:
/// PERMISSION_DENIED otherwise. Checked before a byte of the module is fetched.
absl::Status VerifyManifest(const v1::ModuleRef& ref, const std::string& signing_key_pem);

/// The file's bytes hash to the ref's digest: DATA_LOSS otherwise.
absl::Status VerifyModuleFile(const v1::ModuleRef& ref, const std::string& so_path);

/// Checks a module before anything loads it: both of the above.
absl::Status VerifyModule(const v1::ModuleRef& ref, const std::string& so_path,
                          const std::string& signing_key_pem);

}  // namespace edgeloop::agent
