#include "common/names.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace edgeloop {
namespace {

bool IsAlnum(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }

absl::Status ValidateName(absl::string_view what, absl::string_view name, bool allow_upper,
                          absl::string_view extra) {
  bool ok = !name.empty() && name.size() <= 63 && IsAlnum(name.front()) && IsAlnum(name.back());
  for (char c : name) {
    if (!ok) break;
    bool lower_ok = absl::ascii_isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'z');
    bool upper_ok = allow_upper && c >= 'A' && c <= 'Z';
    ok = lower_ok || upper_ok || extra.find(c) != absl::string_view::npos;
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("invalid ", what, " \"", name.substr(0, 80),
                                                 "\": use 1-63 characters of ",
                                                 allow_upper ? "[A-Za-z0-9" : "[a-z0-9", extra,
                                                 "], starting and ending with a letter or digit"));
}

}  // namespace

absl::Status ValidateModelName(absl::string_view name) {
  return ValidateName("model name", name, false, "._-");
}

absl::Status ValidateAliasName(absl::string_view alias) {
  absl::Status s = ValidateName("alias", alias, false, "._-");
  if (!s.ok()) return s;
  bool all_digits = true;
  for (char c : alias)
    all_digits = all_digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
  if (all_digits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid alias \"", alias, "\": an alias cannot be a number (numbers are versions)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("too many labels: ", labels.size(), " (at most 64)"));
  }
  for (const auto& [key, value] : labels) {
    absl::Status s = ValidateName("label key", key, true, "._/-");
    if (!s.ok()) return s;
    if (value.size() > 256) {
      return absl::InvalidArgumentError(
          absl::StrCat("label \"", key, "\" value is longer than 256 characters"));
    }
    for (char c : value) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return absl::InvalidArgumentError(
            absl::StrCat("label \"", key, "\" value has control characters"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace edgeloop
