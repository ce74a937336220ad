// vec_avx2.h — the thin vector layer over AVX2 + FMA (8 floats, 16 registers), for the kernel
// sources written once and compiled per ISA (tile_kernels.h, row_kernels.h). Tails use
// vmaskmov loads and stores, which never touch masked-out memory.
#ifndef FA_VEC_AVX2_H
#define FA_VEC_AVX2_H
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include "microkernel.h"

typedef __m256 vf;
/// A lane predicate (all-ones lanes, for blendv) and a "first n lanes" one for vmaskmov.
typedef __m256 vm;
typedef __m256i vtail;
/// Row-tile register blocking (row_kernels.h): scores rows × keys, P·V rows × vectors.
#define VF_SCORES_R 4
#define VF_SCORES_K 1
#define VF_PV_R 2
#define VF_PV_V 4
/// Query vectors per row the scores tile keeps in registers: none — 16 registers cannot hold
/// four rows of a useful head dim, so the queries are loaded for every key.
#define VF_QREG 0
/// Key-major register tiles (tile_kernels.h), sized for 16 registers: scores 6 keys × 2 query
/// vectors (12 accumulators, 2 query vectors and a broadcast key: 15 registers, so nothing
/// spills; 12 keys against a lone query vector), P·V and gemm 6 rows × 2 vectors (12
/// accumulators, 2 value vectors and a broadcast). A 12-accumulator tile with 3 loaded
/// vectors (4 × 24) needs all 16, and the compiler then spilled an accumulator in the loop.
#define TILE_ST_K 6
#define TILE_ST_Q 2
#define TILE_ST_K1 12
#define TILE_PV_R 6
#define TILE_PV_V 2
#define TILE_PV_LAST_R 6
#define TILE_SOFTMAX_CHAINS 2
enum { VF_W = 8 };
#define VF_FN __attribute__((target("avx2,fma,f16c")))
#define VF_INLINE static inline __attribute__((always_inline)) VF_FN

// A lane mask with the first `n` (0…8) lanes set, for vmaskmov.
VF_INLINE __m256i first_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// p(f) · 2^n for x = n + f, n = round(x), |f| ≤ 0.5; 2^n is built in the exponent bits, so
// callers keep x in [FA_EXP2_MIN, 127.5) (n in −126 … 127).
VF_INLINE __m256 exp2_scaled(__m256 xc) {
    const __m256 n = _mm256_round_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(xc, n);
    __m256 p = _mm256_set1_ps(FA_EXP2_C6);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(FA_EXP2_C5));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(FA_EXP2_C4));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(FA_EXP2_C3));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(FA_EXP2_C2));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(FA_EXP2_C1));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// 2^x for any x: lanes below FA_EXP2_MIN are exactly 0, x ≥ 128 is +inf, NaN stays NaN.
VF_INLINE __m256 exp2_ps(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(FA_EXP2_MIN), _CMP_NLT_UQ);
    __m256 xc = _mm256_max_ps(x, _mm256_set1_ps(FA_EXP2_MIN));  // keep n in range
    // x in [127.5, 128) rounds to n = 128, past the exponent field: 2^(x−1) · 2 instead.
    const __m256 top = _mm256_cmp_ps(x, _mm256_set1_ps(127.5f), _CMP_GE_OQ);
    xc = _mm256_blendv_ps(xc, _mm256_sub_ps(xc, _mm256_set1_ps(1.0f)), top);
    __m256 r = exp2_scaled(xc);
    r = _mm256_blendv_ps(r, _mm256_add_ps(r, r), top);
    const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(128.0f), _CMP_GE_OQ);
    const __m256 out = _mm256_blendv_ps(r, _mm256_set1_ps(INFINITY), big);
    // NaN lanes: x is unordered, live is set, and xc = max(NaN, −126) is −126: restore NaN.
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_and_ps(_mm256_blendv_ps(out, x, nan), live);
}

// 2^x for the softmax, whose exponents are ≤ 0 (s − m with m ≥ s), −inf or NaN: exp2_ps
// without the x ≥ 128 branch, and NaN kept by the operand order of vmaxps (it returns its
// second operand when either is NaN), so NaN flows through the arithmetic and the live mask
// (unordered compares as live). Bitwise equal to exp2_ps for every x < 128 that is not NaN.
VF_INLINE __m256 exp2_nonpositive_ps(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(FA_EXP2_MIN), _CMP_NLT_UQ);
    const __m256 xc = _mm256_max_ps(_mm256_set1_ps(FA_EXP2_MIN), x);  // NaN stays NaN
    return _mm256_and_ps(exp2_scaled(xc), live);
}

