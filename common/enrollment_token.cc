#include "common/enrollment_token.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/sha256.h"

namespace edgeloop {
namespace {

bool IsHex(absl::string_view s, size_t length) {
  if (s.size() != length) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string FormatEnrollmentToken(const EnrollmentTokenParts& parts) {
  return absl::StrCat(parts.id, ".", parts.secret, ".", parts.ca_pin.substr(kDigestPrefix.size()));
}

absl::StatusOr<EnrollmentTokenParts> ParseEnrollmentToken(absl::string_view token) {
  std::vector<absl::string_view> fields = absl::StrSplit(token, '.');
  if (fields.size() != 3 || !IsHex(fields[0], 16) || !IsHex(fields[1], 64) ||
      !IsHex(fields[2], 64)) {
    return absl::InvalidArgumentError(
        "malformed enrollment token: expected <16 hex>.<64 hex>.<64 hex> as printed by "
        "`edgeloop token create --enroll`");
  }
  return EnrollmentTokenParts{std::string(fields[0]), std::string(fields[1]),
                              DigestFromHex(fields[2])};
}

}  // namespace edgeloop
