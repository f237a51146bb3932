#pragma once

// Each operator family's file (compiler/ops/<family>.cc) registers its operators, which it
// lists at its top; compiler/ops/registry.cc calls these.
#include <map>
#include <string_view>

#include "compiler/ops/operator.h"

namespace edgeloop::compiler::ops {

using OperatorTable = std::map<std::string_view, OperatorDef>;

void AddElementwise(OperatorTable& table);
void AddLinear(OperatorTable& table);
void AddConvolution(OperatorTable& table);
void AddNormalization(OperatorTable& table);
void AddShape(OperatorTable& table);

}  // namespace edgeloop::compiler::ops
