#include "common/x509.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status.h"

namespace edgeloop::crypto {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct ReqFree {
  void operator()(X509_REQ* r) const { X509_REQ_free(r); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Req = std::unique_ptr<X509_REQ, ReqFree>;

absl::Status OpenSslError(absl::string_view what) {
  unsigned long code = ERR_get_error();
  char buf[256] = "unknown error";
  if (code != 0) ERR_error_string_n(code, buf, sizeof buf);
  ERR_clear_error();
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", buf));
}

Bio ReadBio(absl::string_view pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

std::string DrainBio(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::StatusOr<Pkey> NewP256Key() {
  Pkey key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslError("generate P-256 key");
  return key;
}

absl::StatusOr<std::string> KeyPem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("write private key");
  }
  return DrainBio(bio.get());
}

absl::StatusOr<Pkey> ParseKey(absl::string_view pem) {
  Bio bio = ReadBio(pem);
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return OpenSslError("parse private key");
  return key;
}

absl::StatusOr<std::string> CertPem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(bio.get(), cert) != 1) return OpenSslError("write certificate");
  return DrainBio(bio.get());
}

absl::StatusOr<Cert> ParseCert(absl::string_view pem) {
  Bio bio = ReadBio(pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return OpenSslError("parse certificate");
  return cert;
}

absl::StatusOr<std::string> Fingerprint(X509* cert) {
  unsigned char* der = nullptr;
  int n = i2d_X509(cert, &der);
  if (n <= 0) return OpenSslError("encode certificate");
  std::string digest = DigestFromHex(Sha256Hex(absl::string_view(reinterpret_cast<char*>(der), n)));
  OPENSSL_free(der);
  return digest;
}

absl::Status SetName(X509_NAME* name, absl::string_view common_name) {
  std::string cn(common_name);
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1) {
    return OpenSslError("set common name");
  }
  return absl::OkStatus();
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return OpenSslError(absl::StrCat("extension ", value));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return OpenSslError("add extension");
  return absl::OkStatus();
}

// A certificate skeleton: v3, random 128-bit serial, validity window, subject, public key.
absl::StatusOr<Cert> NewCertificate(EVP_PKEY* public_key, absl::string_view common_name,
                                    absl::Time now, absl::Duration validity) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(BN_new(), BN_free);
  BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);
  BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()));
  // Backdate a little so a device whose clock runs slightly behind accepts it at once (but not
  // so much that a short-lived certificate looks two thirds used, which would trigger renewal).
  const absl::Duration skew = std::min(absl::Minutes(5), validity / 10);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(now - skew));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(now + validity));
  RETURN_IF_ERROR(SetName(X509_get_subject_name(cert.get()), common_name));
  if (X509_set_pubkey(cert.get(), public_key) != 1) return OpenSslError("set public key");
  return cert;
}

absl::Status CheckKeyStrength(EVP_PKEY* key) {
  int type = EVP_PKEY_get_base_id(key);
  int bits = EVP_PKEY_get_bits(key);
  if ((type == EVP_PKEY_EC && bits >= 256) || (type == EVP_PKEY_RSA && bits >= 2048) ||
      type == EVP_PKEY_ED25519) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("CSR key is too weak or unsupported (", bits,
                                                 "-bit type ", type,
                                                 "); use ECDSA P-256, Ed25519 or RSA >= 2048"));
}

absl::Time AsnTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTM(tm, absl::UTCTimeZone());
}

}  // namespace

struct CertificateAuthority::Impl {
  Pkey key;
  Cert cert;
};

CertificateAuthority::~CertificateAuthority() = default;

absl::StatusOr<std::string> CsrKeyPin(absl::string_view csr_pem) {
  Bio bio = ReadBio(csr_pem);
  Req req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return OpenSslError("parse CSR");
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  unsigned char* der = nullptr;
  const int length = key ? i2d_PUBKEY(key, &der) : -1;
  if (length <= 0) return OpenSslError("CSR public key");
  std::string pin = DigestFromHex(Sha256Hex(absl::string_view(reinterpret_cast<char*>(der), length)));
  OPENSSL_free(der);
  return pin;
}

absl::StatusOr<std::string> CertificateAuthority::Endorse(absl::string_view statement) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t length = 0;
  std::string signature;
  bool ok = EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, impl_->key.get()) == 1 &&
            EVP_DigestSign(ctx, nullptr, &length,
                           reinterpret_cast<const unsigned char*>(statement.data()),
                           statement.size()) == 1;
  if (ok) {
    signature.resize(length);
    ok = EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &length,
                        reinterpret_cast<const unsigned char*>(statement.data()),
                        statement.size()) == 1;
    signature.resize(length);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) return OpenSslError("endorse");
  return HexEncode(signature);
}

