// BatchNorm with batch statistics fused with the activation next to it, for convzoo.ops.norm_act.
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

// Schedule instructions before register allocation too (GCC does so only after it on x86): the
// independent chains of a few rows' or blocks' GELU then interleave, which the core's reorder window,
// halved between the two threads of a core, does not do alone (GELU ~10% faster here).
#pragma GCC optimize("schedule-insns", "sched-pressure")

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "bf16.h"

namespace {

using convzoo::Bits;
using convzoo::Ints;
using convzoo::kLanes;
using convzoo::load_lanes;
using convzoo::splat;
using convzoo::store_lanes;
using convzoo::Vec;

enum Act { kIdentity = 0, kRelu = 1, kRelu6 = 2, kGelu = 3, kSilu = 4 };  // convzoo.ops.norm_act.ACTIVATIONS

constexpr int kRowsPerSum = 64;  // rows summed in fp32 before the sum joins the fp64 total

[[gnu::always_inline]] inline Vec clamp(Vec x, float lo, float hi) { return x < lo ? splat(lo) : (x > hi ? splat(hi) : x); }  // NaN stays
[[gnu::always_inline]] inline Vec select(Ints mask, Vec a, Vec b) { return mask ? a : b; }

// e^x by Cephes' expf (range reduction by ln 2 and a degree-6 polynomial; ~1 ulp).
[[gnu::always_inline]] inline Vec exp_approx(Vec x) {
  x = clamp(x, -87.f, 88.f);
  const Vec n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;  // nearest integer (1.5 * 2^23)
  const Vec r = x - n * 0.693359375f + n * 2.12194440e-4f;
  Vec p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return (p * r * r + r + 1.f) * (Vec)((Bits)(__builtin_convertvector(n, Ints) + 127) << 23);
}

// erf(x) as a rational function (Eigen's and XLA's fast erf: |error| < 5e-7 in fp32, no exp):
// the forward only needs GELU's value, and this is about half the work of the form with a density.
[[gnu::always_inline]] inline Vec erf_rational(Vec x) {
  x = clamp(x, -4.f, 4.f);  // |erf| rounds to 1 in fp32 beyond 4
  const Vec x2 = x * x;
  Vec p = splat(-2.72614225801306e-10f);
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  Vec q = splat(-1.45660718464996e-05f);
  q = q * x2 - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return x * p / q;
}

// The activation at x. GELU is the exact (erf) one.
template <int A>
[[gnu::always_inline]] inline Vec activation(Vec x) {
  if constexpr (A == kIdentity) {
    return x;
  } else if constexpr (A == kRelu) {
    return select(x > 0.f, x, Vec{});
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
[[gnu::always_inline]] inline Vec slope(Vec x) {
  if constexpr (A == kIdentity) {
    return splat(1.f);
  } else if constexpr (A == kRelu) {
    return select(x > 0.f, splat(1.f), Vec{});
  } else if constexpr (A == kRelu6) {
    return select((x > 0.f) & (x < 6.f), splat(1.f), Vec{});
  } else if constexpr (A == kGelu) {
    const Bits sign = (Bits)x & 0x80000000u;
    const Vec z = (Vec)((Bits)x ^ sign) * 0.70710678118654752f;  // |x| / sqrt(2)
    const Vec t = 1.f / (1.f + 0.3275911f * z);
    const Vec poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
                      0.254829592f) * t;
    const Vec density = exp_approx(-z * z);  // e^(-x^2 / 2)
    const Vec cdf = 0.5f * (1.f + (Vec)((Bits)(1.f - poly * density) ^ sign));  // 1 - poly * density >= 0
    return cdf + x * density * 0.39894228040143268f;  // 1 / sqrt(2 pi)
  } else {  // kSilu
    const Vec sigmoid = 1.f / (1.f + exp_approx(-x));
    return sigmoid * (1.f + x * (1.f - sigmoid));
  }
}

// v as a value of T reads back (bf16 keeps 8 bits of mantissa).
template <typename T>
[[gnu::always_inline]] inline Vec rounded(Vec v) {
  T stored[kLanes];
  return store_lanes(stored, v);
}

// Row chunks for the reductions: a few per thread, so that uneven threads even out.
inline int64_t chunk_count(int64_t rows) {
  return std::max<int64_t>(1, std::min<int64_t>(rows, 4 * omp_get_max_threads()));
}

// A per-channel vector of C values padded with zeros to whole blocks of kLanes: every block loads it whole.
struct Lanes {
  std::vector<float> values;
  explicit Lanes(int C) : values((C + kLanes - 1) / kLanes * kLanes, 0.f) {}
  float& operator[](int c) { return values[c]; }
  Vec at(int c0) const { return load_lanes(values.data() + c0); }
};

// Calls f(c0, width) for the blocks of kLanes channels (16 with AVX-512) of a row of C channels:
// whole blocks with the constant width kLanes (so that f, inlined, has no partial-block branch
// left), then the partial one.
template <typename Block>
[[gnu::always_inline]] inline void for_blocks(int C, const Block& f) {
  const int whole = C / kLanes * kLanes;
  for (int c0 = 0; c0 < whole; c0 += kLanes) f(c0, kLanes);
  if (whole < C) f(whole, C - whole);
}

// Per-channel sums over all rows of the two terms term(row, c0, width, first, second) gives for the
// channels [c0, c0 + width) of a row (width <= kLanes, zero lanes beyond), fp32 within kRowsPerSum rows
// and fp64 across them; written to sum1[C] and sum2[C]. term returns a value of the row to keep,
// stored at kept when that is not null (the forward's act(x)). Rows are read in memory order, four
// at a time: their terms are added in registers before they join the running sums, which live in
// memory (one update per row would wait on the store of the row before), and their kept values
// are stored after all four are computed, so that the four chains of arithmetic overlap (a store
// might alias the next row's loads).
template <typename T, typename Term>
void channel_sums(int64_t rows, int C, const Term& term, T* kept, double* sum1, double* sum2) {
  const int64_t chunks = chunk_count(rows);
  std::vector<double> partial(size_t(chunks) * 2 * C, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t r0 = rows * chunk / chunks, r1 = rows * (chunk + 1) / chunks;
    double* p1 = partial.data() + size_t(chunk) * 2 * C;
    double* p2 = p1 + C;
    Lanes s1(C), s2(C);
    float *a = s1.values.data(), *b = s2.values.data();
    for (int64_t start = r0; start < r1; start += kRowsPerSum) {
      std::fill(s1.values.begin(), s1.values.end(), 0.f);
      std::fill(s2.values.begin(), s2.values.end(), 0.f);
      const int64_t end = std::min(r1, start + kRowsPerSum);
      int64_t r = start;
      for (; r + 4 <= end; r += 4) {
        for_blocks(C, [&](int c0, int width) __attribute__((always_inline)) {
          Vec a0, b0, a1, b1, a2, b2, a3, b3;
          const Vec k0 = term(r, c0, width, a0, b0), k1 = term(r + 1, c0, width, a1, b1);
          const Vec k2 = term(r + 2, c0, width, a2, b2), k3 = term(r + 3, c0, width, a3, b3);
          if (kept) {
            T* at = kept + r * C + c0;
            store_lanes(at, k0, width), store_lanes(at + C, k1, width);
            store_lanes(at + 2 * C, k2, width), store_lanes(at + 3 * C, k3, width);
          }
          store_lanes(a + c0, load_lanes(a + c0) + ((a0 + a1) + (a2 + a3)));
          store_lanes(b + c0, load_lanes(b + c0) + ((b0 + b1) + (b2 + b3)));
        });
      }
      for (; r < end; ++r) {
        for_blocks(C, [&](int c0, int width) __attribute__((always_inline)) {
          Vec a0, b0;
          const Vec k0 = term(r, c0, width, a0, b0);
          if (kept) store_lanes(kept + r * C + c0, k0, width);
          store_lanes(a + c0, load_lanes(a + c0) + a0), store_lanes(b + c0, load_lanes(b + c0) + b0);
        });
      }
      for (int c = 0; c < C; ++c) p1[c] += a[c], p2[c] += b[c];
    }
  }
  std::fill(sum1, sum1 + C, 0.0);
  std::fill(sum2, sum2 + C, 0.0);
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int c = 0; c < C; ++c) sum1[c] += partial[(chunk * 2) * C + c], sum2[c] += partial[(chunk * 2 + 1) * C + c];
}

// out[row, c] = value(row, c0, width) for every block of channels [c0, c0 + width) of every row, rows
// in parallel. Two blocks' values are computed before either is stored: a store might alias the
// next block's loads, so otherwise the second block's long chain of arithmetic (GELU's slope) could
// not start before the first one's ended.
template <typename T, typename Value>
void write_rows(int64_t rows, int C, T* out, const Value& value) {
  const int whole = C / kLanes * kLanes;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    T* row = out + r * C;
    int c0 = 0;
    for (; c0 + 2 * kLanes <= whole; c0 += 2 * kLanes) {
      const Vec first = value(r, c0, kLanes), second = value(r, c0 + kLanes, kLanes);
      store_lanes(row + c0, first), store_lanes(row + c0 + kLanes, second);
    }
    for (; c0 < C; c0 += kLanes) {
      const int width = std::min(kLanes, C - c0);
      store_lanes(row + c0, value(r, c0, width), width);
    }
  }
}

