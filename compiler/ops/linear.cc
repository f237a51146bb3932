// Matrix products: Gemm and MatMul.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "compiler/ops/c_emit.h"
#include "compiler/ops/families.h"
#include "compiler/ops/kernel_support.h"

namespace edgeloop::compiler::ops {
namespace {

// ---- reference ------------------------------------------------------------------------------

absl::StatusOr<std::vector<Tensor>> Gemm(const KernelContext& c) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  RETURN_IF_ERROR(NeedFloat(c, c.in.size() > 1 ? c.in[1] : nullptr));
  const Tensor& a = *c.in[0];
  const Tensor& b = *c.in[1];
  if (a.shape.size() != 2 || b.shape.size() != 2) return Bad(c, "A and B must be 2-D");
  const bool ta = c.node.Int("transA", 0) != 0, tb = c.node.Int("transB", 0) != 0;
  const float alpha = c.node.Float("alpha", 1.0f), beta = c.node.Float("beta", 1.0f);
  const int64_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const int64_t kb = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  if (k != kb) return Bad(c, "inner dimensions differ");
  ASSIGN_OR_RETURN(Tensor out, FloatTensor(c, Shape({m, n})));
  const Tensor* bias = c.in.size() > 2 ? c.in[2] : nullptr;
  Shape bias_strides;
  if (bias != nullptr) {
    RETURN_IF_ERROR(NeedFloat(c, bias));
    ASSIGN_OR_RETURN(Shape check, BroadcastShape(c, out.shape, bias->shape));
    if (check != out.shape) return Bad(c, "C does not broadcast to the output");
    bias_strides = RowMajorStrides(bias->shape);
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        acc += static_cast<double>(ta ? a.f[p * m + i] : a.f[i * k + p]) *
               (tb ? b.f[j * k + p] : b.f[p * n + j]);
      }
      float v = alpha * static_cast<float>(acc);
      if (bias != nullptr)
        v += beta * bias->f[BroadcastIndex({i, j}, out.shape, bias->shape, bias_strides)];
      out.f[i * n + j] = v;
    }
  }
  return One(std::move(out));
}

absl::StatusOr<std::vector<Tensor>> MatMul(const KernelContext& c) {
  RETURN_IF_ERROR(NeedFloat(c, c.in[0]));
  RETURN_IF_ERROR(NeedFloat(c, c.in.size() > 1 ? c.in[1] : nullptr));
  Shape a_shape = c.in[0]->shape, b_shape = c.in[1]->shape;
  const bool a_vec = a_shape.size() == 1, b_vec = b_shape.size() == 1;
  if (a_vec) a_shape.insert(a_shape.begin(), 1);
  if (b_vec) b_shape.push_back(1);
  const int64_t m = a_shape[a_shape.size() - 2], k = a_shape.back();
  const int64_t kb = b_shape[b_shape.size() - 2], n = b_shape.back();
  if (k != kb) return Bad(c, "inner dimensions differ");
  Shape a_batch(a_shape.begin(), a_shape.end() - 2), b_batch(b_shape.begin(), b_shape.end() - 2);
  ASSIGN_OR_RETURN(Shape batch, BroadcastShape(c, a_batch, b_batch));
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  ASSIGN_OR_RETURN(Tensor out, FloatTensor(c, out_shape));
  const Shape sa = RowMajorStrides(a_batch), sb = RowMajorStrides(b_batch);
  Shape coords(batch.size(), 0);
  for (int64_t bi = 0; bi < ElementCount(batch); ++bi) {
    const float* a = c.in[0]->f.data() + BroadcastIndex(coords, batch, a_batch, sa) * m * k;
    const float* b = c.in[1]->f.data() + BroadcastIndex(coords, batch, b_batch, sb) * k * n;
    float* o = out.f.data() + bi * m * n;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p) acc += static_cast<double>(a[i * k + p]) * b[p * n + j];
        o[i * n + j] = static_cast<float>(acc);
      }
    }
    for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
      if (++coords[d] < batch[d]) break;
      coords[d] = 0;
    }
  }
  if (a_vec) out_shape.erase(out_shape.end() - 2);
  if (b_vec) out_shape.pop_back();
  out.shape = out_shape;
  return One(std::move(out));
}

// ---- C --------------------------------------------------------------------------------------

