// vec_avx512.h — the thin vector layer over AVX-512 (16 floats, mask registers), for the
// kernel sources written once and compiled per ISA (tile_kernels.h, row_kernels.h): an ISA
// file includes this header, then those sources. Everything here is static and inline, with
// the target attribute, so the file compiles without -march and runs only where dispatch
// found AVX-512F/VL/BW/DQ and FMA.
#ifndef FA_VEC_AVX512_H
#define FA_VEC_AVX512_H
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include "microkernel.h"

typedef __m512 vf;
/// A lane predicate (compares, selects) and a "first n lanes" predicate for loads and stores.
typedef __mmask16 vm;
typedef __mmask16 vtail;
/// Row-tile register blocking (row_kernels.h): scores rows × keys, P·V rows × vectors.
#define VF_SCORES_R 4
#define VF_SCORES_K 1
#define VF_PV_R 2
#define VF_PV_V 8
/// Query vectors per row the scores tile keeps in registers (0: load them for every key).
#define VF_QREG 8
/// Key-major register tiles (tile_kernels.h), sized for 32 registers:
///   scores TILE_ST_K keys × TILE_ST_Q query vectors (24 accumulators, 3 query vectors per d
///   step against a broadcast key), TILE_ST_K1 keys when only one query vector is left;
///   P·V and the backward's gemm TILE_PV_R rows × TILE_PV_V vectors (6 × 4: 24 accumulators,
///   4 value vectors per key against a broadcast probability), TILE_PV_LAST_R rows × ≤ 3
///   vectors for the last columns; the softmax sums keys in TILE_SOFTMAX_CHAINS chains.
#define TILE_ST_K 8
#define TILE_ST_Q 3
#define TILE_ST_K1 8
#define TILE_PV_R 6
#define TILE_PV_V 4
#define TILE_PV_LAST_R 8
#define TILE_SOFTMAX_CHAINS 4
enum { VF_W = 16 };
#ifndef VF_EXTRA_TARGET
#define VF_EXTRA_TARGET ""
#endif
// Sanitizer builds on a CPU without AVX-512 define FA_UNINSTRUMENTED_AVX512 (make sanitize-test
// reads /proc/cpuinfo): these kernels never run there, and instrumenting them for nothing took
// most of that build. Everywhere else they are instrumented like any code.
#ifdef FA_UNINSTRUMENTED_AVX512
#define VF_NO_SANITIZE __attribute__((no_sanitize("address", "undefined", "thread")))
#else
#define VF_NO_SANITIZE
#endif
#define VF_FN __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma" VF_EXTRA_TARGET))) VF_NO_SANITIZE
#define VF_INLINE static inline __attribute__((always_inline)) VF_FN

