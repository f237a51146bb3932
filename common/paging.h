#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace edgeloop {

/// Every list the server answers is paged: no request makes it read or send an unbounded
/// number of rows.
inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;

/// The page size to use for what a caller asked (0 or less: the default).
inline int PageSize(int32_t requested) {
  return requested <= 0 ? kDefaultPageSize : std::min<int>(requested, kMaxPageSize);
}

/// One page from rows read with LIMIT page + 1 (the extra row only says there is more): `add`
/// takes each of the first `page` rows; the answer is the next page token, `token_of` the
/// page's last row, or "" on the last page.
template <typename Rows, typename Add, typename TokenOf>
absl::StatusOr<std::string> TakePage(const Rows& rows, int page, Add add, TokenOf token_of) {
  const size_t n = static_cast<size_t>(page);
  for (size_t i = 0; i < rows.size() && i < n; ++i) {
    absl::Status added = add(rows[i]);
    if (!added.ok()) return added;
  }
  if (rows.size() <= n) return std::string();
  return std::string(token_of(rows[n - 1]));
}

/// A page token that is the last row's integer key ("" before the first page: `first`).
inline absl::StatusOr<int64_t> IntPageToken(absl::string_view token, int64_t first) {
  if (token.empty()) return first;
  int64_t key = 0;
  if (!absl::SimpleAtoi(token, &key)) return absl::InvalidArgumentError("malformed page token");
  return key;
}

/// A page token keyed by creation time and id, for lists in the order things were made.
struct TimeIdKey {
  int64_t time_ms = -1;
  std::string id;
};
inline std::string TimeIdPageToken(int64_t time_ms, absl::string_view id) {
  return absl::StrCat(time_ms, "/", id);
}
inline absl::StatusOr<TimeIdKey> ParseTimeIdPageToken(absl::string_view token) {
  if (token.empty()) return TimeIdKey{};
  const size_t slash = token.find('/');
  TimeIdKey key;
  if (slash == absl::string_view::npos || !absl::SimpleAtoi(token.substr(0, slash), &key.time_ms))
    return absl::InvalidArgumentError("malformed page token");
  key.id = std::string(token.substr(slash + 1));
  return key;
}

}  // namespace edgeloop