template <typename T, int A, bool kActFirst>
void forward(const T* x, const T* residual, T* y, T* v_out, const float* weight, const float* bias, float* mean,
             float* var, float* invstd, int64_t M, int C, float eps) {
  // Sums of v - v(row 0): shifted by a value of the channel's own, so that E[v^2] - E[v]^2 does
  // not cancel catastrophically when the mean is far from 0.
  Lanes shift0(C);
  for_blocks(C, [&](int c0, int width) {
    const Vec v = load_lanes(x + c0, width);
    store_lanes(&shift0[c0], kActFirst ? rounded<T>(activation<A>(v)) : v, width);
  });
  std::vector<double> sum(C), squares(C);
  // the activation's output, kept (in T) for the second pass and the backward
  channel_sums(M, C, [&](int64_t r, int c0, int width, Vec& s1, Vec& s2) __attribute__((always_inline)) {
    Vec v = load_lanes(x + r * C + c0, width);
    if constexpr (kActFirst) v = rounded<T>(activation<A>(v));
    s1 = v - shift0.at(c0), s2 = s1 * s1;
    return v;
  }, kActFirst ? v_out : nullptr, sum.data(), squares.data());
  Lanes scale(C), shift(C);
  for (int c = 0; c < C; ++c) {
    const double centred = sum[c] / double(M);
    mean[c] = float(shift0[c] + centred);
    var[c] = float(std::max(0.0, squares[c] / double(M) - centred * centred));
    invstd[c] = 1.f / std::sqrt(var[c] + eps);
    scale[c] = weight[c] * invstd[c];
    shift[c] = bias[c] - mean[c] * scale[c];
  }
  const T* in = kActFirst ? v_out : x;
  auto write = [&](auto add_residual) {
    write_rows(M, C, y, [&](int64_t r, int c0, int width) __attribute__((always_inline)) {
      const int64_t i = r * C + c0;
      const Vec z = load_lanes(in + i, width) * scale.at(c0) + shift.at(c0);
      const Vec result = kActFirst ? z : activation<A>(z);
      if constexpr (decltype(add_residual)::value) return result + load_lanes(residual + i, width);
      else return result;
    });
  };
  if (residual) write(std::true_type{});
  else write(std::false_type{});
}

