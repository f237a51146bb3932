#pragma once

#include <utility>

#include "compiler/ir.h"

namespace edgeloop::compiler::ops {

/// BatchNormalization in inference mode as y = x * s + t per channel:
/// s = scale / sqrt(var + epsilon), t = bias - mean * s (computed in double, stored as float).
/// Shared by the C emitter of a standalone BatchNormalization and the folding pass.
std::pair<Tensor, Tensor> BatchNormAffine(const Tensor& scale, const Tensor& bias,
                                          const Tensor& mean, const Tensor& var, float epsilon);

}  // namespace edgeloop::compiler::ops
