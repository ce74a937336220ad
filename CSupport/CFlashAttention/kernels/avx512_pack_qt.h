// avx512_pack_qt.h — Q's transpose by gathers for the AVX-512 tables (avx512.c, avx512_bf16.c):
// included after vec_avx512.h; defines a static function (no guard).

// qt[d, i] = scale · q[i, d]: 16 query rows at a time, gathered down the head dimension.
VF_FN static void pack_qt_avx512(int rows, int rows_padded, int64_t dqk, const float *q,
                                 int64_t ldq, float scale, float *qt, int64_t ldqt) {
    for (int i0 = 0; i0 < rows_padded; i0 += VF_W) {
        const int live = rows - i0 < 0 ? 0 : (rows - i0 > VF_W ? VF_W : rows - i0);
        const __mmask16 m = (__mmask16)((1u << live) - 1);
        const __m512i idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32((int)ldq));
        const float *base = q + (int64_t)i0 * ldq;
        if (live == 0 || ldq > INT32_MAX / VF_W) {  // huge strides: plain loop
            for (int64_t d = 0; d < dqk; d++)
                for (int i = 0; i < VF_W; i++)
                    qt[d * ldqt + i0 + i] = i < live ? scale * base[i * ldq + d] : 0.0f;
            continue;
        }
        const __m512 s = _mm512_set1_ps(scale);
        for (int64_t d = 0; d < dqk; d++) {
            const __m512 col = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base + d, 4);
            _mm512_storeu_ps(qt + d * ldqt + i0, _mm512_mul_ps(col, s));
        }
    }
}
