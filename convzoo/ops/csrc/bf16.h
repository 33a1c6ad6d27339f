// bf16 <-> fp32 for convzoo's CPU kernels: bf16 is the upper half of an fp32, so both ways are bit
// shifts that the compiler vectorises (no torch headers: the kernels compile in about a second).
// Scalars (to_float, from_float) and vectors (load_lanes, store_lanes) round the same way.
#pragma once

#include <cstdint>
#include <cstring>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace convzoo {

inline float to_float(float v) { return v; }
inline float to_float(uint16_t bf16) {
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
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  return uint16_t((bits & 0x7fffffffu) > 0x7f800000u ? (bits >> 16) | 0x40 : rounded);  // NaN stays NaN
}

// One vector register of fp32 lanes (16 with AVX-512, 8 with AVX2, else 4), as a GCC/Clang vector
// type: portable code with none of the guesswork of auto-vectorisation (which picks 32 lanes for a
// loop that loads bf16, and then runs a 144-channel row's last 16 channels one by one). Never wider
// than the machine's registers: GCC splits a wider type through memory, ten times slower.
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef uint32_t Bits __attribute__((vector_size(kLanes * sizeof(uint32_t))));
typedef int32_t Ints __attribute__((vector_size(kLanes * sizeof(int32_t))));  // also what comparing Vecs gives
typedef uint16_t Bf16s __attribute__((vector_size(kLanes * sizeof(uint16_t))));
// The same, at any address of their elements. Not memcpy: a memcpy may write anything, so after
// each one the compiler would reload every pointer and value the loop keeps.
typedef float UnalignedVec __attribute__((vector_size(kLanes * sizeof(float)), aligned(alignof(float))));
typedef uint16_t UnalignedBf16s __attribute__((vector_size(kLanes * sizeof(uint16_t)), aligned(alignof(uint16_t))));

[[gnu::always_inline]] inline Vec splat(float f) { return Vec{} + f; }

// Elements [0, kLanes) of p as fp32 lanes. bf16: one vector load, a widening and a shift.
[[gnu::always_inline]] inline Vec load_lanes(const float* p) { return *reinterpret_cast<const UnalignedVec*>(p); }
[[gnu::always_inline]] inline Vec load_lanes(const uint16_t* p) {
#if defined(__AVX512F__)  // one widening load: GCC 12 splits __builtin_convertvector's into four instructions
  return (Vec)_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16);
#else
  return (Vec)(__builtin_convertvector(*reinterpret_cast<const UnalignedBf16s*>(p), Bits) << 16);
#endif
}

// v's lanes rounded to bf16 (as from_float rounds), each in the low half of its lane.
[[gnu::always_inline]] inline Bits bf16_bits(Vec v) {
  const Bits bits = (Bits)v;
  const Bits rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  return (bits & 0x7fffffffu) > 0x7f800000u ? (bits >> 16) | 0x40u : rounded;  // NaN stays NaN
}

// Stores v at p in T and returns what was stored, read back as fp32.
[[gnu::always_inline]] inline Vec store_lanes(float* p, Vec v) {
  *reinterpret_cast<UnalignedVec*>(p) = v;
  return v;
}
[[gnu::always_inline]] inline Vec store_lanes(uint16_t* p, Vec v) {
  const Bits bf16 = bf16_bits(v);
#if defined(__AVX512F__)  // one narrowing store, as above
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16((__m512i)bf16));
#else
  *reinterpret_cast<UnalignedBf16s*>(p) = __builtin_convertvector(bf16, Bf16s);
#endif
  return (Vec)(bf16 << 16);
}

// The same for the first width (< kLanes) elements, zero lanes beyond: a row's last, partial block.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)  // masked loads and stores
[[gnu::always_inline]] inline __mmask16 first_lanes(int width) { return __mmask16((1u << width) - 1); }
[[gnu::always_inline]] inline Vec load_partial(const float* p, int width) {
  return _mm512_maskz_loadu_ps(first_lanes(width), p);
}
[[gnu::always_inline]] inline Vec load_partial(const uint16_t* p, int width) {
  return (Vec)_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(first_lanes(width), p)), 16);
}
[[gnu::always_inline]] inline Vec store_partial(float* p, Vec v, int width) {
  _mm512_mask_storeu_ps(p, first_lanes(width), v);
  return v;
}
[[gnu::always_inline]] inline Vec store_partial(uint16_t* p, Vec v, int width) {
  const Bits bf16 = bf16_bits(v);
  _mm256_mask_storeu_epi16(p, first_lanes(width), _mm512_cvtepi32_epi16((__m512i)bf16));
  return (Vec)(bf16 << 16);
}
#else  // through a buffer, out of line, so that the whole blocks' values stay in registers
template <typename T>
[[gnu::noinline]] Vec load_partial(const T* p, int width) {
  T buffer[kLanes] = {};
  std::memcpy(buffer, p, sizeof(T) * width);
  return load_lanes(buffer);
}
template <typename T>
[[gnu::noinline]] Vec store_partial(T* p, Vec v, int width) {
  T buffer[kLanes];
  v = store_lanes(buffer, v);
  std::memcpy(p, buffer, sizeof(T) * width);
  return v;
}
#endif

template <typename T>
[[gnu::always_inline]] inline Vec load_lanes(const T* p, int width) {
  return width == kLanes ? load_lanes(p) : load_partial(p, width);
}
template <typename T>
[[gnu::always_inline]] inline Vec store_lanes(T* p, Vec v, int width) {
  return width == kLanes ? store_lanes(p, v) : store_partial(p, v, width);
}

}  // namespace convzoo
