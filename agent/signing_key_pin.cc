#include "agent/signing_key_pin.h"

#include "common/signing.h"
#include "common/x509.h"

namespace edgeloop::agent {

absl::StatusOr<std::string> AcceptSigningKey(const std::string& pinned, const std::string& ca_pem,
                                             const v1::SigningKeyTrust& offer) {
  if (offer.key_pem().empty()) {
    if (!pinned.empty()) return pinned;
    return absl::PermissionDeniedError("the server sent no module signing key");
  }
  if (offer.key_pem() == pinned) return pinned;
  if (!offer.ca_signature().empty() &&
      crypto::VerifyEndorsement(ca_pem, crypto::SigningKeyStatement(offer.key_pem()),
                                offer.ca_signature())) {
    return offer.key_pem();
  }
  if (!pinned.empty() && offer.previous_key_pem() == pinned &&
      crypto::VerifySignature(pinned,
                              crypto::SigningKeyRotationStatement(pinned, offer.key_pem()),
                              offer.rotation_signature())) {
    return offer.key_pem();
  }
  return absl::PermissionDeniedError(
      "the server offers a module signing key that neither this device's CA endorsed nor the "
      "pinned key handed over to; modules it signed are refused");
}

}  // namespace edgeloop::agent
