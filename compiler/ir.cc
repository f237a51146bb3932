#include "compiler/ir.h"

namespace edgeloop::compiler {

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

}  // namespace edgeloop::compiler
