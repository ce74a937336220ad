// avx2.c — AVX2 + FMA micro-kernels (16 ymm registers, 8 floats each).
//
// Same contract and structure as avx512.c, with register tiles sized for 16 registers:
// scores 4 keys × 24 queries (12 accumulators), P·V 4 queries × 24 value columns
// (12 accumulators). Tails use vmaskmov loads, which never touch masked-out memory.
#include <immintrin.h>
#include <math.h>
#include "microkernel.h"

#define FA_AVX2 __attribute__((target("avx2,fma")))
#define FA_INLINE static inline __attribute__((always_inline))

enum { VW = 8, KR = 4, QV = 3, MR = 4, DV = 3 };

// A lane mask with the first `n` (0…8) lanes set, for vmaskmov.
FA_INLINE FA_AVX2 __m256i first_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// 2^x = 2^f · 2^n, n = round(x), |f| ≤ 0.5; 2^n built in the exponent bits (valid for
// n ≥ −126, which the live mask guarantees). Lanes below FA_EXP2_MIN are exactly 0.
FA_INLINE FA_AVX2 __m256 exp2_ps(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(FA_EXP2_MIN), _CMP_NLT_UQ);
    const __m256 xc = _mm256_max_ps(x, _mm256_set1_ps(FA_EXP2_MIN));  // keep n in range
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
    // Large x (never seen by the softmax, whose exponents are ≤ 0): n > 127 would wrap, so
    // those lanes are computed as 2^127 · 2^(n−127) by a second scale. Here, clamp to +inf.
    const __m256 r = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(128.0f), _CMP_GE_OQ);
    const __m256 out = _mm256_blendv_ps(r, _mm256_set1_ps(INFINITY), big);
    // NaN lanes: x is unordered, live is set, and xc = max(NaN, −126) is −126: restore NaN.
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_and_ps(_mm256_blendv_ps(out, x, nan), live);
}

FA_AVX2 static void exp2_avx2(const float *x, float *y, int64_t n) {
    int64_t j = 0;
    for (; j + VW <= n; j += VW) _mm256_storeu_ps(y + j, exp2_ps(_mm256_loadu_ps(x + j)));
    if (j < n) {
        const __m256i m = first_lanes((int)(n - j));
        _mm256_maskstore_ps(y + j, m, exp2_ps(_mm256_maskload_ps(x + j, m)));
    }
}

FA_AVX2 static void pack_qt_avx2(int rows, int rows_padded, int64_t dqk, const float *q,
                                 int64_t ldq, float scale, float *qt, int64_t ldqt) {
    for (int64_t d = 0; d < dqk; d++) {
        float *row = qt + d * ldqt;
        for (int i = 0; i < rows; i++) row[i] = scale * q[i * ldq + d];
        for (int i = rows; i < rows_padded; i++) row[i] = 0.0f;
    }
}

FA_INLINE FA_AVX2 void scores_tile(const int NK, const int NQ, int64_t dqk, const float *k,
                                   int64_t ldk, const float *qt, int64_t ldqt, float *st,
                                   int64_t ldst, int masked, int64_t lo, int64_t hi,
                                   float *block_max) {
    __m256 acc[KR][QV];
    for (int a = 0; a < NK; a++)
        for (int v = 0; v < NQ; v++) acc[a][v] = _mm256_setzero_ps();
    // Key a is seen by queries [a + lo, a + hi): outside the tile for every key → all −inf.
    const int hidden = masked && (lo >= NQ * VW || (NK - 1) + hi <= 0);
    for (int64_t d = 0; d < (hidden ? 0 : dqk); d++) {
        __m256 qv[QV];
        for (int v = 0; v < NQ; v++) qv[v] = _mm256_loadu_ps(qt + d * ldqt + v * VW);
        for (int a = 0; a < NK; a++) {
            const __m256 kb = _mm256_broadcast_ss(k + a * ldk + d);
            for (int v = 0; v < NQ; v++) acc[a][v] = _mm256_fmadd_ps(kb, qv[v], acc[a][v]);
        }
    }
    __m256 mx[QV];
    for (int v = 0; v < NQ; v++) mx[v] = _mm256_loadu_ps(block_max + v * VW);
    for (int a = 0; a < NK; a++) {
        for (int v = 0; v < NQ; v++) {
            __m256 s = acc[a][v];
            if (masked) {  // lane i sees key a iff a + lo ≤ i + v·8 < a + hi
                const int64_t first = lo + a - v * VW, last = hi + a - v * VW;
                const int f = first < 0 ? 0 : (first > VW ? VW : (int)first);
                const int l = last < 0 ? 0 : (last > VW ? VW : (int)last);
                const __m256i hidden = _mm256_or_si256(first_lanes(f),
                                                       _mm256_xor_si256(first_lanes(l), _mm256_set1_epi32(-1)));
                s = _mm256_blendv_ps(s, _mm256_set1_ps(-INFINITY), _mm256_castsi256_ps(hidden));
            }
            _mm256_storeu_ps(st + a * ldst + v * VW, s);
            mx[v] = _mm256_max_ps(mx[v], s);
        }
    }
    for (int v = 0; v < NQ; v++) _mm256_storeu_ps(block_max + v * VW, mx[v]);
}

