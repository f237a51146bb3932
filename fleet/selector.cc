#include "fleet/selector.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace edgeloop::fleet {
namespace {

constexpr size_t kMaxSelectorLength = 4096;
constexpr size_t kMaxTerms = 64;

bool IsKeyChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
         c == '/';
}

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid selector \"", text.substr(0, 200), "\": ", why));
}

// Splits on commas outside parentheses.
absl::StatusOr<std::vector<std::string>> SplitTerms(absl::string_view text) {
  std::vector<std::string> terms;
  std::string current;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth < 0 || depth > 1) return Invalid(text, "unbalanced parentheses");
    if (c == ',' && depth == 0) {
      terms.push_back(current);
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (depth != 0) return Invalid(text, "unbalanced parentheses");
  terms.push_back(current);
  return terms;
}

}  // namespace

absl::StatusOr<Selector> Selector::Parse(absl::string_view text) {
  Selector selector;
  selector.text_ = std::string(absl::StripAsciiWhitespace(text));
  if (selector.text_.size() > kMaxSelectorLength)
    return Invalid(text, "longer than 4096 characters");
  if (selector.text_.empty()) return selector;
  auto parts = SplitTerms(selector.text_);
  if (!parts.ok()) return parts.status();
  if (parts->size() > kMaxTerms) return Invalid(text, "more than 64 terms");
  for (const std::string& raw : *parts) {
    absl::string_view t = absl::StripAsciiWhitespace(raw);
    if (t.empty()) return Invalid(text, "empty term");
    Term term;
    if (absl::ConsumePrefix(&t, "!")) {
      t = absl::StripAsciiWhitespace(t);
      term.key = std::string(t);
      term.op = Op::kNotExists;
    } else {
      size_t k = 0;
      while (k < t.size() && IsKeyChar(t[k])) ++k;
      term.key = std::string(t.substr(0, k));
      absl::string_view rest = absl::StripAsciiWhitespace(t.substr(k));
      if (rest.empty()) {
        term.op = Op::kExists;
      } else if (absl::ConsumePrefix(&rest, "notin") || absl::ConsumePrefix(&rest, "in")) {
        term.op = absl::StartsWith(absl::StripAsciiWhitespace(t.substr(k)), "notin") ? Op::kNotIn
                                                                                     : Op::kIn;
        rest = absl::StripAsciiWhitespace(rest);
        if (!absl::ConsumePrefix(&rest, "(") || !absl::ConsumeSuffix(&rest, ")")) {
          return Invalid(text, absl::StrCat("\"", term.key, " in\" needs a list in parentheses"));
        }
        for (absl::string_view v : absl::StrSplit(rest, ',')) {
          v = absl::StripAsciiWhitespace(v);
          if (v.empty()) return Invalid(text, "empty value in a list");
          term.values.emplace_back(v);
        }
      } else {
        static const std::pair<const char*, Op> kOps[] = {
            {"==", Op::kEq}, {"!=", Op::kNe}, {">=", Op::kGe}, {"<=", Op::kLe},
            {"=", Op::kEq},  {">", Op::kGt},  {"<", Op::kLt}};
        bool found = false;
        for (const auto& [symbol, op] : kOps) {
          if (absl::ConsumePrefix(&rest, symbol)) {
            term.op = op;
            found = true;
            break;
          }
        }
        if (!found)
          return Invalid(text, absl::StrCat("unexpected \"", rest, "\" after \"", term.key, "\""));
        std::string value(absl::StripAsciiWhitespace(rest));
        if (term.op == Op::kGt || term.op == Op::kGe || term.op == Op::kLt || term.op == Op::kLe) {
          if (!absl::SimpleAtod(value, &term.number)) {
            return Invalid(text, absl::StrCat("\"", term.key, "\" is compared with \"", value,
                                              "\", not a number"));
          }
        } else {
          for (char c : value) {
            if (!IsKeyChar(c))
              return Invalid(text, absl::StrCat("bad character in value \"", value, "\""));
          }
        }
        term.values.push_back(value);
      }
    }
    if (term.key.empty() || !std::all_of(term.key.begin(), term.key.end(), IsKeyChar)) {
      return Invalid(text, absl::StrCat("bad key in \"", t, "\""));
    }
    selector.terms_.push_back(std::move(term));
  }
  return selector;
}

bool Selector::Holds(const Term& term, const Attributes& attributes) const {
  auto it = attributes.find(term.key);
  const bool present = it != attributes.end() && !it->second.empty();
  auto any = [&](auto predicate) {
    return present && std::any_of(it->second.begin(), it->second.end(), predicate);
  };
  auto listed = [&](const std::string& v) {
    return std::find(term.values.begin(), term.values.end(), v) != term.values.end();
  };
  auto numeric = [&](auto compare) {
    return any([&](const std::string& v) {
      double x = 0;
      return absl::SimpleAtod(v, &x) && compare(x, term.number);
    });
  };
  switch (term.op) {
    case Op::kExists:
      return present;
    case Op::kNotExists:
      return !present;
    case Op::kEq:
      return any([&](const std::string& v) { return v == term.values[0]; });
    case Op::kNe:
      return !any([&](const std::string& v) { return v == term.values[0]; });
    case Op::kIn:
      return any(listed);
    case Op::kNotIn:
      return !any(listed);
    case Op::kGt:
      return numeric([](double a, double b) { return a > b; });
    case Op::kGe:
      return numeric([](double a, double b) { return a >= b; });
    case Op::kLt:
      return numeric([](double a, double b) { return a < b; });
    case Op::kLe:
      return numeric([](double a, double b) { return a <= b; });
  }
  return false;
}

bool Selector::Matches(const Attributes& attributes) const {
  return std::all_of(terms_.begin(), terms_.end(),
                     [&](const Term& t) { return Holds(t, attributes); });
}

}  // namespace edgeloop::fleet
