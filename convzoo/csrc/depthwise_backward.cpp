// The weight and input gradients of a depthwise conv on CPU, for convzoo.depthwise.
//
// grad_w[c, i, j] = sum over n, h, w of x[n, c, h*sh + i*dh - ph, w*sw + j*dw - pw] * g[n, c, h, w]
//
// Every (channel, tap) is a dot product over N*Ho*Wo positions: no GEMM shape exists, and torch's
// kernels (oneDNN bf16 especially) run it at a few GFLOP/s. Here both tensors are NHWC, so a run
// of channels is contiguous: the innermost loop is an FMA over channels that the compiler
// vectorises, the sum over one output row stays in registers, and the per-tap accumulators of a
// channel block stay in L1. Accumulation is fp32 for both fp32 and bf16 inputs.
//
// Plain C ABI (called through ctypes): no torch headers, so it compiles in about a second.

#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int kBlock = 64;  // channels per block: four AVX-512 registers of fp32 sums

inline float to_float(float v) { return v; }
inline float to_float(uint16_t bf16) {  // bf16 is the upper half of an fp32
  const uint32_t bits = uint32_t(bf16) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename T> T from_float(float v);
template <> inline float from_float<float>(float v) { return v; }
template <> inline uint16_t from_float<uint16_t>(float v) {  // round to nearest even, as torch does
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // NaN stays NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

struct Shape {
  int N, H, W, C, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw;
};

// Adds sample n's contribution for channels [c0, c0 + width) to acc[tap * kBlock + channel].
template <typename T, int kWidth>
void accumulate_sample(const T* x, const T* g, float* acc, int n, int c0, int width, const Shape& s) {
  const int cw = kWidth > 0 ? kWidth : width;
  for (int h = 0; h < s.Ho; ++h) {
    const T* g_row = g + (int64_t(n) * s.Ho + h) * s.Wo * s.C + c0;
    for (int i = 0; i < s.kh; ++i) {
      const int hi = h * s.sh + i * s.dh - s.ph;
      if (hi < 0 || hi >= s.H) continue;
      const T* x_row = x + (int64_t(n) * s.H + hi) * s.W * s.C + c0;
      for (int j = 0; j < s.kw; ++j) {
        const int offset = j * s.dw - s.pw;  // input column of output column w: w * sw + offset
        const int w_lo = offset >= 0 ? 0 : (-offset + s.sw - 1) / s.sw;
        int w_hi = s.W - 1 - offset >= 0 ? (s.W - 1 - offset) / s.sw : -1;
        if (w_hi > s.Wo - 1) w_hi = s.Wo - 1;
        float sum[kBlock];
        for (int c = 0; c < cw; ++c) sum[c] = 0.f;
        for (int w = w_lo; w <= w_hi; ++w) {
          const T* xp = x_row + int64_t(w * s.sw + offset) * s.C;
          const T* gp = g_row + int64_t(w) * s.C;
#pragma omp simd
          for (int c = 0; c < cw; ++c) sum[c] += to_float(xp[c]) * to_float(gp[c]);
        }
        float* a = acc + (i * s.kw + j) * kBlock;
        for (int c = 0; c < cw; ++c) a[c] += sum[c];
      }
    }
  }
}

// out[split, c, tap]: the sum over the split's samples; the caller adds up the splits.
template <typename T>
void weight_grad(const T* x, const T* g, float* out, int splits, const Shape& s) {
  const int blocks = (s.C + kBlock - 1) / kBlock;
  const int taps = s.kh * s.kw;
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int split = 0; split < splits; ++split) {
    for (int b = 0; b < blocks; ++b) {
      const int c0 = b * kBlock;
      const int width = s.C - c0 < kBlock ? s.C - c0 : kBlock;
      std::vector<float> acc(size_t(taps) * kBlock, 0.f);
      const int n0 = int(int64_t(s.N) * split / splits), n1 = int(int64_t(s.N) * (split + 1) / splits);
      for (int n = n0; n < n1; ++n) {
        if (width == kBlock) accumulate_sample<T, kBlock>(x, g, acc.data(), n, c0, width, s);
        else accumulate_sample<T, 0>(x, g, acc.data(), n, c0, width, s);
      }
      float* o = out + int64_t(split) * s.C * taps;
      for (int c = 0; c < width; ++c)
        for (int t = 0; t < taps; ++t) o[int64_t(c0 + c) * taps + t] = acc[size_t(t) * kBlock + c];
    }
  }
}

// grad_x[n, hi, wi, c] = sum over taps (i, j) of g[n, h, w, c] * w[c, i, j] where hi = h*sh + i*dh - ph
// (and alike for wi): each input pixel gathers its taps into registers and is stored once, so a
// strided layer costs what its forward pass does (torch's bf16 kernel is 10-40x slower at stride 2).
template <typename T>
void input_grad(const T* g, const float* wt, T* gx, const Shape& s) {
  const int blocks = (s.C + kBlock - 1) / kBlock;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < s.N; ++n) {
    for (int hi = 0; hi < s.H; ++hi) {
      for (int b = 0; b < blocks; ++b) {
        const int c0 = b * kBlock;
        const int cw = s.C - c0 < kBlock ? s.C - c0 : kBlock;
        for (int wi = 0; wi < s.W; ++wi) {
          float sum[kBlock];
          for (int c = 0; c < cw; ++c) sum[c] = 0.f;
          for (int i = 0; i < s.kh; ++i) {
            const int hs = hi + s.ph - i * s.dh;  // = h * sh
            if (hs < 0 || hs % s.sh) continue;
            const int h = hs / s.sh;
            if (h >= s.Ho) continue;
            for (int j = 0; j < s.kw; ++j) {
              const int ws = wi + s.pw - j * s.dw;
              if (ws < 0 || ws % s.sw) continue;
              const int w = ws / s.sw;
              if (w >= s.Wo) continue;
              const T* gp = g + ((int64_t(n) * s.Ho + h) * s.Wo + w) * s.C + c0;
              const float* wp = wt + int64_t(i * s.kw + j) * s.C + c0;
#pragma omp simd
              for (int c = 0; c < cw; ++c) sum[c] += to_float(gp[c]) * wp[c];
            }
          }
          T* out = gx + ((int64_t(n) * s.H + hi) * s.W + wi) * s.C + c0;
          for (int c = 0; c < cw; ++c) out[c] = from_float<T>(sum[c]);
        }
      }
    }
  }
}

}  // namespace