FA_INLINE FA_AVX2 void scores_column(const int NQ, int keys, int64_t dqk, const float *k,
                                     int64_t ldk, const float *qt, int64_t ldqt, float *st,
                                     int64_t ldst, int masked, int64_t lo, int64_t hi,
                                       float *block_max) {
    int j = 0;
    for (; j + KR <= keys; j += KR)
        scores_tile(KR, NQ, dqk, k + j * ldk, ldk, qt, ldqt, st + j * ldst, ldst, masked,
                    j + lo, j + hi, block_max);
    for (; j < keys; j++)
        scores_tile(1, NQ, dqk, k + j * ldk, ldk, qt, ldqt, st + j * ldst, ldst, masked,
                    j + lo, j + hi, block_max);
}

FA_AVX2 static void scores_t_avx2(int keys, int rows_padded, int64_t dqk, const float *k,
                                  int64_t ldk, const float *qt, int64_t ldqt, float *st,
                                  int64_t ldst, int masked, int64_t lo, int64_t hi, float *block_max) {
    for (int i0 = 0; i0 < rows_padded; i0 += QV * VW) {
        const int nq = (rows_padded - i0) / VW;
        const int64_t l = lo - i0, h = hi - i0;
        if (nq >= 3)
            scores_column(3, keys, dqk, k, ldk, qt + i0, ldqt, st + i0, ldst, masked, l, h, block_max + i0);
        else if (nq == 2)
            scores_column(2, keys, dqk, k, ldk, qt + i0, ldqt, st + i0, ldst, masked, l, h, block_max + i0);
        else
            scores_column(1, keys, dqk, k, ldk, qt + i0, ldqt, st + i0, ldst, masked, l, h, block_max + i0);
    }
}

FA_AVX2 static void softmax_t_avx2(int keys, int rows_padded, float *st, int64_t ldst,
                                   float *block_max, float *row_max, float *row_sum,
                                   float *alpha, int masked, int64_t lo, int64_t hi) {
    const __m256 neg_inf = _mm256_set1_ps(-INFINITY);
    for (int i = 0; i < rows_padded; i += VW) {
        const __m256 m_old = _mm256_loadu_ps(row_max + i);
        const __m256 m_new = _mm256_max_ps(m_old, _mm256_loadu_ps(block_max + i));
        const __m256 none = _mm256_cmp_ps(m_new, neg_inf, _CMP_EQ_OQ);
        const __m256 m_use = _mm256_andnot_ps(none, m_new);  // −inf → 0
        const __m256 a = exp2_ps(_mm256_sub_ps(m_old, m_use));
        __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
        // Keys outside these rows' band are −inf: P = 0, stored without an exp2.
        int j0, j1;
        fa_band_keys(keys, i, VW, masked, lo, hi, &j0, &j1);
        j0 &= ~1;
        for (int z = 0; z < j0; z++) _mm256_storeu_ps(st + z * ldst + i, _mm256_setzero_ps());
        for (int z = j1; z < keys; z++) _mm256_storeu_ps(st + z * ldst + i, _mm256_setzero_ps());
        int j = j0;
        for (; j + 2 <= j1; j += 2) {
            float *s0 = st + j * ldst + i, *s1 = s0 + ldst;
            const __m256 p0 = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s0), m_use));
            const __m256 p1 = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s1), m_use));
            _mm256_storeu_ps(s0, p0);
            _mm256_storeu_ps(s1, p1);
            sum0 = _mm256_add_ps(sum0, p0);
            sum1 = _mm256_add_ps(sum1, p1);
        }
        if (j < j1) {
            float *s0 = st + j * ldst + i;
            const __m256 p0 = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s0), m_use));
            _mm256_storeu_ps(s0, p0);
            sum0 = _mm256_add_ps(sum0, p0);
        }
        const __m256 l = _mm256_fmadd_ps(a, _mm256_loadu_ps(row_sum + i), _mm256_add_ps(sum0, sum1));
        _mm256_storeu_ps(row_sum + i, l);
        _mm256_storeu_ps(row_max + i, m_new);
        _mm256_storeu_ps(alpha + i, a);
        _mm256_storeu_ps(block_max + i, neg_inf);
    }
}

