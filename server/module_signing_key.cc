#include "server/module_signing_key.h"

#include <cstdio>
#include <filesystem>

#include "common/file_util.h"
#include "common/logging.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "registry/registry.h"

namespace edgeloop::server {

absl::StatusOr<ModuleSigningKey> LoadModuleSigningKey(const std::string& data_dir,
                                                      const crypto::CertificateAuthority& ca,
                                                      store::Database& database, bool rotate) {
  const std::string path = data_dir + "/signing.key";
  const std::string next_path = path + ".next";
  const std::string rotation_path = path + ".rotation";
  std::error_code ec;
  if (rotate || std::filesystem::exists(next_path, ec)) {
    ASSIGN_OR_RETURN(auto previous, crypto::SigningKey::LoadOrCreate(path));
    ASSIGN_OR_RETURN(auto next, crypto::SigningKey::LoadOrCreate(next_path));
    v1::SigningKeyTrust handover;
    handover.set_key_pem(next->public_key_pem());
    handover.set_previous_key_pem(previous->public_key_pem());
    ASSIGN_OR_RETURN(*handover.mutable_rotation_signature(),
                     previous->Sign(crypto::SigningKeyRotationStatement(
                         previous->public_key_pem(), next->public_key_pem())));
    RETURN_IF_ERROR(WriteFileAtomically(rotation_path, PrintProtoJson(handover) + "\n", 0644));
    RETURN_IF_ERROR(registry::Registry::ResignArtifacts(database, *next));
    // The new key takes the old one's place last: until then a restart resumes from here.
    if (std::rename(next_path.c_str(), path.c_str()) != 0)
      return ErrnoStatus("rename signing.key.next", errno);
    std::filesystem::remove(next_path + ".pub", ec);
    RETURN_IF_ERROR(SyncDirectory(data_dir));
    Log(LogLevel::kWarning, "module signing key rotated",
        {{"previous", previous->public_key_pem()}, {"key", next->public_key_pem()}});
  }
  ModuleSigningKey key;
  ASSIGN_OR_RETURN(key.signer, crypto::SigningKey::LoadOrCreate(path));
  if (auto json = ReadFile(rotation_path); json.ok()) {
    RETURN_IF_ERROR(ParseProtoJson(*json, &key.trust));
    // A hand-over to another key than this one (the file outlived a restore) proves nothing.
    if (key.trust.key_pem() != key.signer->public_key_pem()) key.trust.Clear();
  }
  key.trust.set_key_pem(key.signer->public_key_pem());
  ASSIGN_OR_RETURN(*key.trust.mutable_ca_signature(),
                   ca.Endorse(crypto::SigningKeyStatement(key.signer->public_key_pem())));
  return key;
}

}  // namespace edgeloop::server
