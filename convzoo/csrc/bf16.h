// bf16 <-> fp32 for convzoo's CPU kernels: bf16 is the upper half of an fp32, so both ways are bit
// shifts that the compiler vectorises (no torch headers: the kernels compile in about a second).
#pragma once

#include <cstdint>
#include <cstring>

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

}  // namespace convzoo
