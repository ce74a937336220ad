// vec_avx2.h — the thin vector layer over AVX2 + FMA (8 floats), for kernel sources written
// once and compiled per ISA (row_kernels.h). Include after exp2_nonpositive_ps and
// first_lanes are defined.
#ifndef FA_VEC_AVX2_H
#define FA_VEC_AVX2_H
#include <immintrin.h>

typedef __m256 vf;
/// Row-tile register blocking (row_kernels.h): scores rows × keys, P·V rows × vectors.
#define VF_SCORES_R 4
#define VF_SCORES_K 1
#define VF_PV_R 2
#define VF_PV_V 4
/// Query vectors per row the scores tile keeps in registers: none — 16 registers cannot hold
/// four rows of a useful head dim, so the queries are loaded for every key.
#define VF_QREG 0
enum { VF_W = 8 };
#define VF_FN __attribute__((target("avx2,fma")))
#define VF_INLINE static inline __attribute__((always_inline)) VF_FN

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

#endif
