#pragma once

#include "absl/strings/string_view.h"

namespace edgeloop {

/// Whether `text` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
/// above U+10FFFF). Text a peer sends that ends up in proto3 strings or JSON must pass.
bool IsValidUtf8(absl::string_view text);

}  // namespace edgeloop