// Batched MatMul with broadcast batch dimensions: per-batch offsets fixed at compile time.
void EmitBatchedMatMul(CEmitContext& e, const Shape& a, const Shape& bs, int64_t M, int64_t K,
                       int64_t N, const std::string& b_ref) {
  Shape a_batch(a.begin(), a.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  Shape batch(std::max(a_batch.size(), b_batch.size()));
  for (size_t k = 0; k < batch.size(); ++k) {
    const int64_t da =
        k < batch.size() - a_batch.size() ? 1 : a_batch[k - (batch.size() - a_batch.size())];
    const int64_t db =
        k < batch.size() - b_batch.size() ? 1 : b_batch[k - (batch.size() - b_batch.size())];
    batch[k] = std::max(da, db);
  }
  Shape a_off, b_off;
  const Shape sa = RowMajorStrides(a_batch), sb = RowMajorStrides(b_batch);
  Shape coords(batch.size(), 0);
  for (int64_t i = 0; i < ElementCount(batch); ++i) {
    int64_t oa = 0, ob = 0;
    for (size_t k = 0; k < batch.size(); ++k) {
      const int64_t ka =
          static_cast<int64_t>(k) - static_cast<int64_t>(batch.size() - a_batch.size());
      const int64_t kb =
          static_cast<int64_t>(k) - static_cast<int64_t>(batch.size() - b_batch.size());
      if (ka >= 0 && a_batch[ka] != 1) oa += coords[k] * sa[ka];
      if (kb >= 0 && b_batch[kb] != 1) ob += coords[k] * sb[kb];
    }
    a_off.push_back(oa * M * K);
    b_off.push_back(ob * K * N);
    for (int k = static_cast<int>(batch.size()) - 1; k >= 0; --k) {
      if (++coords[k] < batch[k]) break;
      coords[k] = 0;
    }
  }
  const std::string ao = e.Array("A", a_off), bo = e.Array("B", b_off);
  e.Emit(absl::StrCat("  for (i64 i = 0; i < ", a_off.size(), "; ++i) el_gemm(", e.In(0), " + ", ao,
                      "[i], 0, ", b_ref, " + ", bo, "[i], 0, ", e.OutRef(), " + i * ", M * N, ", ",
                      M, ", ", N, ", ", K, ", 1.0f, 0.0f, 0, 0, 0, 0.0f, 0.0f);\n"));
}

absl::Status EmitGemmOrMatMul(CEmitContext& e) {
  const Node& n = e.node();
  const bool gemm = n.op == "Gemm";
  const bool ta = gemm && n.Int("transA", 0) != 0, tb = gemm && n.Int("transB", 0) != 0;
  Shape a = e.InShape(0), bs = e.InShape(1);
  if (gemm && (a.size() != 2 || bs.size() != 2)) return e.Unsupported("A and B must be 2-D");
  if (!gemm) {
    if (a.size() == 1) a.insert(a.begin(), 1);
    if (bs.size() == 1) bs.push_back(1);
  }
  const int64_t M = ta ? a[a.size() - 1] : a[a.size() - 2], K = ta ? a[a.size() - 2] : a.back();
  const int64_t N = tb ? bs[bs.size() - 2] : bs.back();
  // Constant B is packed at compile time into the panels el_gemm_pb streams through.
  const bool b_packed = e.IsConst(n.inputs[1]) && (gemm || bs.size() == 2);
  std::string b_ref;
  if (b_packed) {
    const Tensor& w = e.Value(n.inputs[1]);
    b_ref = e.PackPanels(
        K, N, [&](int64_t p, int64_t j) { return tb ? w.f[j * K + p] : w.f[p * N + j]; });
  } else {
    b_ref = e.In(1);
  }
  const std::string x = e.In(0), y = e.OutRef();
  const int act = static_cast<int>(n.activation.kind);
  const std::string act_args =
      absl::StrCat(act, ", ", FloatLiteral(n.activation.lo), ", ", FloatLiteral(n.activation.hi));
  if (!gemm) {
    // The fusion pass merges activations into Conv and Gemm only.
    if (act != 0) return e.Unsupported("a fused activation");
    if (!b_packed) {
      EmitBatchedMatMul(e, a, bs, M, K, N, b_ref);
      return absl::OkStatus();
    }
    // MatMul by constant 2-D weights: every leading dimension of A is just more rows.
    e.Emit(absl::StrCat("  el_gemm_pb(", x, ", 0, ", b_ref, ", 0, ", y, ", ", e.Out().size() / N,
                        ", ", N, ", ", K, ", 1.0f, 0.0f, 0, 0, 0, 0.0f, 0.0f);\n"));
    return absl::OkStatus();
  }
  std::string c_ref = "0";
  int64_t cs_m = 0, cs_n = 0;
  if (e.HasInput(2)) {
    const Shape& cs = e.InShape(2);
    c_ref = e.In(2);
    const Shape full = cs.size() == 2 ? cs : cs.size() == 1 ? Shape{1, cs[0]} : Shape{1, 1};
    cs_m = full[0] == 1 ? 0 : full[1];
    cs_n = full[1] == 1 ? 0 : 1;
  }
  const std::string alpha = FloatLiteral(n.Float("alpha", 1.0f));
  const std::string beta = FloatLiteral(n.Float("beta", 1.0f));
  if (!b_packed && tb) {
    if (act != 0) return e.Unsupported("fused activation with B transposed at run time");
    e.Emit(absl::StrCat("  el_gemm_bt(", x, ", ", ta, ", ", b_ref, ", ", c_ref, ", ", y, ", ", M,
                        ", ", N, ", ", K, ", ", alpha, ", ", beta, ", ", cs_m, ", ", cs_n, ");\n"));
    return absl::OkStatus();
  }
  e.Emit(absl::StrCat("  el_gemm", b_packed ? "_pb(" : "(", x, ", ", ta, ", ", b_ref, ", ", c_ref,
                      ", ", y, ", ", M, ", ", N, ", ", K, ", ", alpha, ", ", beta, ", ", cs_m, ", ",
                      cs_n, ", ", act_args, ");\n"));
  return absl::OkStatus();
}

}  // namespace

void AddLinear(OperatorTable& table) {
  table["Gemm"] = {.name = "Gemm", .reference = Gemm, .emit_c = EmitGemmOrMatMul};
  table["MatMul"] = {.name = "MatMul", .reference = MatMul, .emit_c = EmitGemmOrMatMul};
}

}  // namespace edgeloop::compiler::ops