// 2^x: x = n + f with n = round(x), |f| ≤ 0.5; 2^f by the minimax polynomial, times 2^n by
// vscalefps. Lanes below FA_EXP2_MIN (−inf included) are exactly 0; NaN stays NaN; any x.
VF_INLINE __m512 exp2_ps(__m512 x) {
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(FA_EXP2_MIN), _CMP_NLT_UQ);
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(FA_EXP2_C6);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(FA_EXP2_C5));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(FA_EXP2_C4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(FA_EXP2_C3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(FA_EXP2_C2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(FA_EXP2_C1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(live, p, n);
}

VF_INLINE vf vf_zero(void) { return _mm512_setzero_ps(); }
VF_INLINE vf vf_set1(float x) { return _mm512_set1_ps(x); }
VF_INLINE vf vf_loadu(const float *p) { return _mm512_loadu_ps(p); }
VF_INLINE __mmask16 vf_first_mask(int n) { return (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1); }
/// The first n (0…16) floats at p, `fill` in the other lanes (which are never read).
VF_INLINE vf vf_load_first_or(const float *p, int n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), vf_first_mask(n), p);
}
VF_INLINE void vf_storeu(float *p, vf v) { _mm512_storeu_ps(p, v); }
/// Stores the first n (0…16) lanes of v; nothing past them is touched.
VF_INLINE void vf_store_first(float *p, vf v, int n) { _mm512_mask_storeu_ps(p, vf_first_mask(n), v); }
VF_INLINE vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
VF_INLINE vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
VF_INLINE vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
VF_INLINE vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
VF_INLINE vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
/// Sums of lanes and largest lane: a fixed tree, so the same bits for the same lanes.
VF_INLINE float vf_hsum(vf v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}
VF_INLINE float vf_hmax(vf v) {
    __m256 h = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 q = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_max_ps(q, _mm_movehl_ps(q, q));
    q = _mm_max_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}
/// The sums of four vectors' lanes into out[0…3], each with exactly vf_hsum's association
/// (halves, then quarters, then pairs), done for the four at once: 14 shuffles and adds
/// instead of 32.
VF_INLINE void vf_hsum4(vf a, vf b, vf c, vf d, float out[4]) {
    // [a_lo + a_hi | b_lo + b_hi], [c_lo + c_hi | d_lo + d_hi]  (256-bit halves)
    const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
    // 128-bit lanes: [qa | qb | qc | qd], q = first quarter + second quarter of each half
    __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
    // in each lane: (q0 + q2, q1 + q3, …), then (q0 + q2) + (q1 + q3) in element 0
    q = _mm512_add_ps(q, _mm512_permute_ps(q, 0x4E));
    q = _mm512_add_ps(q, _mm512_permute_ps(q, 0xB1));
    const __m128 r = _mm512_castps512_ps128(_mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), q));
    _mm_storeu_ps(out, r);
}
/// 2^x for x ≤ 0 (−inf → 0), as the key-major softmax computes it.
VF_INLINE vf vf_exp2(vf x) { return exp2_ps(x); }
VF_INLINE float vf_first(vf v) { return _mm512_cvtss_f32(v); }

// ---- half-precision elements, widened exactly as they are loaded ----
/// 16 fp16 / bf16 elements at p as floats; the _first variants read only the first n (0…16),
/// with 0 in the other lanes.
VF_INLINE vf vf_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
VF_INLINE vf vf_load_f16_first(const uint16_t *p, int n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(vf_first_mask(n), p));
}
VF_INLINE vf vf_bf16_bits(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
VF_INLINE vf vf_load_bf16(const uint16_t *p) { return vf_bf16_bits(_mm256_loadu_si256((const __m256i *)p)); }
VF_INLINE vf vf_load_bf16_first(const uint16_t *p, int n) {
    return vf_bf16_bits(_mm256_maskz_loadu_epi16(vf_first_mask(n), p));
}

/// 2·VF_W bf16 elements at p split by parity, as floats (exact): even = elements 0, 2, …,
/// odd = 1, 3, …. One load and one integer op per 16 values (a pair of bf16 is one 32-bit
/// lane: shifted left, the even one; masked, the odd one).
VF_INLINE void vf_load_bf16_split(const uint16_t *p, vf *even, vf *odd) {
    const __m512i x = _mm512_loadu_si512(p);
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32((int)0xFFFF0000u)));
}
/// 2·VF_W floats (a, then b) split by parity, and back.
VF_INLINE void vf_split_parity(vf a, vf b, vf *even, vf *odd) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    *even = _mm512_permutex2var_ps(a, ie, b);
    *odd = _mm512_permutex2var_ps(a, io, b);
}
VF_INLINE void vf_merge_parity(vf even, vf odd, vf *a, vf *b) {
    const __m512i ia = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ib = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    *a = _mm512_permutex2var_ps(even, ia, odd);
    *b = _mm512_permutex2var_ps(even, ib, odd);
}

/// 2^x for any x (the table's exp2, the softcap's e^(−2|x|)); the same function here.
VF_INLINE vf vf_exp2_any(vf x) { return exp2_ps(x); }

