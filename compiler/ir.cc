#include "compiler/ir.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace edgeloop::compiler {

absl::StatusOr<int64_t> CheckedElementCount(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (const int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape [", absl::StrJoin(shape, ","), "] has a negative dimension"));
    }
    // n <= kMaxTensorElements here, so a d above it alone is too many (when n > 0).
    if (d > 0 && (d > kMaxTensorElements || n > kMaxTensorElements / d)) {
      return absl::InvalidArgumentError(absl::StrCat("shape [", absl::StrJoin(shape, ","),
                                                     "] has more than ", kMaxTensorElements,
                                                     " elements"));
    }
    n *= d;
  }
  return n;
}

int64_t Node::Int(const std::string& key, int64_t fallback) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return fallback;
  if (auto* v = std::get_if<int64_t>(&it->second)) return *v;
  return fallback;
}

float Node::Float(const std::string& key, float fallback) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return fallback;
  if (auto* v = std::get_if<float>(&it->second)) return *v;
  return fallback;
}

std::string Node::String(const std::string& key, const std::string& fallback) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return fallback;
  if (auto* v = std::get_if<std::string>(&it->second)) return *v;
  return fallback;
}

std::vector<int64_t> Node::Ints(const std::string& key) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) return {};
  if (auto* v = std::get_if<std::vector<int64_t>>(&it->second)) return *v;
  return {};
}

std::string Graph::UnusedName(const std::string& base) const {
  auto used = [&](const std::string& name) {
    if (constants.count(name)) return true;
    for (const ValueInfo& v : inputs)
      if (v.name == name) return true;
    for (const Node& n : nodes)
      for (const std::string& out : n.outputs)
        if (out == name) return true;
    return false;
  };
  std::string name = base;
  for (int k = 1; used(name); ++k) name = absl::StrCat(base, "#", k);
  return name;
}

}  // namespace edgeloop::compiler
