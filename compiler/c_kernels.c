/* Kernels of edgeloop's C backend. Embedded at the top of every generated module: plain C99,
 * no heap, nothing from libc beyond math.h. Shapes are known at compile time and passed in as
 * constants, so the C compiler sees fixed trip counts and vectorises the inner loops. */
#include <math.h>
#include <stdint.h>

typedef int64_t i64;

/* Floats per SIMD register of the target (4: SSE, NEON; 8: AVX2; 16: AVX-512). The generator
 * defines it from the target class, because it packs constant weights to match. */
#ifndef EL_VEC
#define EL_VEC 4
#endif
#define EL_MR 4             /* rows of a register tile in el_gemm_pa */
#define EL_NR (2 * EL_VEC)  /* columns of a register tile in el_gemm_pa */
#define EL_NB (4 * EL_VEC)  /* columns of a weight panel in el_gemm_pb */

static inline float el_act(float v, int act, float lo, float hi) {
  if (act == 1) return v > 0.0f ? v : 0.0f;
  if (act == 2) return v < lo ? lo : (v > hi ? hi : v);
  return v;
}

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

/* Y[M,N] = alpha * A(MxK) * B(KxN) + beta * C, with C broadcast through strides (cs_m, cs_n),
 * for a B computed at run time (constant weights go through el_gemm_pb). The inner loop runs
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
      y[j] = el_act(v, act, lo, hi);
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

/* Y[M,N] = alpha * A(MxK) * B + beta * C for a constant B, packed at compile time into panels
 * of EL_NB columns: panel q holds B[p][q*EL_NB + c] at Bp[q*EL_NB*K + p*w + c], w its width
 * (EL_NB, less for the last). Each panel streams once per row of A through EL_NB accumulators,
 * with two of them per column so that consecutive multiply-adds do not wait on each other. */
static void el_gemm_pb(const float* A, int trans_a, const float* Bp, const float* C, float* Y, i64 M, i64 N,
                       i64 K, float alpha, float beta, i64 cs_m, i64 cs_n, int act, float lo, float hi) {
  const i64 sa = trans_a ? M : 1;
  for (i64 i = 0; i < M; ++i) {
    const float* a = trans_a ? A + i : A + i * K;
    for (i64 j0 = 0; j0 < N; j0 += EL_NB) {
      const float* b = Bp + j0 * K;
      float* y = Y + i * N + j0;
      float acc0[EL_NB] = {0}, acc1[EL_NB] = {0};
      i64 w = N - j0, p = 0;
      if (w >= EL_NB) {
        w = EL_NB;
        for (; p + 1 < K; p += 2) {
          const float x0 = a[p * sa], x1 = a[(p + 1) * sa];
          const float *b0 = b + p * EL_NB, *b1 = b0 + EL_NB;
          for (int c = 0; c < EL_NB; ++c) {
            acc0[c] += x0 * b0[c];
            acc1[c] += x1 * b1[c];
          }
        }
        if (p < K) {
          for (int c = 0; c < EL_NB; ++c) acc0[c] += a[p * sa] * b[p * EL_NB + c];
        }
      } else {
        for (; p < K; ++p) {
          const float x0 = a[p * sa];
          for (i64 c = 0; c < w; ++c) acc0[c] += x0 * b[p * w + c];
        }
      }
      for (i64 c = 0; c < w; ++c) {
        float v = alpha * (acc0[c] + acc1[c]);
        if (C) v += beta * C[i * cs_m + (j0 + c) * cs_n];
        y[c] = el_act(v, act, lo, hi);
      }
    }
  }
}

/* Y[M,N] = A * B + bias[row] for a constant A packed at compile time into panels of EL_MR rows
 * (panel r0 holds A[r0 + r][p] at Ap[r0*K + p*mr + r], mr its height) and B (KxN) row-major,
 * computed in EL_MR x EL_NR register tiles: per step of K, EL_MR broadcasts times two vectors
 * of B. This is the convolution kernel (A: filters, B: image columns). */
