#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/module_file.h"
#include "common/clock.h"
#include "edgeloop/v1/device.pb.h"

namespace edgeloop::agent {

/// Modules on the device's disk, by digest: `<dir>/<hex>.so` (complete and verified bytes only)
/// with `<hex>.json` (the ModuleRef: model, version, manifest, signature). A download grows
/// `<hex>.partial`, so a broken connection or a restart resumes from the bytes already there;
/// the file becomes `<hex>.so` by rename only after its size and SHA-256 check out.
/// Used by the agent's background thread only (not thread-safe).
class ModuleStore {
 public:
  /// `clock` paces the bandwidth cap and the back-off between attempts.
  explicit ModuleStore(std::string dir, const Clock* clock = SystemClock::Get())
      : dir_(std::move(dir)), clock_(clock) {}

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

  /// Deletes a cached module whose bytes went bad on disk, so the next Download fetches it
  /// again.
  void Discard(const v1::ModuleRef& ref);

  /// Keeps the ref (manifest and signature) next to the module, for restarts.
  absl::Status SaveRef(const v1::ModuleRef& ref);
  absl::StatusOr<v1::ModuleRef> LoadRef(absl::string_view digest) const;

  /// Deletes the oldest modules beyond `max_bytes`, never one in `keep` (active, previous).
  absl::Status Prune(int64_t max_bytes, const std::set<std::string>& keep);

 private:
  std::string dir_;
  const Clock* clock_;
  // What this process knows is on disk, so that swapping between cached modules costs no
  // file-system work beyond the swap (it runs on the device's CPU while calls are served):
  // each ref as saved (serialized), and the modules' total size (-1: not counted yet).
  std::map<std::string, std::string> saved_refs_;
  int64_t module_bytes_ = -1;
};

/// What the agent reads from a module's signed manifest.
struct ManifestFacts {
  std::string so_digest;
  int64_t so_size = -1;
  std::string target;
  int64_t workspace_bytes = 0;
};
/// Parses a manifest's JSON, once per manifest text (remembered for a few dozen): protobuf's
/// JSON parser is ~0.1 ms of CPU a manifest, spent on the device's core while calls are
/// served, and the same manifest is read for its check and its memory needs, and again
/// whenever the device swaps back to a module it had. INVALID_ARGUMENT for malformed JSON.
absl::StatusOr<ManifestFacts> ParseManifest(const std::string& manifest);

/// The manifest is signed by `signing_key_pem` and names the ref's digest, size and target:
/// PERMISSION_DENIED otherwise. Checked before a byte of the module is fetched.
absl::Status VerifyManifest(const v1::ModuleRef& ref, const std::string& signing_key_pem);

/// Opens the module file and checks, through the open descriptor, that its bytes hash to the
/// ref's digest (DATA_LOSS otherwise): load what this returns, never the path again.
absl::StatusOr<ModuleFile> OpenVerifiedModule(const v1::ModuleRef& ref, const std::string& so_path);

/// Checks a module before anything loads it: its manifest, then its bytes (both of the above).
absl::StatusOr<ModuleFile> VerifyModule(const v1::ModuleRef& ref, const std::string& so_path,
                                        const std::string& signing_key_pem);

}  // namespace edgeloop::agent
