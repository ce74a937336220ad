// vec_avx512.h — the thin vector layer over AVX-512 (16 floats), for kernel sources written
// once and compiled per ISA (row_kernels.h). Include after exp2_ps is defined.
#ifndef FA_VEC_AVX512_H
#define FA_VEC_AVX512_H
#include <immintrin.h>

typedef __m512 vf;
/// Row-tile register blocking (row_kernels.h): scores rows × keys, P·V rows × vectors.
#define VF_SCORES_R 4
#define VF_SCORES_K 1
#define VF_PV_R 2
#define VF_PV_V 8
/// Query vectors per row the scores tile keeps in registers (0: load them for every key).
#define VF_QREG 8
enum { VF_W = 16 };
#define VF_FN __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define VF_INLINE static inline __attribute__((always_inline)) VF_FN

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

#endif
