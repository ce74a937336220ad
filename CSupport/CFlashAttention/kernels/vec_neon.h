// vec_neon.h — the thin vector layer over AArch64 NEON (Advanced SIMD, ARMv8.0: present on every
// ARM64 CPU), for the kernel sources written once and compiled per ISA (tile_kernels.h,
// row_kernels.h). A vector is 8 floats in two 128-bit registers, so VF_W and the tile shapes
// are AVX2's: 32 NEON registers hold what AVX2's 16 ymm registers hold, and the kernels'
// register budgets (vec_avx2.h) carry over unchanged. NEON has no masked loads or stores:
// partial vectors go through a small stack copy, which never touches memory past the n lanes.
// Maxima and horizontal sums use the portable layer's association and NaN handling (a > b ?
// a : b), so this path agrees with vec_portable.h on them.
#ifndef FA_VEC_NEON_H
#define FA_VEC_NEON_H
#include <arm_neon.h>
#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include "microkernel.h"

typedef struct vf { float32x4_t lo, hi; } vf;
/// A lane predicate (all-ones lanes), and a "first n lanes" one for loads and stores (n).
typedef struct vm { uint32x4_t lo, hi; } vm;
typedef int vtail;
/// Row-tile register blocking (row_kernels.h), as AVX2's.
#define VF_SCORES_R 4
#define VF_SCORES_K 1
#define VF_PV_R 2
#define VF_PV_V 4
#define VF_QREG 0
/// Key-major register tiles (tile_kernels.h), as AVX2's: scores 6 keys × 2 query vectors
/// (24 of the 32 q registers as accumulators, 4 for the query vectors, 2 for a broadcast key),
/// P·V and gemm 6 rows × 2 vectors.
#define TILE_ST_K 6
#define TILE_ST_Q 2
#define TILE_ST_K1 12
#define TILE_PV_R 6
#define TILE_PV_V 2
#define TILE_PV_LAST_R 6
#define TILE_SOFTMAX_CHAINS 2
enum { VF_W = 8 };
#ifdef VF_EXTRA_TARGET  // neon_bf16.c: the same kernels with more instructions allowed
#define VF_FN __attribute__((target(VF_EXTRA_TARGET)))
#define VF_INLINE static inline __attribute__((always_inline)) VF_FN
#else
#define VF_FN
#define VF_INLINE static inline __attribute__((always_inline))
#endif

#define VF_BOTH(op) ((vf){op(a.lo, b.lo), op(a.hi, b.hi)})

// Lane indices 0…3 and 4…7, for "first n lanes" predicates.
VF_INLINE vm first_lanes(int n) {
    const int32x4_t lo = {0, 1, 2, 3}, hi = {4, 5, 6, 7};
    const int32x4_t nn = vdupq_n_s32(n);
    return (vm){vcltq_s32(lo, nn), vcltq_s32(hi, nn)};
}

// p(f) · 2^n for x = n + f, n = round(x) (ties to even), |f| ≤ 0.5; 2^n built in the
// exponent bits, so callers keep x in [FA_EXP2_MIN, 127.5).
VF_INLINE float32x4_t exp2_scaled4(float32x4_t xc) {
    const float32x4_t n = vrndnq_f32(xc);
    const float32x4_t f = vsubq_f32(xc, n);
    float32x4_t p = vdupq_n_f32(FA_EXP2_C6);
    p = vfmaq_f32(vdupq_n_f32(FA_EXP2_C5), p, f);
    p = vfmaq_f32(vdupq_n_f32(FA_EXP2_C4), p, f);
    p = vfmaq_f32(vdupq_n_f32(FA_EXP2_C3), p, f);
    p = vfmaq_f32(vdupq_n_f32(FA_EXP2_C2), p, f);
    p = vfmaq_f32(vdupq_n_f32(FA_EXP2_C1), p, f);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, f);
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

