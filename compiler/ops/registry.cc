#include <cstdio>
#include <cstdlib>

#include "compiler/ops/families.h"
#include "compiler/ops/operator.h"

namespace edgeloop::compiler {
namespace {

const ops::OperatorTable& Table() {
  static const ops::OperatorTable* table = [] {
    auto* t = new ops::OperatorTable;
    for (auto add : {ops::AddElementwise, ops::AddLinear, ops::AddConvolution,
                     ops::AddNormalization, ops::AddShape}) {
      ops::OperatorTable family;
      add(family);
      for (auto& [name, def] : family) {
        if (!t->emplace(name, def).second || def.reference == nullptr) {
          // A programming error in a family file, caught by every test that imports a model.
          std::fprintf(stderr, "operator %.*s registered twice or without a reference kernel\n",
                       static_cast<int>(name.size()), name.data());
          std::abort();
        }
      }
    }
    return t;
  }();
  return *table;
}

}  // namespace

const OperatorDef* FindOperator(std::string_view op_type) {
  const auto it = Table().find(op_type);
  return it == Table().end() ? nullptr : &it->second;
}

std::vector<std::string_view> OperatorNames() {
  std::vector<std::string_view> names;
  for (const auto& [name, def] : Table()) names.push_back(name);
  return names;
}

}  // namespace edgeloop::compiler