extern "C" {
// x: [N, H, W, C] contiguous (NHWC), g: [N, Ho, Wo, C], out: [splits, C, kh * kw] fp32.
void depthwise_weight_grad_f32(const float* x, const float* g, float* out, int splits, int N, int H, int W, int C,
                               int Ho, int Wo, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw) {
  weight_grad<float>(x, g, out, splits, Shape{N, H, W, C, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw});
}
void depthwise_weight_grad_bf16(const uint16_t* x, const uint16_t* g, float* out, int splits, int N, int H, int W,
                                int C, int Ho, int Wo, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                                int dw) {
  weight_grad<uint16_t>(x, g, out, splits, Shape{N, H, W, C, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw});
}
// g: [N, Ho, Wo, C] (NHWC), wt: [kh * kw, C] fp32, grad_x: [N, H, W, C] written.
void depthwise_input_grad_f32(const float* g, const float* wt, float* gx, int N, int H, int W, int C, int Ho, int Wo,
                              int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw) {
  input_grad<float>(g, wt, gx, Shape{N, H, W, C, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw});
}
void depthwise_input_grad_bf16(const uint16_t* g, const float* wt, uint16_t* gx, int N, int H, int W, int C, int Ho,
                               int Wo, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw) {
  input_grad<uint16_t>(g, wt, gx, Shape{N, H, W, C, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw});
}
}
