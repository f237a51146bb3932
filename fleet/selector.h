#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edgeloop::fleet {

/// What a selector is matched against: each key's values. Labels have one value; `hw.accel`
/// has one per accelerator kind (and is absent when there is none).
using Attributes = std::map<std::string, std::vector<std::string>>;

/// A device selector: Kubernetes label-selector syntax plus numeric comparisons, terms joined
/// by commas (all must hold):
///   site=plant-3   tier!=test   env in (prod,canary)   env notin (dev)   gpu   !gpu
///   hw.arch=aarch64   hw.ram_mb>=512   hw.cores<4
/// `!=`, `notin` and `!key` hold for devices without the key. The empty selector matches all.
class Selector {
 public:
  /// INVALID_ARGUMENT naming the position and problem for malformed text.
  static absl::StatusOr<Selector> Parse(absl::string_view text);

  bool Matches(const Attributes& attributes) const;
  const std::string& text() const { return text_; }

 private:
  enum class Op { kEq, kNe, kIn, kNotIn, kExists, kNotExists, kGt, kGe, kLt, kLe };
  struct Term {
    std::string key;
    Op op;
    std::vector<std::string> values;
    double number = 0;
  };
  bool Holds(const Term& term, const Attributes& attributes) const;

  std::string text_;
  std::vector<Term> terms_;
};

}  // namespace edgeloop::fleet