bool VerifyEndorsement(absl::string_view ca_cert_pem, absl::string_view statement,
                       absl::string_view signature_hex) {
  Bio bio = ReadBio(ca_cert_pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return false;
  }
  EVP_PKEY* key = X509_get0_pubkey(cert.get());
  long length = 0;
  unsigned char* signature = OPENSSL_hexstr2buf(std::string(signature_hex).c_str(), &length);
  if (key == nullptr || signature == nullptr || signature_hex.empty()) {
    OPENSSL_free(signature);
    ERR_clear_error();
    return false;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestVerify(ctx, signature, static_cast<size_t>(length),
                       reinterpret_cast<const unsigned char*>(statement.data()),
                       statement.size()) == 1;
  EVP_MD_CTX_free(ctx);
  OPENSSL_free(signature);
  ERR_clear_error();
  return ok;
}

absl::StatusOr<KeyAndCsr> GenerateKeyAndCsr(absl::string_view common_name) {
  ASSIGN_OR_RETURN(Pkey key, NewP256Key());
  KeyAndCsr out;
  ASSIGN_OR_RETURN(out.key_pem, KeyPem(key.get()));
  ASSIGN_OR_RETURN(out.csr_pem, CsrForKey(out.key_pem, common_name));
  return out;
}

absl::StatusOr<std::string> CsrForKey(absl::string_view key_pem, absl::string_view common_name) {
  ASSIGN_OR_RETURN(Pkey key, ParseKey(key_pem));
  Req req(X509_REQ_new());
  RETURN_IF_ERROR(SetName(X509_REQ_get_subject_name(req.get()), common_name));
  if (X509_REQ_set_pubkey(req.get(), key.get()) != 1) return OpenSslError("CSR public key");
  if (X509_REQ_sign(req.get(), key.get(), EVP_sha256()) <= 0) return OpenSslError("sign CSR");
  Bio bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) return OpenSslError("write CSR");
  return DrainBio(bio.get());
}

absl::StatusOr<CertificateInfo> InspectCertificate(absl::string_view cert_pem) {
  ASSIGN_OR_RETURN(Cert cert, ParseCert(cert_pem));
  CertificateInfo info;
  char cn[256] = "";
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn);
  info.common_name = cn;
  BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr);
  char* hex = BN_bn2hex(serial);
  info.serial_hex = hex;
  OPENSSL_free(hex);
  BN_free(serial);
  info.not_before = AsnTime(X509_get0_notBefore(cert.get()));
  info.not_after = AsnTime(X509_get0_notAfter(cert.get()));
  ASSIGN_OR_RETURN(info.fingerprint, Fingerprint(cert.get()));
  return info;
}

