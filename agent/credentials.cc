#include "agent/credentials.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "agent/device_call.h"
#include "agent/hardware_profile.h"
#include "agent/signing_key_pin.h"
#include "agent/trust.h"
#include "common/enrollment_token.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/x509.h"
#include "edgeloop/v1/device.grpc.pb.h"

namespace edgeloop::agent {
namespace {

// A stable hardware serial: DMI (x86 boards), the device tree (ARM boards), else machine-id.
std::string DefaultSerial() {
  for (const char* path :
       {"/sys/class/dmi/id/product_serial", "/proc/device-tree/serial-number", "/etc/machine-id"}) {
    std::ifstream in(path);
    std::string value;
    std::getline(in, value, '\0');
    value = std::string(absl::StripAsciiWhitespace(value));
    if (!value.empty() && value != "None" && value != "Not Specified") return value.substr(0, 128);
  }
  return "";
}

}  // namespace

Credentials::Credentials(Options options, prometheus::Gauge* enrolled,
                         prometheus::Gauge* cert_expiry)
    : options_(std::move(options)), enrolled_gauge_(enrolled), cert_expiry_gauge_(cert_expiry) {
  if (options_.serial.empty()) options_.serial = DefaultSerial();
}

absl::Status Credentials::Load() {
  ASSIGN_OR_RETURN(std::optional<DeviceIdentity> identity, LoadIdentity(options_.state_dir));
  if (identity) Use(std::move(*identity));
  return absl::OkStatus();
}

bool Credentials::LapsedWithoutToken() const {
  std::lock_guard lock(mu_);
  return identity_ && options_.enroll_token.empty() && options_.clock->Now() >= cert_expires_;
}

bool Credentials::enrolled() const {
  std::lock_guard lock(mu_);
  return identity_.has_value();
}

std::string Credentials::device_id() const {
  std::lock_guard lock(mu_);
  return identity_ ? identity_->device_id : "";
}

std::shared_ptr<grpc::Channel> Credentials::channel() const {
  std::lock_guard lock(mu_);
  return channel_;
}

void Credentials::Reconnect() {
  std::optional<DeviceIdentity> identity;
  {
    std::lock_guard lock(mu_);
    identity = identity_;
  }
  if (identity) Use(std::move(*identity));
}

void Credentials::Use(DeviceIdentity identity) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = identity.ca_pem;
  tls.pem_private_key = identity.key_pem;
  tls.pem_cert_chain = identity.cert_pem;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(4 << 20);
  // gRPC backs off reconnecting on its own; keep that within the agent's own cap, or a
  // device would sit out minutes after the server is back.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, options_.max_backoff_seconds * 1000);
  // A server that went silent (a dropped NAT mapping, a dead link) is found by keepalive and
  // the Watch stream restarted, instead of waiting on a connection nobody answers. The server
  // accepts pings this often (--device-keepalive-seconds, at most every 30 s).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 60 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  // A channel of its own, so replacing it after a failure really starts a fresh connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(options_.server, grpc::SslCredentials(tls), args);
  // Read once per certificate: parsing PEM with OpenSSL 3 costs about half a millisecond, and
  // the sync loop asks whether renewal is due every time it wakes.
  absl::StatusOr<crypto::CertificateInfo> info = crypto::InspectCertificate(identity.cert_pem);
  absl::StatusOr<absl::Time> renew_at;
  absl::Time expires = absl::InfiniteFuture();
  if (info.ok()) {
    cert_expiry_gauge_->Set(absl::ToDoubleSeconds(info->not_after - absl::UnixEpoch()));
    renew_at = info->not_before + (info->not_after - info->not_before) * 2 / 3;
    expires = info->not_after;
  } else {
    renew_at = info.status();
  }
  enrolled_gauge_->Set(1);
  std::lock_guard lock(mu_);
  renew_at_ = std::move(renew_at);
  cert_expires_ = expires;
  identity_ = std::move(identity);
  channel_ = std::move(channel);
}

