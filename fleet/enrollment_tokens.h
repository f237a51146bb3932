#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"
#include "edgeloop/v1/device.pb.h"
#include "store/database.h"

namespace edgeloop::fleet {

/// Enrollment tokens: an operator creates one (labels for the devices, how many may use it,
/// for how long); a device owner passes it to the agent, which spends one use to enroll.
/// Only a SHA-256 of the secret is stored. Thread-safe.
class EnrollmentTokens {
 public:
  EnrollmentTokens(store::Database* db, const Clock* clock, std::string ca_pin)
      : db_(db), clock_(clock), ca_pin_(std::move(ca_pin)) {}

  absl::StatusOr<v1::CreateEnrollmentTokenResponse> Create(
      const v1::CreateEnrollmentTokenRequest& request, absl::string_view actor);
  /// In the order they were made, a page at a time.
  absl::StatusOr<v1::ListEnrollmentTokensResponse> List(
      const v1::ListEnrollmentTokensRequest& request);
  absl::StatusOr<v1::EnrollmentToken> Revoke(absl::string_view id);

  /// The token, when its secret is right (UNAUTHENTICATED otherwise): read only, outside any
  /// transaction, so a wrong secret never waits for or holds the write lock. Says nothing about
  /// uses, expiry or revocation (Spend checks those).
  absl::StatusOr<v1::EnrollmentToken> Check(absl::string_view token);

  /// Spends one use of `token` inside `tx` (the transaction that creates the device, so a
  /// failed enrollment spends nothing). UNAUTHENTICATED for a malformed, unknown or wrong
  /// token; PERMISSION_DENIED, with the reason, for an expired, revoked or used-up one.
  absl::StatusOr<v1::EnrollmentToken> Spend(store::Transaction& tx, absl::string_view token);

 private:
  store::Database* db_;
  const Clock* clock_;
  std::string ca_pin_;
};

}  // namespace edgeloop::fleet
