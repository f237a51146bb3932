#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/signing.h"
#include "edgeloop/v1/telemetry.pb.h"
#include "store/database.h"

namespace edgeloop::telemetry {

struct MonitoringOptions {
  store::Database* database = nullptr;         // not owned
  const Clock* clock = nullptr;                // not owned
  const crypto::SigningKey* signer = nullptr;  // not owned: the module signing key
  absl::Duration window = absl::Seconds(60);   // how often a device closes a window
  int sample_values = 32;  // raw values per feature and window while a version has no reference
};

/// A serialized MonitoringSpec and its signature, as a ModuleRef carries them.
struct SignedSpec {
  std::string bytes;
  std::string signature;
};

/// Makes the monitoring spec of each version from its monitored features and reference
/// (through the registry's interface), and signs it with the module signing key. A version's
/// features never change and its reference is set once, so a spec with a reference is final
/// and kept; one without is kept for kProvisionalFor, so that syncs cost no registry reads
/// while a reference arriving (on any replica) reaches devices within that time. Thread-safe.
class MonitoringSpecs {
 public:
  static constexpr absl::Duration kProvisionalFor = absl::Seconds(10);
  explicit MonitoringSpecs(const MonitoringOptions& options) : options_(options) {}

  /// The spec of `model` (id `model_id`) at `version`; nullopt when the version monitors
  /// nothing (no float inputs).
  absl::StatusOr<std::optional<SignedSpec>> For(int64_t model_id, const std::string& model,
                                                int64_t version);

  /// Drops what is cached for the version, so that the next For() reads it anew (its
  /// reference was just taken).
  void Forget(int64_t model_id, int64_t version);

  /// The spec as the device reads it, without the signature (for tests and the API).
  absl::StatusOr<std::optional<v1::MonitoringSpec>> Spec(int64_t model_id, const std::string& model,
                                                         int64_t version);

 private:
  MonitoringOptions options_;
  std::mutex mu_;
  struct Cached {
    std::optional<SignedSpec> spec;
    absl::Time until;  // InfiniteFuture for a final spec
  };
  std::map<std::pair<int64_t, int64_t>, Cached> cache_;  // by (model id, version)
};

}  // namespace edgeloop::telemetry
