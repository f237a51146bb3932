#include "common/sha256.h"

#include <openssl/evp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace edgeloop {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  // Allocation failure of a 200-byte context is not recoverable in any useful way.
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) std::abort();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Update(absl::string_view bytes) { EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()); }

std::string Sha256::HexDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, md, &len);
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(md), len));
}

std::string Sha256Hex(absl::string_view bytes) {
  Sha256 h;
  h.Update(bytes);
  return h.HexDigest();
}

absl::Status CheckDigest(absl::string_view field, absl::string_view digest) {
  if (IsValidDigest(digest)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, " \"", digest.substr(0, 80),
                                                 "\" is not a digest of the form sha256:<64 hex>"));
}

std::string HexEncode(absl::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kHex[c >> 4];
    out[2 * i + 1] = kHex[c & 15];
  }
  return out;
}

std::string DigestFromHex(absl::string_view hex) {
  return std::string(kDigestPrefix) + std::string(hex);
}

bool IsValidDigest(absl::string_view digest) {
  if (!absl::StartsWith(digest, kDigestPrefix)) return false;
  absl::string_view hex = digest.substr(kDigestPrefix.size());
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace edgeloop
