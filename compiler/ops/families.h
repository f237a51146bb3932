#pragma once

// Each operator family's file registers its operators; compiler/ops/registry.cc calls these.
#include <map>
#include <string_view>

#include "compiler/ops/operator.h"

namespace edgeloop::compiler::ops {

using OperatorTable = std::map<std::string_view, OperatorDef>;

void AddElementwise(OperatorTable& table);    // Add ... Div, Relu, LeakyRelu, Sigmoid, Tanh, Clip
void AddLinear(OperatorTable& table);         // Gemm, MatMul
void AddConvolution(OperatorTable& table);    // Conv, MaxPool, AveragePool, GlobalAveragePool
void AddNormalization(OperatorTable& table);  // BatchNormalization, Softmax, LogSoftmax, ReduceMean
void AddShape(OperatorTable& table);  // Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat,
                                      // Pad, Identity, Dropout, Constant

}  // namespace edgeloop::compiler::ops
