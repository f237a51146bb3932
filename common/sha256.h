#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace edgeloop {

/// Incremental SHA-256 (OpenSSL EVP). Not thread-safe; one per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view bytes);
  /// Finishes the hash and returns 64 lower-case hex characters. Call once.
  std::string HexDigest();

 private:
  EVP_MD_CTX* ctx_;
};

/// SHA-256 of `bytes` as lower-case hex.
std::string Sha256Hex(absl::string_view bytes);

/// Content digests are written "sha256:<64 hex>" everywhere in the product.
inline constexpr absl::string_view kDigestPrefix = "sha256:";
std::string DigestFromHex(absl::string_view hex);
/// True when `digest` is "sha256:" followed by exactly 64 lower-case hex characters.
bool IsValidDigest(absl::string_view digest);
/// OK for a valid digest, else INVALID_ARGUMENT naming `field` and the expected form.
absl::Status CheckDigest(absl::string_view field, absl::string_view digest);

std::string HexEncode(absl::string_view bytes);

}  // namespace edgeloop
