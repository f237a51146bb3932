#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "edgeloop/v1/registry.pb.h"
#include "store/database.h"

namespace edgeloop::ci {

/// One build of a model version for one target class.
struct CompileJob {
  int64_t id = 0;
  int64_t model_id = 0;
  int64_t version = 0;
  std::string target;
  std::string state;  // QUEUED, RUNNING, DONE, FAILED
  int64_t attempts = 0;
  std::string lease_owner;
  int64_t lease_expires_ms = 0;
  std::string error;
  std::string reason;  // why this class is built
};

/// The CI stage's durable job queue (`compile_jobs`) and its place in the registry's event log
/// (`event_consumers`). The only code that names these tables; every write takes the caller's
/// transaction.
class CompileJobs {
 public:
  /// Queues building `version` for `target` (nothing when that job exists already).
  static absl::Status Queue(store::Transaction& tx, int64_t model_id, int64_t version,
                            const std::string& target, int64_t now_ms, const std::string& reason);
  static absl::StatusOr<bool> Exists(store::Reader& db, int64_t model_id, int64_t version,
                                     const std::string& target);

  /// Takes the oldest job that is queued or whose lease ran out, for `worker` until
  /// now + lease. On PostgreSQL concurrent claimers skip each other's rows.
  static absl::StatusOr<std::optional<CompileJob>> Claim(store::Transaction& tx,
                                                         store::Dialect dialect,
                                                         const std::string& worker,
                                                         int64_t now_ms, int64_t lease_ms);
  /// Marks the job DONE if `worker` still holds it; false when its lease was lost to another.
  static absl::StatusOr<bool> Complete(store::Transaction& tx, int64_t id,
                                       const std::string& worker, int64_t now_ms);
  /// Ends `worker`'s attempt at a job that failed: FAILED for good when `final`, else QUEUED
  /// again for another attempt.
  static absl::Status Release(store::Transaction& tx, int64_t id, const std::string& worker,
                              bool final, const std::string& error, int64_t now_ms);
  /// Jobs of the version that are not DONE.
  static absl::StatusOr<int64_t> Unfinished(store::Reader& db, int64_t model_id, int64_t version);
  static absl::StatusOr<CompileJob> Get(store::Reader& db, int64_t id);
  /// A version's jobs as the API shows them (beside its artifacts), by target.
  static absl::StatusOr<std::vector<v1::CompileJob>> ForVersion(store::Reader& db,
                                                                int64_t model_id, int64_t version);
  static absl::StatusOr<std::vector<CompileJob>> Running(store::Reader& db);
  /// Puts a RUNNING job that `owner` held back in the queue; false when it no longer held it.
  static absl::StatusOr<bool> Requeue(store::Transaction& tx, int64_t id, const std::string& owner);

  /// The last registry event `consumer` handled (0 at first). Locks the consumer's row, which
  /// serialises consumers of one name on several replicas until `tx` ends.
  static absl::StatusOr<int64_t> LockEventOffset(store::Transaction& tx,
                                                 const std::string& consumer);
  static absl::Status SetEventOffset(store::Transaction& tx, const std::string& consumer,
                                     int64_t sequence);
};

}  // namespace edgeloop::ci