absl::Status Credentials::Enroll() {
  if (options_.enroll_token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this device is not enrolled (no identity in ", options_.state_dir,
        "/identity); start it once with --enroll-token from `edgeloop token create --enroll`"));
  }
  ASSIGN_OR_RETURN(EnrollmentTokenParts token, ParseEnrollmentToken(options_.enroll_token));
  std::string ca_pem;
  if (!options_.ca_file.empty()) {
    ASSIGN_OR_RETURN(ca_pem, ReadFile(options_.ca_file));
  } else {
    ASSIGN_OR_RETURN(ca_pem, FetchPinnedCa(options_.server, token.ca_pin));
  }
  std::optional<DeviceIdentity> current;
  {
    std::lock_guard lock(mu_);
    current = identity_;
  }
  // A device that was enrolled proves itself with the key it enrolled with; a new one uses the
  // pending key, kept on disk so that a retry after a lost answer presents the same key.
  std::string key_pem;
  if (current) {
    key_pem = current->key_pem;
  } else {
    ASSIGN_OR_RETURN(key_pem, PendingKey(options_.state_dir));
  }
  ASSIGN_OR_RETURN(std::string csr_pem, crypto::CsrForKey(key_pem, "pending"));
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ca_pem;
  auto stub =
      v1::DeviceService::NewStub(grpc::CreateChannel(options_.server, grpc::SslCredentials(tls)));
  v1::EnrollRequest request;
  request.set_token(options_.enroll_token);
  request.set_csr_pem(csr_pem);
  *request.mutable_profile() = ReadHardwareProfile({options_.state_dir, options_.labels});
  request.set_serial(options_.serial);
  if (current) request.set_device_id(current->device_id);
  v1::EnrollResponse response;
  RETURN_IF_ERROR(FromGrpc(stub->Enroll(CallContext().get(), request, &response)));
  // The module signing key is pinned now, on the word of the CA the token pinned: nobody who
  // later answers as the server can swap it for a key of their own. Re-enrolling keeps the pin
  // unless the offer proves a rotation, as a sync's would.
  absl::StatusOr<std::string> signing_key = AcceptSigningKey(
      current ? current->module_signing_key : "", ca_pem, response.module_signing_key());
  if (!signing_key.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("enrollment refused: ", signing_key.status().message()));
  }
  DeviceIdentity identity{response.device_id(), key_pem, response.cert_pem(), response.ca_pem(),
                          *signing_key};
  if (current && response.device_id() != current->device_id) {
    return absl::InternalError(absl::StrCat("re-enrollment answered for device \"",
                                            response.device_id(), "\", not \"", current->device_id,
                                            "\""));
  }
  RETURN_IF_ERROR(SaveIdentity(options_.state_dir, identity));
  Log(LogLevel::kInfo, current ? "re-enrolled" : "enrolled",
      {{"device", response.device_id()}, {"server", options_.server}});
  Use(std::move(identity));
  return absl::OkStatus();
}

bool Credentials::NeedsEnrollment() const {
  std::lock_guard lock(mu_);
  if (!identity_) return true;
  return !options_.enroll_token.empty() && options_.clock->Now() >= cert_expires_;
}

absl::Status Credentials::RenewIfDue() {
  DeviceIdentity identity;
  absl::StatusOr<absl::Time> due;
  {
    std::lock_guard lock(mu_);
    identity = *identity_;
    due = renew_at_;
  }
  RETURN_IF_ERROR(due.status());
  if (options_.clock->Now() < *due) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string csr, crypto::CsrForKey(identity.key_pem, identity.device_id));
  v1::RenewRequest request;
  request.set_csr_pem(csr);
  v1::RenewResponse response;
  std::shared_ptr<grpc::Channel> channel;
  {
    std::lock_guard lock(mu_);
    channel = channel_;
  }
  RETURN_IF_ERROR(FromGrpc(
      v1::DeviceService::NewStub(channel)->Renew(CallContext().get(), request, &response)));
  identity.cert_pem = response.cert_pem();
  RETURN_IF_ERROR(SaveIdentity(options_.state_dir, identity));
  Log(LogLevel::kInfo, "certificate renewed", {{"device", identity.device_id}});
  Use(std::move(identity));
  return absl::OkStatus();
}

std::string Credentials::TrustedSigningKey(const v1::SyncResponse& desired) {
  v1::SigningKeyTrust offer = desired.module_signing_key_trust();
  if (offer.key_pem().empty()) offer.set_key_pem(desired.module_signing_key());
  std::lock_guard lock(mu_);
  const std::string pinned = identity_->module_signing_key;
  absl::StatusOr<std::string> accepted = AcceptSigningKey(pinned, identity_->ca_pem, offer);
  if (!accepted.ok()) {
    if (offer.key_pem() != refused_signing_key_) {
      Log(LogLevel::kError, "module signing key refused",
          {{"offered", offer.key_pem()}, {"error", accepted.status().ToString()}});
      refused_signing_key_ = offer.key_pem();
    }
    return pinned;
  }
  if (*accepted != pinned) {
    DeviceIdentity updated = *identity_;
    updated.module_signing_key = *accepted;
    if (absl::Status saved = SaveIdentity(options_.state_dir, updated); !saved.ok()) {
      Log(LogLevel::kWarning, "could not pin the new module signing key",
          {{"error", saved.ToString()}});
      return pinned;
    }
    Log(LogLevel::kInfo,
        pinned.empty() ? "module signing key pinned" : "module signing key rotated",
        {{"key", *accepted}});
    identity_->module_signing_key = *accepted;
  }
  return *accepted;
}

}  // namespace edgeloop::agent
