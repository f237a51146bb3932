#include "agent/identity.h"

#include "absl/strings/ascii.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/x509.h"

namespace edgeloop::agent {
namespace {
std::string Dir(const std::string& state_dir) { return state_dir + "/identity"; }
}  // namespace

absl::StatusOr<std::optional<DeviceIdentity>> LoadIdentity(const std::string& state_dir) {
  auto id = ReadFile(Dir(state_dir) + "/device_id");
  if (absl::IsNotFound(id.status())) return std::optional<DeviceIdentity>();
  RETURN_IF_ERROR(id.status());
  DeviceIdentity identity;
  identity.device_id = std::string(absl::StripAsciiWhitespace(*id));
  ASSIGN_OR_RETURN(identity.key_pem, ReadFile(Dir(state_dir) + "/key.pem"));
  ASSIGN_OR_RETURN(identity.cert_pem, ReadFile(Dir(state_dir) + "/cert.pem"));
  ASSIGN_OR_RETURN(identity.ca_pem, ReadFile(Dir(state_dir) + "/ca.pem"));
  auto pinned = ReadFile(Dir(state_dir) + "/module-signing.pub");
  if (!pinned.ok() && !absl::IsNotFound(pinned.status())) return pinned.status();
  identity.module_signing_key = pinned.value_or("");
  return std::optional<DeviceIdentity>(std::move(identity));
}

absl::Status SaveIdentity(const std::string& state_dir, const DeviceIdentity& identity) {
  const std::string dir = Dir(state_dir);
  RETURN_IF_ERROR(MakeDirectories(dir, 0700));
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/key.pem", identity.key_pem, 0600));
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/cert.pem", identity.cert_pem, 0644));
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/ca.pem", identity.ca_pem, 0644));
  if (!identity.module_signing_key.empty()) {
    RETURN_IF_ERROR(
        WriteFileAtomically(dir + "/module-signing.pub", identity.module_signing_key, 0644));
  }
  return WriteFileAtomically(dir + "/device_id", identity.device_id + "\n", 0644);
}

absl::StatusOr<std::string> PendingKey(const std::string& state_dir) {
  const std::string path = Dir(state_dir) + "/key.pem";
  auto existing = ReadFile(path);
  if (existing.ok()) return existing;
  if (!absl::IsNotFound(existing.status())) return existing.status();
  RETURN_IF_ERROR(MakeDirectories(Dir(state_dir), 0700));
  ASSIGN_OR_RETURN(crypto::KeyAndCsr fresh, crypto::GenerateKeyAndCsr("pending"));
  RETURN_IF_ERROR(WriteFileAtomically(path, fresh.key_pem, 0600));
  return fresh.key_pem;
}

}  // namespace edgeloop::agent
