#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/identity.h"
#include "common/clock.h"
#include "edgeloop/v1/device.pb.h"
#include "prometheus/gauge.h"

namespace edgeloop::agent {

/// Who the device is to the server and how it reaches it: the identity in the state dir, the
/// mTLS channel made from it, enrollment (a new device, or the same one again once its
/// certificate lapsed), renewal two thirds into the certificate's life, and the pinned module
/// signing key. Thread-safe: the sync and watch threads and the local API all read it.
class Credentials {
 public:
  struct Options {
    std::string server;  // HOST:PORT of the device port
    std::string state_dir;
    std::string enroll_token;  // empty: enrollment is not possible
    std::string ca_file;       // trust this CA instead of the token's pin
    std::string serial;        // empty: DMI / device-tree serial, else machine-id
    std::map<std::string, std::string> labels;
    int max_backoff_seconds = 60;
    const Clock* clock = SystemClock::Get();
  };
  /// `enrolled` and `cert_expiry` are the agent's gauges for them.
  Credentials(Options options, prometheus::Gauge* enrolled, prometheus::Gauge* cert_expiry);

  /// Takes up the identity kept in the state dir, if the device has one.
  absl::Status Load();

  /// True without an identity, or with a lapsed certificate and a token to re-enroll with.
  bool NeedsEnrollment() const;
  /// The certificate lapsed and there is no token: the server will refuse the device.
  bool LapsedWithoutToken() const;
  bool enrolled() const;
  std::string device_id() const;  // empty before enrollment

  /// Enrolls with the token: FAILED_PRECONDITION without one; PERMISSION_DENIED, INVALID_ARGUMENT
  /// or UNAUTHENTICATED for what retrying cannot fix.
  absl::Status Enroll();
  /// Renews the certificate once two thirds of its life have passed.
  absl::Status RenewIfDue();

  /// The mTLS channel to the server (shared; replaced by Reconnect).
  std::shared_ptr<grpc::Channel> channel() const;
  /// A new channel, so the next call starts a fresh connection instead of waiting out gRPC's
  /// own reconnect schedule.
  void Reconnect();

  /// The module signing key to check `desired` against: the pinned one, or the server's offer
  /// when it proves itself (then pinned in its place).
  std::string TrustedSigningKey(const v1::SyncResponse& desired);

 private:
  void Use(DeviceIdentity identity);

  Options options_;
  prometheus::Gauge* enrolled_gauge_;
  prometheus::Gauge* cert_expiry_gauge_;
  mutable std::mutex mu_;
  std::optional<DeviceIdentity> identity_;            // guarded by mu_
  absl::StatusOr<absl::Time> renew_at_;               // guarded by mu_
  absl::Time cert_expires_ = absl::InfiniteFuture();  // guarded by mu_
  std::shared_ptr<grpc::Channel> channel_;            // guarded by mu_
  std::string refused_signing_key_;                   // logged once; guarded by mu_
};

}  // namespace edgeloop::agent