template <typename T, int A, bool kActFirst>
void backward(const T* x, const T* v, const T* dy, T* dx, const float* weight, const float* bias, const float* mean,
              const float* invstd, float* grad_weight, float* grad_bias, int64_t M, int C) {
  Lanes scale(C), shift(C), mu(C), is(C);
  for (int c = 0; c < C; ++c) {
    scale[c] = weight[c] * invstd[c], shift[c] = bias[c] - mean[c] * scale[c];
    mu[c] = mean[c], is[c] = invstd[c];
  }
  // g (the gradient at BatchNorm's output) and xhat at the channels [c0, c0 + width) of element i;
  // with the activation first, xhat comes from the forward's saved v and the activation is only
  // evaluated (for its slope) where the gradient reaches x
  auto at = [&](int64_t i, int c0, int width, Vec& g, Vec& xhat) __attribute__((always_inline)) {
    const Vec d = load_lanes(dy + i, width);
    if constexpr (kActFirst) {
      g = d, xhat = (load_lanes(v + i, width) - mu.at(c0)) * is.at(c0);
    } else {
      const Vec u = load_lanes(x + i, width);
      g = d * slope<A>(u * scale.at(c0) + shift.at(c0)), xhat = (u - mu.at(c0)) * is.at(c0);
    }
  };
  // A costly slope after the norm (GELU, SiLU) is evaluated once: the first pass keeps g in dx (in
  // T, as torch's path keeps the activation's gradient), and the second reads it back from there.
  constexpr bool kKeepG = !kActFirst && (A == kGelu || A == kSilu);
  std::vector<double> sum_g(C), sum_gx(C);
  channel_sums(M, C, [&](int64_t r, int c0, int width, Vec& s1, Vec& s2) __attribute__((always_inline)) {
    Vec g, xhat;
    at(r * C + c0, c0, width, g, xhat);
    if constexpr (kKeepG) g = rounded<T>(g);
    s1 = g, s2 = g * xhat;
    return g;
  }, kKeepG ? dx : nullptr, sum_g.data(), sum_gx.data());
  Lanes mean_g(C), mean_gx(C);
  for (int c = 0; c < C; ++c) {
    grad_bias[c] = float(sum_g[c]), grad_weight[c] = float(sum_gx[c]);
    mean_g[c] = float(sum_g[c] / double(M)), mean_gx[c] = float(sum_gx[c] / double(M));
  }
  write_rows(M, C, dx, [&](int64_t r, int c0, int width) __attribute__((always_inline)) {
    const int64_t i = r * C + c0;
    Vec g, xhat;
    if constexpr (kKeepG) g = load_lanes(dx + i, width), xhat = (load_lanes(x + i, width) - mu.at(c0)) * is.at(c0);
    else at(i, c0, width, g, xhat);
    const Vec grad_v = scale.at(c0) * (g - mean_g.at(c0) - xhat * mean_gx.at(c0));  // scale = weight * invstd
    if constexpr (kActFirst) return grad_v * slope<A>(load_lanes(x + i, width));
    else return grad_v;
  });
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
