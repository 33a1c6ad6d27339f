// BatchNorm with batch statistics fused with the activation next to it, for convzoo.norm_act.
//
// The tensor is NHWC, seen as M = N*H*W rows of C contiguous channels. v is what BatchNorm
// normalises: act(x) when the activation comes first (ConvMixer: conv -> GELU -> BN), else x
// (conv -> BN -> act). torch runs the pair as two ops of two or three memory passes each, forward
// and backward; here each direction is two passes over the input (statistics, then the elementwise
// result), and every sum is fp32 over at most 64 rows, then fp64. An activation that comes first is
// evaluated once per direction: the forward keeps v (in the tensor's dtype, as torch's two ops
// do), the backward only needs act'(x). A residual, when given, is added to the result in the
// forward's second pass (ConvMixer's x + BN(GELU(conv(x)))), which saves the add's memory pass.
//
//   forward:  mean, var of v over the rows; y = act first ? v*scale + shift : act(x*scale + shift)
//             with scale = weight / sqrt(var + eps), shift = bias - mean * scale; y += residual
//   backward: g = grad at BN's output (dy, or dy * act'(z) when the activation comes last),
//             xhat = (v - mean) * invstd; grad_weight = sum g*xhat, grad_bias = sum g;
//             grad_v = weight * invstd * (g - mean(g) - xhat * mean(g*xhat)); grad_x = grad_v * act'(x)
//             when the activation comes first.
//
// Plain C ABI (called through ctypes), compiled on first use like depthwise_backward.cpp.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "bf16.h"