VF_INLINE vf vf_zero(void) { return _mm256_setzero_ps(); }
VF_INLINE vf vf_set1(float x) { return _mm256_set1_ps(x); }
VF_INLINE vf vf_loadu(const float *p) { return _mm256_loadu_ps(p); }
/// The first n (0…8) floats at p, `fill` in the other lanes (vmaskmov never touches them).
VF_INLINE vf vf_load_first_or(const float *p, int n, float fill) {
    const __m256i m = first_lanes(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
VF_INLINE void vf_storeu(float *p, vf v) { _mm256_storeu_ps(p, v); }
VF_INLINE void vf_store_first(float *p, vf v, int n) { _mm256_maskstore_ps(p, first_lanes(n), v); }
VF_INLINE vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
VF_INLINE vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
VF_INLINE vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
VF_INLINE vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
VF_INLINE vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
VF_INLINE float vf_hsum(vf v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}
VF_INLINE float vf_hmax(vf v) {
    __m128 q = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_max_ps(q, _mm_movehl_ps(q, q));
    q = _mm_max_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}
/// The sums of four vectors' lanes into out[0…3], each with exactly vf_hsum's association
/// (halves, then pairs), done for the four at once.
VF_INLINE void vf_hsum4(vf a, vf b, vf c, vf d, float out[4]) {
    // [a_lo + a_hi | b_lo + b_hi], [c_lo + c_hi | d_lo + d_hi]
    const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    __m256 x = _mm256_add_ps(ab, _mm256_permute_ps(ab, 0x4E));
    x = _mm256_add_ps(x, _mm256_permute_ps(x, 0xB1));
    __m256 y = _mm256_add_ps(cd, _mm256_permute_ps(cd, 0x4E));
    y = _mm256_add_ps(y, _mm256_permute_ps(y, 0xB1));
    out[0] = _mm256_cvtss_f32(x);
    out[1] = _mm_cvtss_f32(_mm256_extractf128_ps(x, 1));
    out[2] = _mm256_cvtss_f32(y);
    out[3] = _mm_cvtss_f32(_mm256_extractf128_ps(y, 1));
}
VF_INLINE vf vf_exp2(vf x) { return exp2_nonpositive_ps(x); }
VF_INLINE float vf_first(vf v) { return _mm256_cvtss_f32(v); }

// ---- half-precision elements, widened exactly as they are loaded ----
/// 8 fp16 / bf16 elements at p as floats; the _first variants read only the first n (0…8)
/// (through a zeroed copy: AVX2 has no 16-bit masked load), with 0 in the other lanes.
VF_INLINE __m128i vf_first_halves(const uint16_t *p, int n) {
    uint16_t t[8] = {0};
    for (int k = 0; k < n; k++) t[k] = p[k];
    return _mm_loadu_si128((const __m128i *)t);
}
VF_INLINE vf vf_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
VF_INLINE vf vf_load_f16_first(const uint16_t *p, int n) { return _mm256_cvtph_ps(vf_first_halves(p, n)); }
VF_INLINE vf vf_bf16_bits(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
VF_INLINE vf vf_load_bf16(const uint16_t *p) { return vf_bf16_bits(_mm_loadu_si128((const __m128i *)p)); }
VF_INLINE vf vf_load_bf16_first(const uint16_t *p, int n) { return vf_bf16_bits(vf_first_halves(p, n)); }

/// 2·VF_W bf16 elements at p split by parity, as floats (exact): even = elements 0, 2, …,
/// odd = 1, 3, …. One load and one integer op per 8 values.
VF_INLINE void vf_load_bf16_split(const uint16_t *p, vf *even, vf *odd) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)p);
    *even = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
    *odd = _mm256_castsi256_ps(_mm256_and_si256(x, _mm256_set1_epi32((int)0xFFFF0000u)));
}
/// 2·VF_W floats (a, then b) split by parity, and back.
VF_INLINE void vf_split_parity(vf a, vf b, vf *even, vf *odd) {
    // per 128-bit lane [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit quarters reordered
    const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8));
}
VF_INLINE void vf_merge_parity(vf even, vf odd, vf *a, vf *b) {
    const __m256 e = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xD8));
    const __m256 o = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(odd), 0xD8));
    *a = _mm256_unpacklo_ps(e, o);
    *b = _mm256_unpackhi_ps(e, o);
}

