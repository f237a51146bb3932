#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/signing.h"
#include "common/x509.h"
#include "edgeloop/v1/device.pb.h"
#include "store/database.h"

namespace edgeloop::server {

/// The key that signs module manifests and why devices may trust it.
struct ModuleSigningKey {
  std::unique_ptr<crypto::SigningKey> signer;
  v1::SigningKeyTrust trust;  // the CA's endorsement, and the last rotation's hand-over
};

/// Loads (or creates) `<data-dir>/signing.key`. With `rotate`, first replaces it by a new key:
/// the old key signs the hand-over (kept in signing.key.rotation, sent to devices so that
/// they follow), every artifact's manifest is signed again with the new key, then the new key
/// takes the old one's place. A rotation interrupted by a crash resumes at the next start
/// (signing.key.next exists), flag or not. docs/operations.md.
absl::StatusOr<ModuleSigningKey> LoadModuleSigningKey(const std::string& data_dir,
                                                      const crypto::CertificateAuthority& ca,
                                                      store::Database& database, bool rotate);

}  // namespace edgeloop::server
