// half.h — scalar conversions between fp32 and the two 16-bit storage types, bf16 and IEEE
// binary16 (fp16). The kernels that read half-precision tensors and the public fa_convert use
// these, so every path rounds the same way:
// - half → fp32 is exact (every bf16 and fp16 value is a float);
// - fp32 → half rounds to nearest, ties to even; values past the largest finite half become
//   ±inf; fp16 subnormals are produced (and rounded) exactly;
// - NaN stays NaN, quiet, with its sign and the top bits of its payload.
#ifndef FA_HALF_H
#define FA_HALF_H
#include <stdint.h>
#include <string.h>

static inline uint32_t fa_float_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

static inline float fa_bits_float(uint32_t x) {
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

static inline float fa_bf16_to_f32(uint16_t h) { return fa_bits_float((uint32_t)h << 16); }

static inline uint16_t fa_f32_to_bf16(float f) {
    const uint32_t x = fa_float_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x0040u);  // quiet NaN
    // Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even; a carry out of
    // the mantissa moves into the exponent, and past the largest finite value into inf.
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

static inline float fa_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (exp == 0x1F) return fa_bits_float(sign | 0x7F800000u | (mant << 13));  // inf, NaN
    if (exp != 0) return fa_bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
    // Zero or subnormal: mant · 2⁻²⁴, exact in fp32.
    const float m = (float)mant * 0x1p-24f;
    return sign ? -m : m;
}

static inline uint16_t fa_f32_to_f16(float f) {
    const uint32_t x = fa_float_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));  // NaN
    // 65520 = 65504 + half an ulp: a tie, and 65504's mantissa is odd, so it rounds up to inf.
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);
    if (ax >= 0x38800000u)  // ≥ 2⁻¹⁴: normal; rebias the exponent, round off 13 bits
        return (uint16_t)(sign | ((ax - (112u << 23) + 0xFFFu + ((ax >> 13) & 1u)) >> 13));
    if (ax <= 0x33000000u) return sign;  // ≤ 2⁻²⁵ (a tie with 0 at 2⁻²⁵): ±0
    // Subnormal: |f| = m · 2^(e − 150) = (m >> (126 − e)) units of 2⁻²⁴, rounded to even
    // (a result of 0x400 is the smallest normal, encoded correctly by the same bits).
    const uint32_t e = ax >> 23, m = (ax & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14 … 24
    const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    return (uint16_t)(sign | (q + (rem > half || (rem == half && (q & 1u)))));
}

#endif
