#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace edgeloop::compiler {

/// `bytes` as a C string literal, quotes included, that a C99 compiler reads back as exactly
/// those bytes. The one way text taken from a model (its input and output names) enters
/// generated C: only letters, digits, space and punctuation that cannot end the literal, start
/// an escape or form a trigraph pass through; every other byte (quotes, backslashes, `?`,
/// control characters, non-ASCII) becomes a three-digit octal escape, which can never run
/// into the character after it as a hexadecimal escape would.
std::string CStringLiteral(absl::string_view bytes);

/// A float as a C literal: hexadecimal (exact, and the same text every time), NAN, INFINITY.
std::string FloatLiteral(float v);

/// `{a, b, ...}`.
std::string IntArray(const std::vector<int64_t>& values);

}  // namespace edgeloop::compiler
