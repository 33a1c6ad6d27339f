// The weight and input gradients of a depthwise conv on CPU, for convzoo.ops.depthwise.
//
// grad_w[c, i, j] = sum over n, h, w of x[n, c, h*sh + i*dh - ph, w*sw + j*dw - pw] * g[n, c, h, w]
//
// Every (channel, tap) is a dot product over N*Ho*Wo positions: no GEMM shape exists, and torch's
// kernels (oneDNN bf16 especially) run it at a few GFLOP/s. Here both tensors are NHWC, so 16
// channels are one contiguous vector: a block of 16 channels of one sample is copied into small
// fp32 buffers (the input zero-padded, so no bounds checks remain), and a row's kw tap sums stay
// in registers while the output row is swept. Accumulation is fp32 for fp32 and bf16 inputs.
//
// Plain C ABI (called through ctypes): no torch headers, so it compiles in about a second.

#include <cstdint>
#include <cstring>
#include <vector>

#include "bf16.h"

namespace {

using convzoo::from_float;
using convzoo::kLanes;
using convzoo::load_lanes;
using convzoo::to_float;
using convzoo::Vec;

constexpr int kBlock = 64;  // input gradient: channels per block, four AVX-512 registers of fp32 sums

struct Shape {
  int N, H, W, C, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw;
};

// Copies channels [c0, c0 + width) of one image (NHWC, rows x cols pixels) into buf as fp32 vectors,
// at row offset pad_r and column offset pad_c of a (buf_rows x buf_cols) buffer whose border is zero.
template <typename T>
void load_plane(const T* src, Vec* buf, int rows, int cols, int C, int c0, int width, int buf_cols, int pad_r,
                int pad_c) {
  for (int r = 0; r < rows; ++r)
    for (int q = 0; q < cols; ++q)
      buf[(r + pad_r) * buf_cols + q + pad_c] = load_lanes(src + (int64_t(r) * cols + q) * C + c0, width);
}

// acc[i * kw + j] += sum over h, w of xbuf[h*sh + i*dh][w*sw + j*dw] * gbuf[h][w]. KW > 0 fixes kw
// at compile time, so that the sums of R output rows x KW taps stay in registers while a kernel row
// sweeps the image: R * KW >= 10 independent FMA chains hide the FMA latency (one row of a 5x5
// kernel alone has 5 and runs at half speed).
template <int KW>
void accumulate_taps(const Vec* xbuf, const Vec* gbuf, Vec* acc, int xcols, const Shape& s) {
  if constexpr (KW > 0) {
    constexpr int R = KW <= 3 ? 4 : 2;
    for (int i = 0; i < s.kh; ++i) {
      Vec sum[R][KW] = {};
      int h = 0;
      for (; h + R <= s.Ho; h += R) {
        for (int w = 0; w < s.Wo; ++w) {
          for (int r = 0; r < R; ++r) {
            const Vec g = gbuf[(h + r) * s.Wo + w];
            const Vec* xp = xbuf + ((h + r) * s.sh + i * s.dh) * xcols + w * s.sw;
            for (int j = 0; j < KW; ++j) sum[r][j] += xp[j * s.dw] * g;
          }
        }
      }
      for (; h < s.Ho; ++h) {  // the rows left over
        for (int w = 0; w < s.Wo; ++w) {
          const Vec g = gbuf[h * s.Wo + w];
          const Vec* xp = xbuf + (h * s.sh + i * s.dh) * xcols + w * s.sw;
          for (int j = 0; j < KW; ++j) sum[0][j] += xp[j * s.dw] * g;
        }
      }
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < KW; ++j) acc[i * KW + j] += sum[r][j];
    }
  } else {
    for (int i = 0; i < s.kh; ++i) {
      for (int j = 0; j < s.kw; ++j) {
        Vec one = {};
        for (int h = 0; h < s.Ho; ++h) {
          const Vec* grow = gbuf + h * s.Wo;
          const Vec* xrow = xbuf + (h * s.sh + i * s.dh) * xcols + j * s.dw;
          for (int w = 0; w < s.Wo; ++w) one += xrow[w * s.sw] * grow[w];
        }
        acc[i * s.kw + j] += one;
      }
    }
  }
}