static void el_gemm_pa(const float* Ap, const float* B, const float* bias, float* Y, i64 M, i64 N, i64 K, int act,
                       float lo, float hi) {
  for (i64 j0 = 0; j0 < N; j0 += EL_NR) {
    const i64 w = N - j0 < EL_NR ? N - j0 : EL_NR;
    for (i64 i0 = 0; i0 < M; i0 += EL_MR) {
      const i64 mr = M - i0 < EL_MR ? M - i0 : EL_MR;
      const float* a = Ap + i0 * K;
      float acc[EL_MR][EL_NR] = {{0}};
      if (mr == EL_MR && w == EL_NR) {
        for (i64 p = 0; p < K; ++p) {
          const float* b = B + p * N + j0;
          for (int r = 0; r < EL_MR; ++r) {
            const float av = a[p * EL_MR + r];
            for (int c = 0; c < EL_NR; ++c) acc[r][c] += av * b[c];
          }
        }
      } else {
        for (i64 p = 0; p < K; ++p) {
          const float* b = B + p * N + j0;
          for (i64 r = 0; r < mr; ++r) {
            const float av = a[p * mr + r];
            for (i64 c = 0; c < w; ++c) acc[r][c] += av * b[c];
          }
        }
      }
      for (i64 r = 0; r < mr; ++r) {
        const float add = bias ? bias[i0 + r] : 0.0f;
        float* y = Y + (i0 + r) * N + j0;
        for (i64 c = 0; c < w; ++c) y[c] = el_act(acc[r][c] + add, act, lo, hi);
      }
    }
  }
}

/* The output positions [*lo, *hi) of a row whose input index o*stride + offset is in [0, size). */
static void el_valid_range(i64 size, i64 count, i64 stride, i64 offset, i64* lo, i64* hi) {
  const i64 first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const i64 end = size - offset <= 0 ? 0 : (size - offset + stride - 1) / stride;
  *lo = first < count ? first : count;
  *hi = end < *lo ? *lo : (end < count ? end : count);
}

/* Image columns for a convolution: col[(c*KH + kh)*KW + kw][oh*OW + ow] is the input under
 * tap (kh, kw) of output (oh, ow), 0 in the padding. Rows follow the filters' OIHW order. */
static void el_im2col(const float* x, float* col, i64 C, i64 H, i64 W, i64 OH, i64 OW, i64 KH, i64 KW, i64 sh,
                      i64 sw, i64 dh, i64 dw, i64 ph, i64 pw) {
  for (i64 c = 0; c < C; ++c) {
    for (i64 kh = 0; kh < KH; ++kh) {
      for (i64 kw = 0; kw < KW; ++kw) {
        float* row = col + ((c * KH + kh) * KW + kw) * OH * OW;
        i64 lo, hi;
        el_valid_range(W, OW, sw, kw * dw - pw, &lo, &hi);
        for (i64 oh = 0; oh < OH; ++oh) {
          const i64 ih = oh * sh - ph + kh * dh;
          float* o = row + oh * OW;
          if (ih < 0 || ih >= H) {
            for (i64 ow = 0; ow < OW; ++ow) o[ow] = 0.0f;
            continue;
          }
          const float* in = x + (c * H + ih) * W;
          const i64 off = kw * dw - pw;
          for (i64 ow = 0; ow < lo; ++ow) o[ow] = 0.0f;
          if (sw == 1) {
            for (i64 ow = lo; ow < hi; ++ow) o[ow] = in[ow + off];
          } else {
            for (i64 ow = lo; ow < hi; ++ow) o[ow] = in[ow * sw + off];
          }
          for (i64 ow = hi; ow < OW; ++ow) o[ow] = 0.0f;
        }
      }
    }
  }
}

/* 2-D convolution, NCHW, direct: for convolutions with one input channel per group (depthwise),
 * where a GEMM would have one row. 1-D convolutions arrive as H = 1. */
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
            i64 ow_lo, ow_hi;
            el_valid_range(W, OW, sw, kw * dw - pw, &ow_lo, &ow_hi);
            for (i64 oh = 0; oh < OH; ++oh) {
              const i64 ih = oh * sh - ph + kh * dh;
              if (ih < 0 || ih >= H) continue;
              const float* row = plane + ih * W;
              const i64 off = kw * dw - pw;
              float* o = out + oh * OW;
              if (sw == 1) {
                for (i64 ow = ow_lo; ow < ow_hi; ++ow) o[ow] += wv * row[ow + off];
              } else {
                for (i64 ow = ow_lo; ow < ow_hi; ++ow) o[ow] += wv * row[ow * sw + off];
              }
            }
          }
        }
      }
      for (i64 i = 0; i < OH * OW; ++i) out[i] = el_act(out[i], act, lo, hi);
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