namespace {

using convzoo::from_float;
using convzoo::to_float;

enum Act { kIdentity = 0, kRelu = 1, kRelu6 = 2, kGelu = 3, kSilu = 4 };  // convzoo.norm_act.ACTIVATIONS

constexpr int kRowsPerSum = 64;  // rows summed in fp32 before the sum joins the fp64 total

// Ternaries, not std::min/max: those take references, which stop GCC from vectorising the loop.
inline float clamp(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

inline float bits_to_float(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// e^x by Cephes' expf (range reduction by ln 2 and a degree-6 polynomial; ~1 ulp), written with
// arithmetic only so that a loop over channels vectorises.
inline float exp_approx(float x) {
  x = clamp(x, -87.f, 88.f);
  const float n = std::nearbyint(x * 1.44269504088896341f);  // floor() would not vectorise
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return (p * r * r + r + 1.f) * bits_to_float((int32_t(n) + 127) << 23);
}

// erf(x) as a rational function (Eigen's and XLA's fast erf: |error| < 5e-7 in fp32, no exp):
// the forward only needs GELU's value, and this is about half the work of the form with a density.
inline float erf_rational(float x) {
  x = clamp(x, -4.f, 4.f);  // |erf| rounds to 1 in fp32 beyond 4
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return x * p / q;
}

// The activation at x. GELU is the exact (erf) one.
template <int A>
inline float activation(float x) {
  if constexpr (A == kIdentity) {
    return x;
  } else if constexpr (A == kRelu) {
    return x > 0.f ? x : 0.f;
  } else if constexpr (A == kRelu6) {
    return clamp(x, 0.f, 6.f);
  } else if constexpr (A == kGelu) {
    return 0.5f * x * (1.f + erf_rational(x * 0.70710678118654752f));
  } else {  // kSilu
    return x / (1.f + exp_approx(-x));
  }
}

// The activation's derivative at x. GELU's is Phi(x) + x phi(x): erf by Abramowitz & Stegun 7.1.26
// (|error| < 1.5e-7), whose exp(-x^2 / 2) is also the density phi's.
template <int A>
inline float slope(float x) {
  if constexpr (A == kIdentity) {
    return 1.f;
  } else if constexpr (A == kRelu) {
    return x > 0.f ? 1.f : 0.f;
  } else if constexpr (A == kRelu6) {
    return (x > 0.f && x < 6.f) ? 1.f : 0.f;
  } else if constexpr (A == kGelu) {
    const float z = std::fabs(x) * 0.70710678118654752f;
    const float t = 1.f / (1.f + 0.3275911f * z);
    const float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
                        0.254829592f) * t;
    const float density = exp_approx(-z * z);  // e^(-x^2 / 2)
    const float cdf = 0.5f * (1.f + std::copysign(1.f - poly * density, x));
    return cdf + x * density * 0.39894228040143268f;  // 1 / sqrt(2 pi)
  } else {  // kSilu
    const float sigmoid = 1.f / (1.f + exp_approx(-x));
    return sigmoid * (1.f + x * (1.f - sigmoid));
  }
}

// f rounded to T (bf16 keeps 8 bits of mantissa): what a stored value reads back as.
template <typename T>
inline float rounded(float f) {
  return to_float(from_float<T>(f));
}

// Row chunks for the reductions: a few per thread, so that uneven threads even out.
inline int64_t chunk_count(int64_t rows) {
  return std::max<int64_t>(1, std::min<int64_t>(rows, 4 * omp_get_max_threads()));
}

// Per-channel sums over all rows of first(row, c) and second(row, c), fp32 within kRowsPerSum rows
// and fp64 across them; written to sum1[C] and sum2[C].
template <typename Terms>
void channel_sums(int64_t rows, int C, const Terms& terms, double* sum1, double* sum2) {
  const int64_t chunks = chunk_count(rows);
  std::vector<double> partial(size_t(chunks) * 2 * C, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t r0 = rows * chunk / chunks, r1 = rows * (chunk + 1) / chunks;
    double* p1 = partial.data() + size_t(chunk) * 2 * C;
    double* p2 = p1 + C;
    std::vector<float> s1(C), s2(C);
    for (int64_t start = r0; start < r1; start += kRowsPerSum) {
      std::fill(s1.begin(), s1.end(), 0.f);
      std::fill(s2.begin(), s2.end(), 0.f);
      for (int64_t r = start; r < std::min(r1, start + kRowsPerSum); ++r) terms(r, s1.data(), s2.data());
      for (int c = 0; c < C; ++c) p1[c] += s1[c], p2[c] += s2[c];
    }
  }
  std::fill(sum1, sum1 + C, 0.0);
  std::fill(sum2, sum2 + C, 0.0);
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int c = 0; c < C; ++c) sum1[c] += partial[(chunk * 2) * C + c], sum2[c] += partial[(chunk * 2 + 1) * C + c];
}

template <typename T, int A, bool kActFirst>
void forward(const T* x, const T* residual, T* y, T* v_out, const float* weight, const float* bias, float* mean,
             float* var, float* invstd, int64_t M, int C, float eps) {
  // Sums of v - v(row 0): shifted by a value of the channel's own, so that E[v^2] - E[v]^2 does
  // not cancel catastrophically when the mean is far from 0.
  std::vector<float> shift0(C);
  for (int c = 0; c < C; ++c) shift0[c] = kActFirst ? rounded<T>(activation<A>(to_float(x[c]))) : to_float(x[c]);
  std::vector<double> sum(C), squares(C);
  const float* k = shift0.data();
  channel_sums(M, C, [&](int64_t r, float* s1, float* s2) {
    const T* row = x + r * C;
    T* saved = kActFirst ? v_out + r * C : nullptr;
#pragma omp simd
    for (int c = 0; c < C; ++c) {
      float v = to_float(row[c]);
      if constexpr (kActFirst) {  // the activation's output, kept (in T) for the second pass and the backward
        const T stored = from_float<T>(activation<A>(v));
        saved[c] = stored, v = to_float(stored);
      }
      v -= k[c];
      s1[c] += v, s2[c] += v * v;
    }
  }, sum.data(), squares.data());
  std::vector<float> scale(C), shift(C);
  for (int c = 0; c < C; ++c) {
    const double centred = sum[c] / double(M);
    mean[c] = float(k[c] + centred);
    var[c] = float(std::max(0.0, squares[c] / double(M) - centred * centred));
    invstd[c] = 1.f / std::sqrt(var[c] + eps);
    scale[c] = weight[c] * invstd[c];
    shift[c] = bias[c] - mean[c] * scale[c];
  }
  const float* sc = scale.data();
  const float* sh = shift.data();
  auto write = [&](auto add_residual) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < M; ++r) {
      const T* in = (kActFirst ? v_out : x) + r * C;
      const T* res = decltype(add_residual)::value ? residual + r * C : nullptr;
      T* out = y + r * C;
#pragma omp simd
      for (int c = 0; c < C; ++c) {
        const float u = to_float(in[c]);
        const float result = kActFirst ? u * sc[c] + sh[c] : activation<A>(u * sc[c] + sh[c]);
        out[c] = from_float<T>(decltype(add_residual)::value ? result + to_float(res[c]) : result);
      }
    }
  };
  if (residual) write(std::true_type{});
  else write(std::false_type{});
}

