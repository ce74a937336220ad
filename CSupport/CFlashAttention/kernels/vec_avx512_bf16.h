// vec_avx512_bf16.h — the bf16 pair layer over AVX512-BF16 (vdpbf16ps), for
// bf16_tile_kernels.h: a vector of VF_W = 16 pairs of bf16 (32 bits each, low half first)
// against 16 fp32 lanes. Included by avx512_bf16.c after vec_avx512.h.
#ifndef FA_VEC_AVX512_BF16_H
#define FA_VEC_AVX512_BF16_H

typedef __m512bh vbh;

/// VF_W pairs from p.
VF_INLINE vbh vbh_loadu(const uint32_t *p) { return (vbh)_mm512_loadu_si512(p); }
/// One pair in every lane.
VF_INLINE vbh vbh_set1(uint32_t pair) { return (vbh)_mm512_set1_epi32((int)pair); }
/// acc[l] += a[2l]·b[2l] + a[2l+1]·b[2l+1] per lane (products exact, each add rounded to
/// nearest even; subnormal inputs and results as zero).
VF_INLINE vf vf_dot_bf16(vf acc, vbh a, vbh b) { return _mm512_dpbf16_ps(acc, a, b); }

// Two rows of 16 fp32 values → 16 pairs (bf16 of a in the low half, of b in the high half).
VF_INLINE __m512i bf16_pairs(__m512 a, __m512 b) {
    const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(a));
    const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(b));
    return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}
/// out[l] = (bf16(a[l]), bf16(b[l])), l < VF_W, rounded to nearest even.
VF_INLINE void vbh_store_rounded(uint32_t *out, vf a, vf b) {
    _mm512_storeu_si512(out, bf16_pairs(a, b));
}
/// out[l] = (a[l], b[l]) for l < VF_W, bf16 bits as they are (b NULL: 0).
VF_INLINE void vbh_store_zipped(uint32_t *out, const uint16_t *a, const uint16_t *b) {
    const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)a));
    const __m512i hi = b ? _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)b))
                         : _mm512_setzero_si512();
    _mm512_storeu_si512(out, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
}
/// out[0 … 2·VF_W) = bf16(a), bf16(b), rounded to nearest even.
VF_INLINE void vf_store_bf16x2(uint16_t *out, vf a, vf b) {
    _mm512_storeu_si512(out, (__m512i)_mm512_cvtne2ps_pbh(b, a));  // a low, b high
}
/// out[0 … VF_W) = bf16(a), rounded to nearest even.
VF_INLINE void vf_store_bf16(uint16_t *out, vf a) {
    _mm256_storeu_si256((__m256i *)out, (__m256i)_mm512_cvtneps_pbh(a));
}

#endif  // FA_VEC_AVX512_BF16_H
