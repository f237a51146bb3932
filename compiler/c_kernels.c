/* Kernels of edgeloop's C backend. Embedded at the top of every generated module: plain C99,
 * no heap, nothing from libc beyond math.h. Shapes are known at compile time and passed in as
 * constants, so the C compiler sees fixed trip counts and vectorises the inner loops. */
#include <math.h>
#include <stdint.h>

typedef int64_t i64;

static void el_copy(const float* x, float* y, i64 n) {
  for (i64 i = 0; i < n; ++i) y[i] = x[i];
}

/* Element-wise binary operations: on equal shapes, with a scalar, or broadcast with strides
 * (0 on broadcast dimensions) over an output of rank <= 8. */
#define EL_BINARY(NAME, EXPR)                                                                     \
  static void NAME##_same(const float* a, const float* b, float* y, i64 n) {                     \
    for (i64 i = 0; i < n; ++i) {                                                                 \
      const float x = a[i], z = b[i];                                                             \
      y[i] = (EXPR);                                                                              \
    }                                                                                             \
  }                                                                                               \
  static void NAME##_scalar(const float* a, float z, float* y, i64 n) {                          \
    for (i64 i = 0; i < n; ++i) {                                                                 \
      const float x = a[i];                                                                       \
      y[i] = (EXPR);                                                                              \
    }                                                                                             \
  }                                                                                               \
  static void NAME##_bcast(const float* a, const float* b, float* y, int rank, const i64* shape,  \
                           const i64* sa, const i64* sb) {                                        \
    i64 n = 1, c[8] = {0}, ia = 0, ib = 0;                                                        \
    for (int k = 0; k < rank; ++k) n *= shape[k];                                                 \
    for (i64 i = 0; i < n; ++i) {                                                                 \
      const float x = a[ia], z = b[ib];                                                           \
      y[i] = (EXPR);                                                                              \
      for (int k = rank - 1; k >= 0; --k) {                                                       \
        ia += sa[k];                                                                              \
        ib += sb[k];                                                                              \
        if (++c[k] < shape[k]) break;                                                             \
        ia -= sa[k] * shape[k];                                                                   \
        ib -= sb[k] * shape[k];                                                                   \
        c[k] = 0;                                                                                 \
      }                                                                                           \
    }                                                                                             \
  }
EL_BINARY(el_add, x + z)
EL_BINARY(el_sub, x - z)
EL_BINARY(el_mul, x * z)
EL_BINARY(el_div, x / z)

