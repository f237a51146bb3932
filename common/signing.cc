#include "common/signing.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status.h"

namespace edgeloop::crypto {
namespace {

std::string BioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::Status OpenSslError(absl::string_view what) {
  char buf[256] = "unknown error";
  if (unsigned long code = ERR_get_error(); code != 0) ERR_error_string_n(code, buf, sizeof buf);
  ERR_clear_error();
  return absl::InternalError(absl::StrCat(what, ": ", buf));
}

// The key of the last PEM parsed. Parsing goes through OpenSSL 3's decoder framework, about
// 1 ms of CPU, ten times the Ed25519 check itself; a device checks every module with the
// same server key, and does it while its applications are being served. (Read-only use of
// an EVP_PKEY from several threads is safe.)
std::shared_ptr<EVP_PKEY> ParsedPublicKey(absl::string_view pem) {
  static std::mutex mu;
  static std::string* cached_pem = new std::string;
  static std::shared_ptr<EVP_PKEY>* cached = new std::shared_ptr<EVP_PKEY>;
  {
    std::lock_guard lock(mu);
    if (*cached && *cached_pem == pem) return *cached;
  }
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* raw = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (raw == nullptr) return nullptr;
  std::shared_ptr<EVP_PKEY> key(raw, EVP_PKEY_free);
  std::lock_guard lock(mu);
  *cached_pem = std::string(pem);
  *cached = key;
  return key;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

struct SigningKey::Impl {
  EVP_PKEY* key = nullptr;
  ~Impl() { EVP_PKEY_free(key); }
};

SigningKey::~SigningKey() = default;

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::LoadOrCreate(const std::string& path) {
  auto key = std::unique_ptr<SigningKey>(new SigningKey());
  key->impl_ = std::make_unique<Impl>();
  auto existing = ReadFile(path);
  if (existing.ok()) {
    BIO* bio = BIO_new_mem_buf(existing->data(), static_cast<int>(existing->size()));
    key->impl_->key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (key->impl_->key == nullptr || EVP_PKEY_get_base_id(key->impl_->key) != EVP_PKEY_ED25519) {
      return absl::FailedPreconditionError(absl::StrCat(path, " is not an Ed25519 private key"));
    }
  } else if (absl::IsNotFound(existing.status())) {
    key->impl_->key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (key->impl_->key == nullptr) return OpenSslError("generate Ed25519 key");
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key->impl_->key, nullptr, nullptr, 0, nullptr, nullptr);
    std::string pem = BioText(bio);
    BIO_free(bio);
    RETURN_IF_ERROR(WriteFileAtomically(path, pem, 0600));
  } else {
    return existing.status();
  }
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key->impl_->key);
  key->public_pem_ = BioText(bio);
  BIO_free(bio);
  RETURN_IF_ERROR(WriteFileAtomically(path + ".pub", key->public_pem_, 0644));
  return key;
}

absl::StatusOr<std::string> SigningKey::Sign(absl::string_view message) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char signature[64];
  size_t length = sizeof signature;
  const bool ok = EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, impl_->key) == 1 &&
                  EVP_DigestSign(ctx, signature, &length, reinterpret_cast<const unsigned char*>(message.data()),
                                 message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return OpenSslError("sign");
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(signature), length));
}

// Each statement names its purpose first, so a signature of one is never a signature of the other
// (or of a module manifest, which is JSON).
std::string SigningKeyStatement(absl::string_view public_key_pem) {
  return absl::StrCat("edgeloop module signing key v1\n", public_key_pem);
}

std::string SigningKeyRotationStatement(absl::string_view previous_pem, absl::string_view next_pem) {
  return absl::StrCat("edgeloop module signing key rotation v1\nfrom\n", previous_pem, "to\n",
                      next_pem);
}

std::string MonitoringSpecStatement(absl::string_view spec_bytes) {
  return absl::StrCat("edgeloop monitoring spec v1\n", spec_bytes);
}

bool VerifySignature(absl::string_view public_key_pem, absl::string_view message, absl::string_view signature_hex) {
  if (signature_hex.size() != 128) return false;
  std::vector<unsigned char> signature(64);
  for (size_t i = 0; i < 64; ++i) {
    const int hi = HexValue(signature_hex[2 * i]), lo = HexValue(signature_hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    signature[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  std::shared_ptr<EVP_PKEY> key = ParsedPublicKey(public_key_pem);
  if (key == nullptr) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key.get()) == 1 &&
                  EVP_DigestVerify(ctx, signature.data(), signature.size(),
                                   reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

}  // namespace edgeloop::crypto
