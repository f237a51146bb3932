#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edgeloop::crypto {

/// The server's Ed25519 signing key for module manifests: created on first use at `path`
/// (PKCS#8 PEM, mode 0600) with its public half beside it (`path` + ".pub"), or loaded.
/// Thread-safe after creation.
class SigningKey {
 public:
  static absl::StatusOr<std::unique_ptr<SigningKey>> LoadOrCreate(const std::string& path);
  ~SigningKey();

  /// Hex of the 64-byte Ed25519 signature of `message`.
  absl::StatusOr<std::string> Sign(absl::string_view message) const;
  const std::string& public_key_pem() const { return public_pem_; }

 private:
  SigningKey() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string public_pem_;
};

/// What the CA signs to vouch for a module signing key (CertificateAuthority::Endorse).
std::string SigningKeyStatement(absl::string_view public_key_pem);
/// What a module signing key signs to hand over to its successor.
std::string SigningKeyRotationStatement(absl::string_view previous_pem, absl::string_view next_pem);

/// What a module signing key signs to vouch for a serialized MonitoringSpec.
std::string MonitoringSpecStatement(absl::string_view spec_bytes);

/// True when `signature_hex` is a valid Ed25519 signature of `message` by `public_key_pem`.
bool VerifySignature(absl::string_view public_key_pem, absl::string_view message, absl::string_view signature_hex);

}  // namespace edgeloop::crypto