/// 2^x for any x (the table's exp2, the softcap's e^(−2|x|)).
VF_INLINE vf vf_exp2_any(vf x) { return exp2_ps(x); }

// ---- lane predicates, tails, and what the key-major tiles need besides arithmetic ----
VF_INLINE vtail vf_tail(int n) { return first_lanes(n); }
/// Loads the lanes of `t` (zero elsewhere; nothing past them is touched); stores them only.
VF_INLINE vf vf_load_tail(const float *p, vtail t) { return _mm256_maskload_ps(p, t); }
VF_INLINE void vf_store_tail(float *p, vf v, vtail t) { _mm256_maskstore_ps(p, t, v); }
/// v in the lanes of `t`, 0 in the others.
VF_INLINE vf vf_zero_past(vf v, vtail t) { return _mm256_and_ps(_mm256_castsi256_ps(t), v); }
VF_INLINE vm vf_eq(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
/// Not equal, or unordered.
VF_INLINE vm vf_neq(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
VF_INLINE vm vf_lt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
VF_INLINE vm vf_or_mask(vm a, vm b) { return _mm256_or_ps(a, b); }
/// m ? b : a, lane by lane.
VF_INLINE vf vf_select(vm m, vf a, vf b) { return _mm256_blendv_ps(a, b, m); }
/// m ? a : 0.
VF_INLINE vf vf_zero_unless(vm m, vf a) { return _mm256_and_ps(m, a); }
/// `fill` in the lanes outside [f, l) (0 ≤ f, l ≤ VF_W), v inside.
VF_INLINE vf vf_fill_outside(vf v, int f, int l, float fill) {
    const __m256i out = _mm256_or_si256(first_lanes(f), _mm256_xor_si256(first_lanes(l), _mm256_set1_epi32(-1)));
    return _mm256_blendv_ps(v, _mm256_set1_ps(fill), _mm256_castsi256_ps(out));
}
VF_INLINE vf vf_div(vf a, vf b) { return _mm256_div_ps(a, b); }
/// c − a·b, fused.
VF_INLINE vf vf_fnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
VF_INLINE vf vf_abs(vf x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
/// |mag| with the sign of x, for mag ≥ 0 (+0 included): mag | sign(x).
VF_INLINE vf vf_with_sign_of(vf mag, vf x) {
    return _mm256_or_ps(_mm256_and_ps(x, _mm256_set1_ps(-0.0f)), mag);
}
/// |base + lane| as floats, computed exactly in int32 (ALiBi distances).
VF_INLINE vf vf_abs_lane_offset(int32_t base) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cvtepi32_ps(_mm256_abs_epi32(_mm256_add_epi32(lane, _mm256_set1_epi32(base))));
}
/// A bool mask's first n (1…8) bytes at p as what they add to scores: 0 where nonzero, −inf
/// where 0; −inf in the lanes from n on. Short runs are read byte by byte (an 8-byte load
/// could run past the mask's end).
VF_INLINE vf vf_bool_bytes(const uint8_t *p, int n) {
    __m128i b;
    if (n == VF_W) {
        b = _mm_loadl_epi64((const __m128i *)p);
    } else {
        uint8_t t[16] = {0};
        for (int k = 0; k < n; k++) t[k] = p[k];
        b = _mm_loadu_si128((const __m128i *)t);
    }
    const __m256i off = _mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(b), _mm256_setzero_si256());
    return _mm256_and_ps(_mm256_castsi256_ps(off), _mm256_set1_ps(-INFINITY));
}
/// In place: r[c] lane i ← r[i] lane c (an 8 × 8 transpose).
VF_INLINE void vf_transpose(vf r[VF_W]) {
    __m256 t[8];
    // t[2k], t[2k+1], lane half g: rows 2k, 2k+1 interleaved at columns 4g, 4g+1 | 4g+2, 4g+3
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // r[4h + c], lane half g: rows 4h … 4h+3 at column 4g + c
    for (int h = 0; h < 2; h++) {
        r[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    // column c: low halves of r[c], r[4 + c]; column 4 + c: their high halves
    for (int c = 0; c < 4; c++) {
        t[c] = _mm256_permute2f128_ps(r[c], r[4 + c], 0x20);
        t[4 + c] = _mm256_permute2f128_ps(r[c], r[4 + c], 0x31);
    }
    for (int c = 0; c < 8; c++) r[c] = t[c];
}

#endif