// x where it is NaN or ≥ lo, else lo (NaN stays NaN).
VF_INLINE float32x4_t clamp_below4(float32x4_t x, float lo) {
    const float32x4_t l = vdupq_n_f32(lo);
    return vbslq_f32(vcltq_f32(x, l), l, x);
}

// v in the lanes of m, 0 elsewhere.
VF_INLINE float32x4_t keep4(uint32x4_t m, float32x4_t v) {
    return vreinterpretq_f32_u32(vandq_u32(m, vreinterpretq_u32_f32(v)));
}

// 2^x for the softmax's exponents (≤ 0, −inf or NaN): lanes below FA_EXP2_MIN exactly 0, NaN
// kept. Bitwise equal to exp2_any4 for every x < 128 that is not NaN.
VF_INLINE float32x4_t exp2_nonpositive4(float32x4_t x) {
    const uint32x4_t live = vmvnq_u32(vcltq_f32(x, vdupq_n_f32(FA_EXP2_MIN)));  // NaN: live
    return keep4(live, exp2_scaled4(clamp_below4(x, FA_EXP2_MIN)));
}

// 2^x for any x: lanes below FA_EXP2_MIN are exactly 0, x ≥ 128 is +inf, NaN stays NaN.
VF_INLINE float32x4_t exp2_any4(float32x4_t x) {
    const uint32x4_t live = vmvnq_u32(vcltq_f32(x, vdupq_n_f32(FA_EXP2_MIN)));
    float32x4_t xc = clamp_below4(x, FA_EXP2_MIN);
    // x in [127.5, 128) rounds to n = 128, past the exponent field: 2^(x−1) · 2 instead.
    const uint32x4_t top = vcgeq_f32(x, vdupq_n_f32(127.5f));
    xc = vbslq_f32(top, vsubq_f32(xc, vdupq_n_f32(1.0f)), xc);
    float32x4_t r = exp2_scaled4(xc);
    r = vbslq_f32(top, vaddq_f32(r, r), r);
    r = vbslq_f32(vcgeq_f32(x, vdupq_n_f32(128.0f)), vdupq_n_f32(INFINITY), r);
    r = vbslq_f32(vceqq_f32(x, x), r, x);  // NaN lanes: x itself
    return keep4(live, r);
}