FA_INLINE FA_AVX2 void pv_tile(const int NV, int keys, const float *pt, int64_t ldpt,
                               const float *v, int64_t ldv, __m256i tail, const float *alpha,
                               float *acc, int64_t ldacc) {
    __m256 c[MR][DV];
    int rescale = 0;
    for (int r = 0; r < MR; r++) rescale |= alpha[r] != 1.0f;
    for (int r = 0; r < MR; r++) {
        const __m256 a = _mm256_set1_ps(alpha[r]);
        for (int w = 0; w < NV; w++) {
            c[r][w] = _mm256_loadu_ps(acc + r * ldacc + w * VW);
            if (rescale) c[r][w] = _mm256_mul_ps(c[r][w], a);
        }
    }
    for (int j = 0; j < keys; j++) {
        __m256 vv[DV];
        for (int w = 0; w < NV; w++)
            vv[w] = w == NV - 1 ? _mm256_maskload_ps(v + j * ldv + w * VW, tail)
                                : _mm256_loadu_ps(v + j * ldv + w * VW);
        const float *p = pt + j * ldpt;
        for (int r = 0; r < MR; r++) {
            const __m256 pb = _mm256_broadcast_ss(p + r);
            for (int w = 0; w < NV; w++) c[r][w] = _mm256_fmadd_ps(pb, vv[w], c[r][w]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int w = 0; w < NV; w++) _mm256_storeu_ps(acc + r * ldacc + w * VW, c[r][w]);
}

FA_AVX2 static void accumulate_pv_avx2(int rows_padded, int keys, int64_t dv, const float *pt,
                                       int64_t ldpt, const float *v, int64_t ldv,
                                       const float *alpha, float *acc, int64_t ldacc,
                                       int masked, int64_t lo, int64_t hi) {
    for (int64_t d0 = 0; d0 < dv; d0 += DV * VW) {
        const int64_t cols = dv - d0 < DV * VW ? dv - d0 : DV * VW;
        const int nv = (int)((cols + VW - 1) / VW);
        const __m256i tail = first_lanes((int)(cols - (int64_t)(nv - 1) * VW));
        for (int i = 0; i < rows_padded; i += MR) {
            float *a = acc + i * ldacc + d0;
            // Only the keys rows i … i+MR−1 see (P = 0 elsewhere, so skipped).
            int j0, j1;
            fa_band_keys(keys, i, MR, masked, lo, hi, &j0, &j1);
            const float *p0 = pt + (int64_t)j0 * ldpt + i, *v0 = v + (int64_t)j0 * ldv + d0;
            if (nv == 3) pv_tile(3, j1 - j0, p0, ldpt, v0, ldv, tail, alpha + i, a, ldacc);
            else if (nv == 2) pv_tile(2, j1 - j0, p0, ldpt, v0, ldv, tail, alpha + i, a, ldacc);
            else pv_tile(1, j1 - j0, p0, ldpt, v0, ldv, tail, alpha + i, a, ldacc);
        }
    }
}

// ---- backward ----

FA_AVX2 static void softmax_grad_t_avx2(int keys, int rows_padded, float *st, float *dpt,
                                        int64_t ld, const float *lse2, const float *dsum) {
    for (int i = 0; i < rows_padded; i += VW) {
        const __m256 l = _mm256_loadu_ps(lse2 + i);
        const __m256 none = _mm256_cmp_ps(l, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ);
        const __m256 l_use = _mm256_blendv_ps(l, _mm256_set1_ps(INFINITY), none);  // P = 0
        const __m256 d = _mm256_loadu_ps(dsum + i);
        for (int j = 0; j < keys; j++) {
            float *s = st + j * ld + i, *g = dpt + j * ld + i;
            const __m256 p = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s), l_use));
            _mm256_storeu_ps(s, p);
            _mm256_storeu_ps(g, _mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(g), d)));
        }
    }
}

