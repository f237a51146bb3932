#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"
#include "common/x509.h"
#include "edgeloop/v1/device.pb.h"
#include "fleet/assignments.h"
#include "fleet/enrollment_tokens.h"
#include "fleet/selector.h"
#include "fleet/sync_pacer.h"
#include "store/database.h"
#include "store/group_commit.h"

namespace edgeloop::fleet {

struct DeviceRegistryOptions {
  store::Database* database = nullptr;               // not owned
  const crypto::CertificateAuthority* ca = nullptr;  // not owned
  EnrollmentTokens* tokens = nullptr;                // not owned
  SyncPacer* pacer = nullptr;                        // not owned
  Assignments* assignments = nullptr;                // not owned; what devices should run
  const Clock* clock = SystemClock::Get();
  absl::Duration cert_validity = absl::Hours(24 * 30);
  /// A device not seen for this long is listed as offline.
  absl::Duration offline_after = absl::Seconds(90);
  /// The key that signs module manifests and why devices may trust it (the CA's endorsement,
  /// a rotation from the previous key): given at enrollment, told on every sync.
  v1::SigningKeyTrust module_signing_key;
};

/// What other components need to know of an active device to file what it reports.
struct DeviceFacts {
  std::string target;  // its target class
  std::map<std::string, std::string> labels;
};

/// What a rollout reads of a device a selector matches.
struct FleetMember {
  std::string id;
  std::string target;
  Attributes attributes;
  int64_t last_seen_ms = 0;
  v1::DeviceState state;  // as it reported on its last sync
};

/// Members() results kept between calls, for a reader of the whole fleet every few hundred
/// milliseconds (the rollout controller): a row whose labels, hardware fields and reported
/// state are the text they were at the last read is not parsed again. Thread-safe.
class MemberCache {
 private:
  friend class DeviceRegistry;
  struct Entry {
    std::string text;  // labels, hardware fields and state, as read
    FleetMember member;
  };
  std::mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_;  // by device id
};

/// Device counts for metrics.
struct FleetCount {
  std::string status;  // "ACTIVE", "DECOMMISSIONED"
  std::string target;
  bool online = false;
  int64_t devices = 0;
};

/// The fleet's devices: enrollment (token + CSR → identity), the state each device reports on
/// sync, and the inventory operators query and edit. Transport-neutral; the device-facing
/// methods take the device id that the caller's client certificate proved. Thread-safe.
class DeviceRegistry {
 public:
  explicit DeviceRegistry(const DeviceRegistryOptions& options)
      : options_(options), sync_writes_(options.database) {}

  /// Spends one use of the token, records the device with the token's labels over its own,
  /// and signs its CSR with CN = the new device id, all in one transaction. The token's secret
  /// is checked before the transaction starts. Two answers spend no new device:
  ///  - a retry (same token, CSR key and serial, token still live) returns the device the lost
  ///    answer created, with a fresh certificate, and spends no use;
  ///  - a re-enrollment (request.device_id, CSR for the key that device enrolled with) spends a
  ///    use of the new token and gives the same device a new certificate.
  absl::StatusOr<v1::EnrollResponse> Enroll(const v1::EnrollRequest& request);
  /// Stores what the device reports and answers what it should run and when to sync next.
  absl::StatusOr<v1::SyncResponse> Sync(absl::string_view device_id,
                                        const v1::SyncRequest& request);
  /// A new certificate for the device's key (sent as a CSR), for renewal before expiry.
  absl::StatusOr<v1::RenewResponse> Renew(absl::string_view device_id,
                                          const v1::RenewRequest& request);
  /// OK for an enrolled, active device; NOT_FOUND or PERMISSION_DENIED (decommissioned).
  absl::Status CheckActive(absl::string_view device_id);
  /// The device's desired-state generation (changes whenever what it should run may change).
  absl::StatusOr<int64_t> Generation(absl::string_view device_id);
  /// Every active device's generation (as Generation() gives it), in one read: what the
  /// watch streams' poll compares against, for a fleet of any size.
  absl::StatusOr<absl::flat_hash_map<std::string, int64_t>> Generations();
  /// What the device should run now (desired_generation, desired_modules and
  /// module_signing_key of a SyncResponse), without recording anything: pushed to watchers.
  absl::StatusOr<v1::SyncResponse> DesiredState(absl::string_view device_id);
  /// Called with a device's id when its desired state may have changed through this process,
  /// and with "" when every device's may have (a fleet-wide change, shutdown). Set once, before
  /// serving. It runs on the thread that made the change, inside no lock: it must only queue
  /// work. Changes made through other replicas are not seen here; watchers poll for those.
  void SetChangeListener(std::function<void(absl::string_view device_id)> listener);
  /// Tells the listener that every device's desired state may have changed.
  void WakeAllWatchers();
  /// Tells the listener that these devices' desired state may have changed.
  void WakeWatchers(const std::vector<std::string>& device_ids);

  absl::StatusOr<v1::ListDevicesResponse> List(const v1::ListDevicesRequest& request);
  absl::StatusOr<v1::Device> Get(absl::string_view device_id);
  absl::StatusOr<v1::Device> Update(const v1::UpdateDeviceRequest& request);
  /// Marks the device decommissioned: every later device call with its certificate fails.
  absl::StatusOr<v1::Device> Decommission(absl::string_view device_id);
  absl::StatusOr<std::vector<FleetCount>> Counts();
  /// The target class and labels of an active device, in one read; NOT_FOUND or
  /// PERMISSION_DENIED (decommissioned) as CheckActive.
  static absl::StatusOr<DeviceFacts> Facts(store::Reader& db, absl::string_view device_id);
  /// The active devices `selector` matches, in id order. The table is read in batches, so
  /// memory holds the matches, not the fleet. With a cache, rows unchanged since its last
  /// read are not parsed again (it keeps every active device, matched or not).
  static absl::StatusOr<std::vector<FleetMember>> Members(store::Reader& db,
                                                          const Selector& selector,
                                                          MemberCache* cache = nullptr);
  /// Moves these devices' desired-state generation on, in the caller's transaction: for a
  /// change that decides what some devices run (a rollout releasing them) without touching
  /// the rest of the fleet's generation, so only their watchers look again.
  static absl::Status TouchDevices(store::Transaction& tx, const std::vector<std::string>& ids);
  /// Target classes of the active devices, with how many devices each has (the CI stage builds
  /// every version for these).
  static absl::StatusOr<std::map<std::string, int64_t>> ActiveClasses(store::Reader& db);

 private:
  absl::StatusOr<v1::Device> DeviceFromRow(const store::Row& row) const;
  /// Enroll's decision inside its transaction: the id of the device the CSR is for.
  absl::StatusOr<std::string> EnrollDevice(store::Transaction& tx, const v1::EnrollRequest& request,
                                           const v1::EnrollmentToken& checked,
                                           const std::string& key, absl::Time now);
  /// The fleet-wide part of the generation (0 without assignments).
  absl::StatusOr<int64_t> FleetGeneration();
  /// Fills `out`'s desired state for the device of this row (kColumns).
  absl::Status FillDesired(const store::Row& row, v1::SyncResponse* out);
  void Notify(absl::string_view device_id);

  DeviceRegistryOptions options_;
  // Each sync writes what the device reports and when it was seen; a fleet's syncs share
  // commits (one fsync for all that arrive together) rather than queue one commit each.
  store::GroupCommit sync_writes_;
  std::function<void(absl::string_view)> on_change_;  // set before serving, then read only
};

}  // namespace edgeloop::fleet