VF_INLINE vf vf_zero(void) { return (vf){vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
VF_INLINE vf vf_set1(float x) { return (vf){vdupq_n_f32(x), vdupq_n_f32(x)}; }
VF_INLINE vf vf_loadu(const float *p) { return (vf){vld1q_f32(p), vld1q_f32(p + 4)}; }
/// The first n (0…8) floats at p, `fill` in the other lanes (nothing past them is read).
VF_INLINE vf vf_load_first_or(const float *p, int n, float fill) {
    float t[8] = {fill, fill, fill, fill, fill, fill, fill, fill};
    for (int l = 0; l < n; l++) t[l] = p[l];
    return vf_loadu(t);
}
VF_INLINE void vf_storeu(float *p, vf v) {
    vst1q_f32(p, v.lo);
    vst1q_f32(p + 4, v.hi);
}
VF_INLINE void vf_store_first(float *p, vf v, int n) {
    float t[8];
    vf_storeu(t, v);
    for (int l = 0; l < n; l++) p[l] = t[l];
}
/// a·b + c, fused.
VF_INLINE vf vf_fma(vf a, vf b, vf c) { return (vf){vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)}; }
VF_INLINE vf vf_add(vf a, vf b) { return VF_BOTH(vaddq_f32); }
VF_INLINE vf vf_sub(vf a, vf b) { return VF_BOTH(vsubq_f32); }
VF_INLINE vf vf_mul(vf a, vf b) { return VF_BOTH(vmulq_f32); }
/// a > b ? a : b, lane by lane (b when either is NaN), as the portable layer.
VF_INLINE vf vf_max(vf a, vf b) {
    return (vf){vbslq_f32(vcgtq_f32(a.lo, b.lo), a.lo, b.lo), vbslq_f32(vcgtq_f32(a.hi, b.hi), a.hi, b.hi)};
}
/// ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)): the portable layer's association.
VF_INLINE float vf_hsum(vf v) {
    const float32x4_t s = vaddq_f32(v.lo, v.hi);           // v0+v4, v1+v5, v2+v6, v3+v7
    const float32x4_t t = vaddq_f32(s, vextq_f32(s, s, 2));  // (v0+v4)+(v2+v6), (v1+v5)+(v3+v7), …
    return vgetq_lane_f32(t, 0) + vgetq_lane_f32(t, 1);
}
/// The largest lane, scanning from lane 0 with m = v > m ? v : m (the portable layer's).
VF_INLINE float vf_hmax(vf v) {
    float t[8];
    vf_storeu(t, v);
    float m = t[0];
    for (int l = 1; l < 8; l++) m = t[l] > m ? t[l] : m;
    return m;
}
VF_INLINE void vf_hsum4(vf a, vf b, vf c, vf d, float out[4]) {
    out[0] = vf_hsum(a);
    out[1] = vf_hsum(b);
    out[2] = vf_hsum(c);
    out[3] = vf_hsum(d);
}
VF_INLINE vf vf_exp2(vf x) { return (vf){exp2_nonpositive4(x.lo), exp2_nonpositive4(x.hi)}; }
VF_INLINE float vf_first(vf v) { return vgetq_lane_f32(v.lo, 0); }

// ---- half-precision elements, widened exactly as they are loaded ----
/// The first n (0…8) 16-bit elements at p, 0 in the other lanes (nothing past them is read).
VF_INLINE uint16x8_t first_halves(const uint16_t *p, int n) {
    uint16_t t[8] = {0};
    for (int l = 0; l < n; l++) t[l] = p[l];
    return vld1q_u16(t);
}
VF_INLINE vf f16_widen(uint16x8_t h) {
    const float16x8_t x = vreinterpretq_f16_u16(h);
    return (vf){vcvt_f32_f16(vget_low_f16(x)), vcvt_high_f32_f16(x)};
}
VF_INLINE vf bf16_widen(uint16x8_t h) {
    return (vf){vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)),
                vreinterpretq_f32_u32(vshll_high_n_u16(h, 16))};
}
VF_INLINE vf vf_load_f16(const uint16_t *p) { return f16_widen(vld1q_u16(p)); }
VF_INLINE vf vf_load_f16_first(const uint16_t *p, int n) { return f16_widen(first_halves(p, n)); }
VF_INLINE vf vf_load_bf16(const uint16_t *p) { return bf16_widen(vld1q_u16(p)); }
VF_INLINE vf vf_load_bf16_first(const uint16_t *p, int n) { return bf16_widen(first_halves(p, n)); }

/// 2·VF_W bf16 elements at p split by parity, as floats (exact): even = elements 0, 2, …,
/// odd = 1, 3, …: each 32-bit word holds an (even, odd) pair, little-endian.
VF_INLINE void vf_load_bf16_split(const uint16_t *p, vf *even, vf *odd) {
    const uint32_t *w = (const uint32_t *)(const void *)p;
    const uint32x4_t a = vld1q_u32(w), b = vld1q_u32(w + 4);
    const uint32x4_t high = vdupq_n_u32(0xFFFF0000u);
    *even = (vf){vreinterpretq_f32_u32(vshlq_n_u32(a, 16)), vreinterpretq_f32_u32(vshlq_n_u32(b, 16))};
    *odd = (vf){vreinterpretq_f32_u32(vandq_u32(a, high)), vreinterpretq_f32_u32(vandq_u32(b, high))};
}
/// 2·VF_W floats (a, then b) split by parity, and back.
VF_INLINE void vf_split_parity(vf a, vf b, vf *even, vf *odd) {
    *even = (vf){vuzp1q_f32(a.lo, a.hi), vuzp1q_f32(b.lo, b.hi)};
    *odd = (vf){vuzp2q_f32(a.lo, a.hi), vuzp2q_f32(b.lo, b.hi)};
}
VF_INLINE void vf_merge_parity(vf even, vf odd, vf *a, vf *b) {
    *a = (vf){vzip1q_f32(even.lo, odd.lo), vzip2q_f32(even.lo, odd.lo)};
    *b = (vf){vzip1q_f32(even.hi, odd.hi), vzip2q_f32(even.hi, odd.hi)};
}