template <typename T, int A, bool kActFirst>
void backward(const T* x, const T* v, const T* dy, T* dx, const float* weight, const float* bias, const float* mean,
              const float* invstd, float* grad_weight, float* grad_bias, int64_t M, int C) {
  std::vector<float> scale(C), shift(C);
  for (int c = 0; c < C; ++c) scale[c] = weight[c] * invstd[c], shift[c] = bias[c] - mean[c] * scale[c];
  const float *sc = scale.data(), *sh = shift.data(), *mu = mean, *is = invstd;
  // g (the gradient at BatchNorm's output) and xhat at element i of channel c; with the activation
  // first, xhat comes from the forward's saved v and the activation is only evaluated (for its
  // slope) where the gradient reaches x
  auto at = [&](int64_t i, int c, float& g, float& xhat) {
    const float d = to_float(dy[i]);
    if constexpr (kActFirst) {
      g = d, xhat = (to_float(v[i]) - mu[c]) * is[c];
    } else {
      const float u = to_float(x[i]);
      g = d * slope<A>(u * sc[c] + sh[c]), xhat = (u - mu[c]) * is[c];
    }
  };
  std::vector<double> sum_g(C), sum_gx(C);
  channel_sums(M, C, [&](int64_t r, float* s1, float* s2) {
#pragma omp simd
    for (int c = 0; c < C; ++c) {
      float g, xhat;
      at(r * C + c, c, g, xhat);
      s1[c] += g, s2[c] += g * xhat;
    }
  }, sum_g.data(), sum_gx.data());
  std::vector<float> mean_g(C), mean_gx(C);
  for (int c = 0; c < C; ++c) {
    grad_bias[c] = float(sum_g[c]), grad_weight[c] = float(sum_gx[c]);
    mean_g[c] = float(sum_g[c] / double(M)), mean_gx[c] = float(sum_gx[c] / double(M));
  }
  const float *mg = mean_g.data(), *mgx = mean_gx.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < M; ++r) {
#pragma omp simd
    for (int c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      float g, xhat;
      at(i, c, g, xhat);
      float grad_v = sc[c] * (g - mg[c] - xhat * mgx[c]);  // scale = weight * invstd
      if constexpr (kActFirst) grad_v *= slope<A>(to_float(x[i]));
      dx[i] = from_float<T>(grad_v);
    }
  }
}

// One entry per direction and dtype; the activation and the order are run-time arguments turned
// into template parameters here, so every combination's inner loop is specialised.
template <typename T, template <typename, int, bool> class Kernel, typename... Args>
void dispatch(int act, int act_first, Args... args) {
  auto run = [&](auto a) {
    constexpr int A = decltype(a)::value;
    if (act_first) Kernel<T, A, true>::run(args...);
    else Kernel<T, A, false>::run(args...);
  };
  switch (act) {
    case kRelu: run(std::integral_constant<int, kRelu>{}); break;
    case kRelu6: run(std::integral_constant<int, kRelu6>{}); break;
    case kGelu: run(std::integral_constant<int, kGelu>{}); break;
    case kSilu: run(std::integral_constant<int, kSilu>{}); break;
    default: run(std::integral_constant<int, kIdentity>{});
  }
}

template <typename T, int A, bool kActFirst>
struct Forward {
  template <typename... Args> static void run(Args... args) { forward<T, A, kActFirst>(args...); }
};
template <typename T, int A, bool kActFirst>
struct Backward {
  template <typename... Args> static void run(Args... args) { backward<T, A, kActFirst>(args...); }
};

}  // namespace

extern "C" {
// x, y: [M, C] (NHWC); residual: [M, C] added to the result, or null; v: [M, C], act(x) written
// when the activation comes first (else unused); weight, bias: [C] fp32; mean, var (biased),
// invstd: [C] fp32, written.
void norm_act_forward_f32(const float* x, const float* residual, float* y, float* v, const float* weight,
                          const float* bias, float* mean, float* var, float* invstd, int64_t M, int C, float eps,
                          int act, int act_first) {
  dispatch<float, Forward>(act, act_first, x, residual, y, v, weight, bias, mean, var, invstd, M, C, eps);
}
void norm_act_forward_bf16(const uint16_t* x, const uint16_t* residual, uint16_t* y, uint16_t* v,
                           const float* weight, const float* bias, float* mean, float* var, float* invstd, int64_t M,
                           int C, float eps, int act, int act_first) {
  dispatch<uint16_t, Forward>(act, act_first, x, residual, y, v, weight, bias, mean, var, invstd, M, C, eps);
}
// x, v, dy, dx: [M, C] (v: the forward's, read when the activation comes first); mean, invstd: the
// forward's; grad_weight, grad_bias: [C] fp32, written.
void norm_act_backward_f32(const float* x, const float* v, const float* dy, float* dx, const float* weight,
                           const float* bias, const float* mean, const float* invstd, float* grad_weight,
                           float* grad_bias, int64_t M, int C, int act, int act_first) {
  dispatch<float, Backward>(act, act_first, x, v, dy, dx, weight, bias, mean, invstd, grad_weight, grad_bias, M, C);
}
void norm_act_backward_bf16(const uint16_t* x, const uint16_t* v, const uint16_t* dy, uint16_t* dx,
                            const float* weight, const float* bias, const float* mean, const float* invstd,
                            float* grad_weight, float* grad_bias, int64_t M, int C, int act, int act_first) {
  dispatch<uint16_t, Backward>(act, act_first, x, v, dy, dx, weight, bias, mean, invstd, grad_weight, grad_bias, M,
                               C);
}
}