static void el_relu(const float* x, float* y, i64 n) {
  for (i64 i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
static void el_leaky_relu(const float* x, float* y, i64 n, float alpha) {
  for (i64 i = 0; i < n; ++i) y[i] = x[i] >= 0.0f ? x[i] : alpha * x[i];
}
static void el_clip(const float* x, float* y, i64 n, float lo, float hi) {
  for (i64 i = 0; i < n; ++i) {
    const float v = x[i] < lo ? lo : x[i];
    y[i] = v > hi ? hi : v;
  }
}
static void el_sigmoid(const float* x, float* y, i64 n) {
  for (i64 i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + expf(-x[i]));
}
static void el_tanh(const float* x, float* y, i64 n) {
  for (i64 i = 0; i < n; ++i) y[i] = tanhf(x[i]);
}

/* Y[M,N] = alpha * A(MxK) * B(KxN) + beta * C, with C broadcast through strides (cs_m, cs_n).
 * B is row-major KxN (the compiler pre-transposes constant weights), so the inner loop runs
 * over contiguous memory in both B and Y. act: 0 none, 1 relu, 2 clip [lo, hi]. */
static void el_gemm(const float* A, int trans_a, const float* B, const float* C, float* Y, i64 M, i64 N, i64 K,
                    float alpha, float beta, i64 cs_m, i64 cs_n, int act, float lo, float hi) {
  for (i64 i = 0; i < M; ++i) {
    float* y = Y + i * N;
    for (i64 j = 0; j < N; ++j) y[j] = 0.0f;
    for (i64 p = 0; p < K; ++p) {
      const float a = trans_a ? A[p * M + i] : A[i * K + p];
      const float* b = B + p * N;
      for (i64 j = 0; j < N; ++j) y[j] += a * b[j];
    }
    for (i64 j = 0; j < N; ++j) {
      float v = alpha * y[j];
      if (C) v += beta * C[i * cs_m + j * cs_n];
      if (act == 1) v = v > 0.0f ? v : 0.0f;
      if (act == 2) v = v < lo ? lo : (v > hi ? hi : v);
      y[j] = v;
    }
  }
}

/* Y = A(MxK) * B^T where B is NxK (a non-constant right operand given transposed). */
static void el_gemm_bt(const float* A, int trans_a, const float* B, const float* C, float* Y, i64 M, i64 N,
                       i64 K, float alpha, float beta, i64 cs_m, i64 cs_n) {
  for (i64 i = 0; i < M; ++i) {
    for (i64 j = 0; j < N; ++j) {
      float acc = 0.0f;
      for (i64 p = 0; p < K; ++p) acc += (trans_a ? A[p * M + i] : A[i * K + p]) * B[j * K + p];
      float v = alpha * acc;
      if (C) v += beta * C[i * cs_m + j * cs_n];
      Y[i * N + j] = v;
    }
  }
}

/* 2-D convolution, NCHW, direct. 1-D convolutions arrive as H = 1. */
static void el_conv2d(const float* x, const float* w, const float* bias, float* y, i64 batch, i64 C, i64 H, i64 W,
                      i64 M, i64 OH, i64 OW, i64 KH, i64 KW, i64 group, i64 sh, i64 sw, i64 dh, i64 dw, i64 ph,
                      i64 pw, int act, float lo, float hi) {
  const i64 cg = C / group, mg = M / group;
  for (i64 b = 0; b < batch; ++b) {
    for (i64 m = 0; m < M; ++m) {
      const i64 g = m / mg;
      float* out = y + (b * M + m) * OH * OW;
      const float init = bias ? bias[m] : 0.0f;
      for (i64 i = 0; i < OH * OW; ++i) out[i] = init;
      for (i64 c = 0; c < cg; ++c) {
        const float* plane = x + (b * C + g * cg + c) * H * W;
        const float* k = w + (m * cg + c) * KH * KW;
        for (i64 kh = 0; kh < KH; ++kh) {
          for (i64 kw = 0; kw < KW; ++kw) {
            const float wv = k[kh * KW + kw];
            for (i64 oh = 0; oh < OH; ++oh) {
              const i64 ih = oh * sh - ph + kh * dh;
              if (ih < 0 || ih >= H) continue;
              const float* row = plane + ih * W;
              float* o = out + oh * OW;
              for (i64 ow = 0; ow < OW; ++ow) {
                const i64 iw = ow * sw - pw + kw * dw;
                if (iw >= 0 && iw < W) o[ow] += wv * row[iw];
              }
            }
          }
        }
      }
      if (act == 1) {
        for (i64 i = 0; i < OH * OW; ++i) out[i] = out[i] > 0.0f ? out[i] : 0.0f;
      } else if (act == 2) {
        for (i64 i = 0; i < OH * OW; ++i) out[i] = out[i] < lo ? lo : (out[i] > hi ? hi : out[i]);
      }
    }
  }
}

/* 2-D max / average pooling over planes. pe_h/pe_w: end padding (windows past it are cut). */
static void el_pool2d(const float* x, float* y, i64 planes, i64 H, i64 W, i64 OH, i64 OW, i64 KH, i64 KW, i64 sh,
                      i64 sw, i64 dh, i64 dw, i64 ph, i64 pw, i64 pe_h, i64 pe_w, int is_max, int count_pad) {
  for (i64 p = 0; p < planes; ++p) {
    const float* in = x + p * H * W;
    float* out = y + p * OH * OW;
    for (i64 oh = 0; oh < OH; ++oh) {
      for (i64 ow = 0; ow < OW; ++ow) {
        float acc = is_max ? -INFINITY : 0.0f;
        i64 count = 0;
        for (i64 kh = 0; kh < KH; ++kh) {
          const i64 ih = oh * sh - ph + kh * dh;
          if (ih < 0 || ih >= H) continue;
          for (i64 kw = 0; kw < KW; ++kw) {
            const i64 iw = ow * sw - pw + kw * dw;
            if (iw < 0 || iw >= W) continue;
            const float v = in[ih * W + iw];
            if (is_max) {
              acc = v > acc ? v : acc;
            } else {
              acc += v;
            }
            ++count;
          }
        }
        if (!is_max) {
          i64 divisor = count;
          if (count_pad) {
            const i64 h0 = oh * sh - ph, w0 = ow * sw - pw;
            i64 h1 = h0 + (KH - 1) * dh + 1, w1 = w0 + (KW - 1) * dw + 1;
            if (h1 > H + pe_h) h1 = H + pe_h;
            if (w1 > W + pe_w) w1 = W + pe_w;
            divisor = ((h1 - h0 + dh - 1) / dh) * ((w1 - w0 + dw - 1) / dw);
          }
          acc = acc / (float)(divisor > 0 ? divisor : 1);
        }
        out[oh * OW + ow] = acc;
      }
    }
  }
}

static void el_global_avg(const float* x, float* y, i64 planes, i64 size) {
  for (i64 p = 0; p < planes; ++p) {
    float acc = 0.0f;
    for (i64 i = 0; i < size; ++i) acc += x[p * size + i];
    y[p] = acc / (float)size;
  }
}

/* y = x * scale[c] + shift[c] per channel: inference BatchNormalization, folded at compile time. */
static void el_channel_affine(const float* x, float* y, i64 batch, i64 C, i64 plane, const float* scale,
                              const float* shift) {
  for (i64 b = 0; b < batch; ++b) {
    for (i64 c = 0; c < C; ++c) {
      const float* in = x + (b * C + c) * plane;
      float* out = y + (b * C + c) * plane;
      for (i64 i = 0; i < plane; ++i) out[i] = in[i] * scale[c] + shift[c];
    }
  }
}

/* Inference BatchNormalization with parameters that arrive at run time. */
static void el_batch_norm(const float* x, float* y, i64 batch, i64 C, i64 plane, const float* scale, const float* bias,
                          const float* mean, const float* var, float epsilon) {
  for (i64 b = 0; b < batch; ++b) {
    for (i64 c = 0; c < C; ++c) {
      const float s = scale[c] / sqrtf(var[c] + epsilon), t = bias[c] - mean[c] * s;
      for (i64 i = 0; i < plane; ++i) y[(b * C + c) * plane + i] = x[(b * C + c) * plane + i] * s + t;
    }
  }
}

static void el_softmax(const float* x, float* y, i64 outer, i64 len, i64 inner, int log_out) {
  for (i64 o = 0; o < outer; ++o) {
    for (i64 i = 0; i < inner; ++i) {
      const float* in = x + o * len * inner + i;
      float* out = y + o * len * inner + i;
      float max = -INFINITY;
      for (i64 l = 0; l < len; ++l) max = in[l * inner] > max ? in[l * inner] : max;
      double sum = 0.0;
      for (i64 l = 0; l < len; ++l) sum += exp((double)(in[l * inner] - max));
      for (i64 l = 0; l < len; ++l) {
        const double shifted = (double)(in[l * inner] - max);
        out[l * inner] = (float)(log_out ? shifted - log(sum) : exp(shifted) / sum);
      }
    }
  }
}

/* y[i] = x[sum c_k * s_k]: transposition with input strides permuted into output order. */
static void el_transpose(const float* x, float* y, int rank, const i64* shape, const i64* strides) {
  i64 n = 1, c[8] = {0}, src = 0;
  for (int k = 0; k < rank; ++k) n *= shape[k];
  for (i64 i = 0; i < n; ++i) {
    y[i] = x[src];
    for (int k = rank - 1; k >= 0; --k) {
      src += strides[k];
      if (++c[k] < shape[k]) break;
      src -= strides[k] * shape[k];
      c[k] = 0;
    }
  }
}

/* One input's slabs of a concatenation. */
static void el_concat_part(const float* x, float* y, i64 outer, i64 chunk, i64 out_chunk, i64 offset) {
  for (i64 o = 0; o < outer; ++o) {
    for (i64 i = 0; i < chunk; ++i) y[o * out_chunk + offset + i] = x[o * chunk + i];
  }
}

/* Pad: mode 0 constant, 1 edge, 2 reflect. */
static void el_pad(const float* x, float* y, int rank, const i64* in_shape, const i64* out_shape, const i64* before,
                   int mode, float value) {
  i64 n = 1, c[8] = {0}, stride[8];
  for (int k = 0; k < rank; ++k) n *= out_shape[k];
  stride[rank - 1] = 1;
  for (int k = rank - 2; k >= 0; --k) stride[k] = stride[k + 1] * in_shape[k + 1];
  for (i64 i = 0; i < n; ++i) {
    i64 src = 0;
    int outside = 0;
    for (int k = 0; k < rank; ++k) {
      i64 p = c[k] - before[k];
      const i64 size = in_shape[k];
      if (p < 0 || p >= size) {
        if (mode == 0) {
          outside = 1;
        } else if (mode == 1) {
          p = p < 0 ? 0 : size - 1;
        } else if (size == 1) {
          p = 0;
        } else {
          const i64 period = 2 * (size - 1);
          p = ((p % period) + period) % period;
          if (p >= size) p = period - p;
        }
      }
      src += p * stride[k];
    }
    y[i] = outside ? value : x[src];
    for (int k = rank - 1; k >= 0; --k) {
      if (++c[k] < out_shape[k]) break;
      c[k] = 0;
    }
  }
}

/* Mean over the dimensions whose output stride is 0. */
static void el_reduce_mean(const float* x, float* y, int rank, const i64* in_shape, const i64* out_strides,
                           i64 out_size, i64 count) {
  i64 n = 1, c[8] = {0}, dst = 0;
  for (int k = 0; k < rank; ++k) n *= in_shape[k];
  for (i64 i = 0; i < out_size; ++i) y[i] = 0.0f;
  for (i64 i = 0; i < n; ++i) {
    y[dst] += x[i];
    for (int k = rank - 1; k >= 0; --k) {
      dst += out_strides[k];
      if (++c[k] < in_shape[k]) break;
      dst -= out_strides[k] * in_shape[k];
      c[k] = 0;
    }
  }
  for (i64 i = 0; i < out_size; ++i) y[i] = y[i] / (float)count;
}

static int el_close(const float* actual, const float* expected, i64 n) {
  for (i64 i = 0; i < n; ++i) {
    const float a = actual[i], e = expected[i];
    if (isnan(e)) {
      if (!isnan(a)) return 0;
      continue;
    }
    if (isinf(e)) {
      if (a != e) return 0;
      continue;
    }
    if (!(fabsf(a - e) <= 1e-5f + 1e-3f * fabsf(e))) return 0;
  }
  return 1;
}