/// 2^x for any x (the table's exp2, the softcap's e^(−2|x|)).
VF_INLINE vf vf_exp2_any(vf x) { return (vf){exp2_any4(x.lo), exp2_any4(x.hi)}; }

// ---- lane predicates, tails, and what the key-major tiles need besides arithmetic ----
VF_INLINE vtail vf_tail(int n) { return n; }
/// The first t lanes from p (zero elsewhere; nothing past them is touched); stores them only.
VF_INLINE vf vf_load_tail(const float *p, vtail t) { return vf_load_first_or(p, t, 0.0f); }
VF_INLINE void vf_store_tail(float *p, vf v, vtail t) { vf_store_first(p, v, t); }
/// v in the first t lanes, 0 in the others.
VF_INLINE vf vf_zero_past(vf v, vtail t) {
    const vm m = first_lanes(t);
    return (vf){keep4(m.lo, v.lo), keep4(m.hi, v.hi)};
}
VF_INLINE vm vf_eq(vf a, vf b) { return (vm){vceqq_f32(a.lo, b.lo), vceqq_f32(a.hi, b.hi)}; }
/// Not equal, or unordered.
VF_INLINE vm vf_neq(vf a, vf b) {
    return (vm){vmvnq_u32(vceqq_f32(a.lo, b.lo)), vmvnq_u32(vceqq_f32(a.hi, b.hi))};
}
VF_INLINE vm vf_lt(vf a, vf b) { return (vm){vcltq_f32(a.lo, b.lo), vcltq_f32(a.hi, b.hi)}; }
VF_INLINE vm vf_or_mask(vm a, vm b) { return (vm){vorrq_u32(a.lo, b.lo), vorrq_u32(a.hi, b.hi)}; }
/// m ? b : a, lane by lane.
VF_INLINE vf vf_select(vm m, vf a, vf b) { return (vf){vbslq_f32(m.lo, b.lo, a.lo), vbslq_f32(m.hi, b.hi, a.hi)}; }
/// m ? a : 0.
VF_INLINE vf vf_zero_unless(vm m, vf a) { return (vf){keep4(m.lo, a.lo), keep4(m.hi, a.hi)}; }
/// `fill` in the lanes outside [f, l) (0 ≤ f, l ≤ VF_W), v inside.
VF_INLINE vf vf_fill_outside(vf v, int f, int l, float fill) {
    const vm below = first_lanes(f), inside_end = first_lanes(l);
    const uint32x4_t out_lo = vorrq_u32(below.lo, vmvnq_u32(inside_end.lo));
    const uint32x4_t out_hi = vorrq_u32(below.hi, vmvnq_u32(inside_end.hi));
    const float32x4_t x = vdupq_n_f32(fill);
    return (vf){vbslq_f32(out_lo, x, v.lo), vbslq_f32(out_hi, x, v.hi)};
}
VF_INLINE vf vf_div(vf a, vf b) { return VF_BOTH(vdivq_f32); }
/// c − a·b, fused.
VF_INLINE vf vf_fnma(vf a, vf b, vf c) { return (vf){vfmsq_f32(c.lo, a.lo, b.lo), vfmsq_f32(c.hi, a.hi, b.hi)}; }
VF_INLINE vf vf_abs(vf x) { return (vf){vabsq_f32(x.lo), vabsq_f32(x.hi)}; }
/// |mag| with the sign of x, for mag ≥ 0 (+0 included): mag | sign(x).
VF_INLINE vf vf_with_sign_of(vf mag, vf x) {
    const uint32x4_t sign = vdupq_n_u32(0x80000000u);
    return (vf){vbslq_f32(sign, x.lo, mag.lo), vbslq_f32(sign, x.hi, mag.hi)};
}
/// |base + lane| as floats, computed exactly in 32-bit integers (ALiBi distances); |INT32_MIN|
/// is 2³¹, as in the portable layer.
VF_INLINE vf vf_abs_lane_offset(int32_t base) {
    const int32x4_t lo = {0, 1, 2, 3}, hi = {4, 5, 6, 7};
    const int32x4_t b = vdupq_n_s32(base);
    return (vf){vcvtq_f32_u32(vreinterpretq_u32_s32(vabsq_s32(vaddq_s32(b, lo)))),
                vcvtq_f32_u32(vreinterpretq_u32_s32(vabsq_s32(vaddq_s32(b, hi))))};
}
/// A bool mask's first n (1…8) bytes at p as what they add to scores: 0 where nonzero, −inf
/// where 0; −inf in the lanes from n on (nothing past the n bytes is read).
VF_INLINE vf vf_bool_bytes(const uint8_t *p, int n) {
    uint8_t t[8] = {0};
    for (int l = 0; l < n; l++) t[l] = p[l];
    const uint16x8_t w = vmovl_u8(vld1_u8(t));
    const uint32x4_t zero = vdupq_n_u32(0);
    const uint32x4_t off_lo = vceqq_u32(vmovl_u16(vget_low_u16(w)), zero);
    const uint32x4_t off_hi = vceqq_u32(vmovl_high_u16(w), zero);
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    return (vf){keep4(off_lo, ninf), keep4(off_hi, ninf)};
}
// In place: a 4 × 4 transpose of four rows.
VF_INLINE void transpose4(float32x4_t *a, float32x4_t *b, float32x4_t *c, float32x4_t *d) {
    const float32x4_t ab0 = vtrn1q_f32(*a, *b), ab1 = vtrn2q_f32(*a, *b);
    const float32x4_t cd0 = vtrn1q_f32(*c, *d), cd1 = vtrn2q_f32(*c, *d);
    *a = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(ab0), vreinterpretq_f64_f32(cd0)));
    *b = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(ab1), vreinterpretq_f64_f32(cd1)));
    *c = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(ab0), vreinterpretq_f64_f32(cd0)));
    *d = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(ab1), vreinterpretq_f64_f32(cd1)));
}
/// In place: r[c] lane i ← r[i] lane c (an 8 × 8 transpose, as four 4 × 4 blocks).
VF_INLINE void vf_transpose(vf r[VF_W]) {
    float32x4_t a[4] = {r[0].lo, r[1].lo, r[2].lo, r[3].lo}, b[4] = {r[0].hi, r[1].hi, r[2].hi, r[3].hi};
    float32x4_t c[4] = {r[4].lo, r[5].lo, r[6].lo, r[7].lo}, d[4] = {r[4].hi, r[5].hi, r[6].hi, r[7].hi};
    transpose4(&a[0], &a[1], &a[2], &a[3]);  // rows 0–3, columns 0–3
    transpose4(&b[0], &b[1], &b[2], &b[3]);  // rows 0–3, columns 4–7
    transpose4(&c[0], &c[1], &c[2], &c[3]);  // rows 4–7, columns 0–3
    transpose4(&d[0], &d[1], &d[2], &d[3]);  // rows 4–7, columns 4–7
    for (int k = 0; k < 4; k++) {
        r[k] = (vf){a[k], c[k]};
        r[4 + k] = (vf){b[k], d[k]};
    }
}
#undef VF_BOTH

#endif