// out[split, c, tap] (taps = kh * kw) and out[split, c, taps] (the bias gradient): sums over the
// split's samples; the caller adds up the splits. Each split is one task, which takes its samples
// one at a time and, for each, every 16-channel block in turn: it copies the block of the sample's
// input (zero-padded) and output gradient into fp32 buffers, then accumulates. Going through all
// blocks of a sample before the next one reads each cache line of the tensors from memory once;
// the other blocks of the line come from the core's cache (a task per block instead fetched every
// line once per block sharing it, and that was most of the kernel's time).
template <typename T>
void weight_grad(const T* x, const T* g, float* out, int splits, const Shape& s) {
  const int blocks = (s.C + kLanes - 1) / kLanes;
  const int taps = s.kh * s.kw;
  const int xrows = (s.Ho - 1) * s.sh + (s.kh - 1) * s.dh + 1;  // padded rows and columns read
  const int xcols = (s.Wo - 1) * s.sw + (s.kw - 1) * s.dw + 1;
  const int rows = s.H < xrows - s.ph ? s.H : xrows - s.ph;  // input rows that land in the buffer
  const int cols = s.W < xcols - s.pw ? s.W : xcols - s.pw;
#pragma omp parallel for schedule(dynamic)
  for (int split = 0; split < splits; ++split) {
    std::vector<Vec> xbuf(size_t(xrows) * xcols), gbuf(size_t(s.Ho) * s.Wo), acc(size_t(blocks) * (taps + 1));
    for (auto& v : xbuf) v = Vec{};
    for (auto& v : acc) v = Vec{};
    const int n0 = int(int64_t(s.N) * split / splits), n1 = int(int64_t(s.N) * (split + 1) / splits);
    for (int n = n0; n < n1; ++n) {
      for (int b = 0; b < blocks; ++b) {
        const int c0 = b * kLanes;
        const int width = s.C - c0 < kLanes ? s.C - c0 : kLanes;
        Vec* block_acc = acc.data() + size_t(b) * (taps + 1);
        // rows/cols beyond the buffer are never read (stride overhang); the border stays zero
        for (int r = 0; r < rows; ++r)
          load_plane(x + (int64_t(n) * s.H + r) * s.W * s.C, xbuf.data(), 1, cols, s.C, c0, width, xcols,
                     r + s.ph, s.pw);
        load_plane(g + int64_t(n) * s.Ho * s.Wo * s.C, gbuf.data(), s.Ho, s.Wo, s.C, c0, width, s.Wo, 0, 0);
        switch (s.kw) {
          case 3: accumulate_taps<3>(xbuf.data(), gbuf.data(), block_acc, xcols, s); break;
          case 5: accumulate_taps<5>(xbuf.data(), gbuf.data(), block_acc, xcols, s); break;
          case 7: accumulate_taps<7>(xbuf.data(), gbuf.data(), block_acc, xcols, s); break;
          case 9: accumulate_taps<9>(xbuf.data(), gbuf.data(), block_acc, xcols, s); break;
          default: accumulate_taps<0>(xbuf.data(), gbuf.data(), block_acc, xcols, s);
        }
        Vec bias[4] = {};  // four independent sums: one would wait on the add's latency at every pixel
        int p = 0;
        for (; p + 4 <= s.Ho * s.Wo; p += 4)
          for (int k = 0; k < 4; ++k) bias[k] += gbuf[p + k];
        for (; p < s.Ho * s.Wo; ++p) bias[0] += gbuf[p];
        block_acc[taps] += (bias[0] + bias[1]) + (bias[2] + bias[3]);
      }
    }
    float* o = out + int64_t(split) * s.C * (taps + 1);
    for (int c = 0; c < s.C; ++c)
      for (int t = 0; t <= taps; ++t) o[int64_t(c) * (taps + 1) + t] = acc[size_t(c / kLanes) * (taps + 1) + t][c % kLanes];
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
// x: [N, H, W, C] contiguous (NHWC), g: [N, Ho, Wo, C], out: [splits, C, kh * kw + 1] fp32 (the last: bias).
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