// ---- lane predicates, tails, and what the key-major tiles need besides arithmetic ----
VF_INLINE vtail vf_tail(int n) { return vf_first_mask(n); }
/// Loads the lanes of `t` (zero elsewhere; nothing past them is touched); stores them only.
VF_INLINE vf vf_load_tail(const float *p, vtail t) { return _mm512_maskz_loadu_ps(t, p); }
VF_INLINE void vf_store_tail(float *p, vf v, vtail t) { _mm512_mask_storeu_ps(p, t, v); }
/// v in the lanes of `t`, 0 in the others.
VF_INLINE vf vf_zero_past(vf v, vtail t) { return _mm512_maskz_mov_ps(t, v); }
VF_INLINE vm vf_eq(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
/// Not equal, or unordered.
VF_INLINE vm vf_neq(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
VF_INLINE vm vf_lt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
VF_INLINE vm vf_or_mask(vm a, vm b) { return (vm)(a | b); }
/// m ? b : a, lane by lane.
VF_INLINE vf vf_select(vm m, vf a, vf b) { return _mm512_mask_mov_ps(a, m, b); }
/// m ? a : 0.
VF_INLINE vf vf_zero_unless(vm m, vf a) { return _mm512_maskz_mov_ps(m, a); }
/// `fill` in the lanes outside [f, l) (0 ≤ f, l ≤ VF_W), v inside.
VF_INLINE vf vf_fill_outside(vf v, int f, int l, float fill) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __mmask16 below = _mm512_cmp_epi32_mask(lane, _mm512_set1_epi32(f), _MM_CMPINT_LT);
    const __mmask16 above = _mm512_cmp_epi32_mask(lane, _mm512_set1_epi32(l), _MM_CMPINT_NLT);
    return _mm512_mask_mov_ps(v, below | above, _mm512_set1_ps(fill));
}
VF_INLINE vf vf_div(vf a, vf b) { return _mm512_div_ps(a, b); }
/// c − a·b, fused.
VF_INLINE vf vf_fnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); }
VF_INLINE vf vf_abs(vf x) { return _mm512_andnot_ps(_mm512_set1_ps(-0.0f), x); }
/// |mag| with the sign of x, for mag ≥ 0 (+0 included): mag | sign(x).
VF_INLINE vf vf_with_sign_of(vf mag, vf x) {
    return _mm512_or_ps(_mm512_and_ps(x, _mm512_set1_ps(-0.0f)), mag);
}
/// |base + lane| as floats, computed exactly in int32 (ALiBi distances).
VF_INLINE vf vf_abs_lane_offset(int32_t base) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_cvtepi32_ps(_mm512_abs_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(base))));
}
/// A bool mask's first n (1…16) bytes at p as what they add to scores: 0 where nonzero, −inf
/// where 0; −inf in the lanes from n on (nothing past n bytes is read).
VF_INLINE vf vf_bool_bytes(const uint8_t *p, int n) {
    const __m512i w = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(vf_first_mask(n), p));
    return _mm512_maskz_mov_ps(_mm512_testn_epi32_mask(w, w), _mm512_set1_ps(-INFINITY));
}
/// In place: r[c] lane i ← r[i] lane c (a 16 × 16 transpose: 4 rounds of 16 shuffles).
VF_INLINE void vf_transpose(vf r[VF_W]) {
    __m512 t[16];
    // t[2k], t[2k+1], lane block g: rows 2k, 2k+1 interleaved at columns 4g, 4g+1 | 4g+2, 4g+3
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // r[4k + c], lane block g: rows 4k … 4k+3 at column 4g + c
    for (int k = 0; k < 4; k++) {
        r[4 * k] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    // t[8h + c] (even blocks), t[8h + 4 + c] (odd blocks) of rows 8h … 8h+7, column 4g + c
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 4; c++) {
            t[8 * h + c] = _mm512_shuffle_f32x4(r[8 * h + c], r[8 * h + 4 + c], 0x88);
            t[8 * h + 4 + c] = _mm512_shuffle_f32x4(r[8 * h + c], r[8 * h + 4 + c], 0xDD);
        }
    // column 4g + c: blocks g of r[c], r[4 + c], r[8 + c], r[12 + c]
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xDD);
    }
}

#endif
