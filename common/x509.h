#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace edgeloop::crypto {

/// A new ECDSA P-256 private key (PKCS#8 PEM) and a certificate signing request for it.
struct KeyAndCsr {
  std::string key_pem;
  std::string csr_pem;
};
absl::StatusOr<KeyAndCsr> GenerateKeyAndCsr(absl::string_view common_name);

/// A CSR for an existing private key (certificate renewal keeps the device's key).
absl::StatusOr<std::string> CsrForKey(absl::string_view key_pem, absl::string_view common_name);

/// What callers need to know about a certificate.
struct CertificateInfo {
  std::string common_name;
  std::string serial_hex;
  absl::Time not_before;
  absl::Time not_after;
  std::string fingerprint;  // "sha256:<hex>" of the DER encoding
};
absl::StatusOr<CertificateInfo> InspectCertificate(absl::string_view cert_pem);

/// The SHA-256 pin of a certificate, "sha256:<hex of DER>": what enrollment tokens carry so an
/// agent can trust the server's CA without trusting on first use.
absl::StatusOr<std::string> CertificatePin(absl::string_view cert_pem);

/// "sha256:<hex>" of the public key (SubjectPublicKeyInfo DER) a CSR asks a certificate for:
/// what tells a retried enrollment from a new device.
absl::StatusOr<std::string> CsrKeyPin(absl::string_view csr_pem);

/// A key and certificate for a TLS server.
struct ServerIdentity {
  std::string key_pem;
  std::string cert_pem;
};

/// The server's certificate authority: an ECDSA P-256 key and a self-signed certificate,
/// created on first use under a directory (`ca.key` mode 0600, `ca.pem`) or loaded from there.
/// It signs device certificates from their CSRs and the device listener's TLS certificate.
/// Thread-safe after creation.
/// True when `signature_hex` is the CA certificate's key's signature of `statement`
/// (CertificateAuthority::Endorse).
bool VerifyEndorsement(absl::string_view ca_cert_pem, absl::string_view statement,
                       absl::string_view signature_hex);

class CertificateAuthority {
 public:
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> LoadOrCreate(const std::string& dir,
                                                                            absl::Time now);
  ~CertificateAuthority();

  const std::string& cert_pem() const { return cert_pem_; }
  const std::string& pin() const { return pin_; }

  /// Issues a client certificate for the CSR's key with subject CN=`common_name` (whatever
  /// the CSR asked for), valid from `now` for `validity`. INVALID_ARGUMENT when the CSR does
  /// not parse, its signature does not verify, or its key is weaker than P-256 / RSA-2048.
  absl::StatusOr<std::string> SignClientCsr(absl::string_view csr_pem, absl::string_view common_name,
                                            absl::Time now, absl::Duration validity) const;

  /// Hex ECDSA-SHA256 signature of `statement` by the CA's key: the CA vouching for something
  /// devices cannot check otherwise (the module signing key; docs/security.md).
  absl::StatusOr<std::string> Endorse(absl::string_view statement) const;

  /// A fresh key and server certificate for `hosts` (DNS names or IP addresses as SANs).
  absl::StatusOr<ServerIdentity> IssueServerIdentity(const std::vector<std::string>& hosts, absl::Time now,
                                                     absl::Duration validity) const;

 private:
  CertificateAuthority() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string cert_pem_;
  std::string pin_;
};

}  // namespace edgeloop::crypto
