#include "compiler/c_literal.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace edgeloop::compiler {
namespace {

bool PassesThrough(unsigned char c) {
  // Printable ASCII except '"' and '\\' (they end the literal or start an escape) and '?'
  // (`??/` is a trigraph for a backslash in ISO C modes).
  return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '?';
}

}  // namespace

std::string CStringLiteral(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 2);
  out.push_back('"');
  for (const char ch : bytes) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (PassesThrough(c)) {
      out.push_back(ch);
    } else {
      out.push_back('\\');
      out.push_back(static_cast<char>('0' + ((c >> 6) & 7)));
      out.push_back(static_cast<char>('0' + ((c >> 3) & 7)));
      out.push_back(static_cast<char>('0' + (c & 7)));
    }
  }
  out.push_back('"');
  return out;
}

std::string FloatLiteral(float v) {
  if (std::isnan(v)) return "NAN";
  if (std::isinf(v)) return v > 0 ? "INFINITY" : "-INFINITY";
  return absl::StrFormat("%af", v);
}

std::string IntArray(const std::vector<int64_t>& values) {
  return absl::StrCat("{", absl::StrJoin(values, ", "), "}");
}

}  // namespace edgeloop::compiler