absl::StatusOr<std::string> CertificatePin(absl::string_view cert_pem) {
  ASSIGN_OR_RETURN(Cert cert, ParseCert(cert_pem));
  return Fingerprint(cert.get());
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::LoadOrCreate(
    const std::string& dir, absl::Time now) {
  auto ca = std::unique_ptr<CertificateAuthority>(new CertificateAuthority());
  ca->impl_ = std::make_unique<Impl>();
  const std::string key_path = dir + "/ca.key", cert_path = dir + "/ca.pem";
  auto key_pem = ReadFile(key_path);
  auto cert_pem = ReadFile(cert_path);
  if (key_pem.ok() && cert_pem.ok()) {
    ASSIGN_OR_RETURN(ca->impl_->key, ParseKey(*key_pem));
    ASSIGN_OR_RETURN(ca->impl_->cert, ParseCert(*cert_pem));
    if (X509_check_private_key(ca->impl_->cert.get(), ca->impl_->key.get()) != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat(cert_path, " does not belong to ", key_path));
    }
    ca->cert_pem_ = *cert_pem;
  } else if (absl::IsNotFound(key_pem.status()) && absl::IsNotFound(cert_pem.status())) {
    RETURN_IF_ERROR(MakeDirectories(dir, 0700));
    ASSIGN_OR_RETURN(ca->impl_->key, NewP256Key());
    ASSIGN_OR_RETURN(ca->impl_->cert, NewCertificate(ca->impl_->key.get(), "edgeloop device CA",
                                                     now, absl::Hours(24 * 365 * 10)));
    X509* cert = ca->impl_->cert.get();
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    RETURN_IF_ERROR(AddExtension(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    RETURN_IF_ERROR(AddExtension(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign"));
    RETURN_IF_ERROR(AddExtension(cert, cert, NID_subject_key_identifier, "hash"));
    if (X509_sign(cert, ca->impl_->key.get(), EVP_sha256()) <= 0)
      return OpenSslError("self-sign CA");
    ASSIGN_OR_RETURN(std::string key_text, KeyPem(ca->impl_->key.get()));
    ASSIGN_OR_RETURN(ca->cert_pem_, CertPem(cert));
    // Key first: a crash in between leaves a key without a certificate, which the next start
    // reports instead of silently making a second CA.
    RETURN_IF_ERROR(WriteFileAtomically(key_path, key_text, 0600));
    RETURN_IF_ERROR(WriteFileAtomically(cert_path, ca->cert_pem_, 0644));
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat("incomplete CA in ", dir, ": need both ca.key and ca.pem (",
                     key_pem.status().message(), "; ", cert_pem.status().message(), ")"));
  }
  ASSIGN_OR_RETURN(ca->pin_, Fingerprint(ca->impl_->cert.get()));
  return ca;
}

absl::StatusOr<std::string> CertificateAuthority::SignClientCsr(absl::string_view csr_pem,
                                                                absl::string_view common_name,
                                                                absl::Time now,
                                                                absl::Duration validity) const {
  if (csr_pem.size() > 16384) return absl::InvalidArgumentError("CSR is larger than 16 KiB");
  Bio bio = ReadBio(csr_pem);
  Req req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return OpenSslError("parse CSR");
  EVP_PKEY* public_key = X509_REQ_get0_pubkey(req.get());
  if (public_key == nullptr) return absl::InvalidArgumentError("CSR has no public key");
  if (X509_REQ_verify(req.get(), public_key) != 1)
    return OpenSslError("CSR signature does not verify");
  RETURN_IF_ERROR(CheckKeyStrength(public_key));
  ASSIGN_OR_RETURN(Cert cert, NewCertificate(public_key, common_name, now, validity));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(impl_->cert.get()));
  RETURN_IF_ERROR(
      AddExtension(cert.get(), impl_->cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  RETURN_IF_ERROR(
      AddExtension(cert.get(), impl_->cert.get(), NID_key_usage, "critical,digitalSignature"));
  RETURN_IF_ERROR(AddExtension(cert.get(), impl_->cert.get(), NID_ext_key_usage, "clientAuth"));
  RETURN_IF_ERROR(
      AddExtension(cert.get(), impl_->cert.get(), NID_authority_key_identifier, "keyid:always"));
  if (X509_sign(cert.get(), impl_->key.get(), EVP_sha256()) <= 0)
    return OpenSslError("sign certificate");
  return CertPem(cert.get());
}

absl::StatusOr<ServerIdentity> CertificateAuthority::IssueServerIdentity(
    const std::vector<std::string>& hosts, absl::Time now, absl::Duration validity) const {
  if (hosts.empty())
    return absl::InvalidArgumentError("a server certificate needs at least one host name");
  ASSIGN_OR_RETURN(Pkey key, NewP256Key());
  ASSIGN_OR_RETURN(Cert cert, NewCertificate(key.get(), hosts[0], now, validity));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(impl_->cert.get()));
  std::vector<std::string> sans;
  for (const std::string& host : hosts) {
    bool ip = !host.empty() && (host.find(':') != std::string::npos ||
                                host.find_first_not_of("0123456789.") == std::string::npos);
    sans.push_back(absl::StrCat(ip ? "IP:" : "DNS:", host));
  }
  RETURN_IF_ERROR(
      AddExtension(cert.get(), impl_->cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  RETURN_IF_ERROR(AddExtension(cert.get(), impl_->cert.get(), NID_ext_key_usage, "serverAuth"));
  RETURN_IF_ERROR(
      AddExtension(cert.get(), impl_->cert.get(), NID_subject_alt_name, absl::StrJoin(sans, ",")));
  if (X509_sign(cert.get(), impl_->key.get(), EVP_sha256()) <= 0)
    return OpenSslError("sign server certificate");
  ServerIdentity identity;
  ASSIGN_OR_RETURN(identity.key_pem, KeyPem(key.get()));
  ASSIGN_OR_RETURN(identity.cert_pem, CertPem(cert.get()));
  return identity;
}

}  // namespace edgeloop::crypto