FA_INLINE FA_AVX2 void gemm_tile(const int NR, const int NV, int K, const float *a, int64_t a_rs,
                                 int64_t a_cs, const float *b, int64_t ldb, __m256i tail,
                                 float *c, int64_t ldc) {
    __m256 acc[MR][DV];
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) acc[r][w] = _mm256_loadu_ps(c + r * ldc + w * VW);
    for (int k = 0; k < K; k++) {
        __m256 bv[DV];
        for (int w = 0; w < NV; w++)
            bv[w] = w == NV - 1 ? _mm256_maskload_ps(b + k * ldb + w * VW, tail)
                                : _mm256_loadu_ps(b + k * ldb + w * VW);
        for (int r = 0; r < NR; r++) {
            const __m256 ab = _mm256_broadcast_ss(a + r * a_rs + k * a_cs);
            for (int w = 0; w < NV; w++) acc[r][w] = _mm256_fmadd_ps(ab, bv[w], acc[r][w]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) _mm256_storeu_ps(c + r * ldc + w * VW, acc[r][w]);
}

FA_AVX2 static void gemm_acc_avx2(int M, int64_t N, int K, const float *a, int64_t a_rs,
                                  int64_t a_cs, const float *b, int64_t ldb, float *c,
                                  int64_t ldc) {
    for (int64_t n0 = 0; n0 < N; n0 += DV * VW) {  // 4 rows × 24 columns
        const int64_t cols = N - n0 < DV * VW ? N - n0 : DV * VW;
        const int nv = (int)((cols + VW - 1) / VW);
        const __m256i tail = first_lanes((int)(cols - (int64_t)(nv - 1) * VW));
        const float *bn = b + n0;
        float *cn = c + n0;
        for (int m = 0; m < M; m += MR) {
            const int nr = M - m < MR ? M - m : MR;
            const float *am = a + m * a_rs;
            float *cm = cn + m * ldc;
#define FA_GEMM_NV(NV)                                                                          \
            if (nr == 4) gemm_tile(4, NV, K, am, a_rs, a_cs, bn, ldb, tail, cm, ldc);           \
            else if (nr == 3) gemm_tile(3, NV, K, am, a_rs, a_cs, bn, ldb, tail, cm, ldc);      \
            else if (nr == 2) gemm_tile(2, NV, K, am, a_rs, a_cs, bn, ldb, tail, cm, ldc);      \
            else gemm_tile(1, NV, K, am, a_rs, a_cs, bn, ldb, tail, cm, ldc);
            if (nv == 3) { FA_GEMM_NV(3) }
            else if (nv == 2) { FA_GEMM_NV(2) }
            else { FA_GEMM_NV(1) }
#undef FA_GEMM_NV
        }
    }
}

const fa_kernels fa_kernels_avx2 = {
    .name = "avx2",
    .vector_width = VW,
    .query_tile = QV * VW,
    .key_tile = KR,
    .pack_qt = pack_qt_avx2,
    .scores_t = scores_t_avx2,
    .softmax_t = softmax_t_avx2,
    .accumulate_pv = accumulate_pv_avx2,
    .softmax_grad_t = softmax_grad_t_avx2,
    .gemm_acc = gemm_acc_avx2,
    .exp2 = exp2_avx2,
};
