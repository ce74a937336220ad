// avx512.c — AVX-512 micro-kernels (32 zmm registers, 16 floats each, mask registers).
//
// Every function carries the target attribute, so the file compiles without -march and the
// code only runs where dispatch/cpu.c found AVX-512F/VL and FMA. All symbols are static; the
// table at the end is the only export.
//
// Register tiles: scores 8 keys × 48 queries (24 accumulators, 3 query vectors per d step
// against 8 broadcast keys); P·V 6 queries × 64 value columns (24 accumulators, 4 value
// vectors per key against 6 broadcast probabilities), and 8 × ≤ 48 for the last columns.
#include <immintrin.h>
#include <math.h>
#include "microkernel.h"

#define FA_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define FA_INLINE static inline __attribute__((always_inline))

enum { VW = 16, KR = 8, QV = 3, MR = 8, DV = 4 };

// 2^x: x = n + f with n = round(x), |f| ≤ 0.5; 2^f by the minimax polynomial, times 2^n by
// vscalefps. Lanes below FA_EXP2_MIN (−inf included) are exactly 0; NaN stays NaN.
FA_INLINE FA_AVX512 __m512 exp2_ps(__m512 x) {
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

FA_AVX512 static void exp2_avx512(const float *x, float *y, int64_t n) {
    int64_t j = 0;
    for (; j + VW <= n; j += VW) _mm512_storeu_ps(y + j, exp2_ps(_mm512_loadu_ps(x + j)));
    if (j < n) {
        const __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
        _mm512_mask_storeu_ps(y + j, m, exp2_ps(_mm512_maskz_loadu_ps(m, x + j)));
    }
}

// qt[d, i] = scale · q[i, d]: 16 query rows at a time, gathered down the head dimension.
FA_AVX512 static void pack_qt_avx512(int rows, int rows_padded, int64_t dqk, const float *q,
                                     int64_t ldq, float scale, float *qt, int64_t ldqt) {
    for (int i0 = 0; i0 < rows_padded; i0 += VW) {
        const int live = rows - i0 < 0 ? 0 : (rows - i0 > VW ? VW : rows - i0);
        const __mmask16 m = (__mmask16)((1u << live) - 1);
        const __m512i idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32((int)ldq));
        const float *base = q + (int64_t)i0 * ldq;
        if (live == 0 || ldq > INT32_MAX / VW) {  // huge strides: plain loop
            for (int64_t d = 0; d < dqk; d++)
                for (int i = 0; i < VW; i++)
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

// One scores tile: NK keys (≤ KR) × NQ query vectors (≤ QV), accumulated over d, then masked,
// stored and folded into the block max. NK and NQ are constants after inlining, so acc lives
// in registers.
FA_INLINE FA_AVX512 void scores_tile(const int NK, const int NQ, int64_t dqk, const float *k,
                                     int64_t ldk, const float *qt, int64_t ldqt, float *st,
                                     int64_t ldst, int masked, int64_t lo, int64_t hi,
                                     float *block_max) {
    __m512 acc[KR][QV];
    for (int a = 0; a < NK; a++)
        for (int v = 0; v < NQ; v++) acc[a][v] = _mm512_setzero_ps();
    // Key a is seen by queries [a + lo, a + hi): if that misses the tile's queries for every
    // key (all below the first key's band, or all at or past the last key's), the tile is
    // all −inf, with no dot products to compute.
    const int hidden = masked && (lo >= NQ * VW || (NK - 1) + hi <= 0);
    for (int64_t d = 0; d < (hidden ? 0 : dqk); d++) {
        __m512 qv[QV];
        for (int v = 0; v < NQ; v++) qv[v] = _mm512_loadu_ps(qt + d * ldqt + v * VW);
        for (int a = 0; a < NK; a++) {
            const __m512 kb = _mm512_set1_ps(k[a * ldk + d]);
            for (int v = 0; v < NQ; v++) acc[a][v] = _mm512_fmadd_ps(kb, qv[v], acc[a][v]);
        }
    }
    __m512 mx[QV];
    for (int v = 0; v < NQ; v++) mx[v] = _mm512_loadu_ps(block_max + v * VW);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int a = 0; a < NK; a++) {
        for (int v = 0; v < NQ; v++) {
            __m512 s = acc[a][v];
            if (masked) {  // query i (lane + v·16) sees key a iff a + lo ≤ i < a + hi
                const int64_t first = lo + a - v * VW, last = hi + a - v * VW;
                const int f = first < 0 ? 0 : (first > VW ? VW : (int)first);
                const int l = last < 0 ? 0 : (last > VW ? VW : (int)last);
                const __mmask16 below = _mm512_cmp_epi32_mask(lane, _mm512_set1_epi32(f), _MM_CMPINT_LT);
                const __mmask16 above = _mm512_cmp_epi32_mask(lane, _mm512_set1_epi32(l), _MM_CMPINT_NLT);
                s = _mm512_mask_mov_ps(s, below | above, _mm512_set1_ps(-INFINITY));
            }
            _mm512_storeu_ps(st + a * ldst + v * VW, s);
            mx[v] = _mm512_max_ps(mx[v], s);
        }
    }
    for (int v = 0; v < NQ; v++) _mm512_storeu_ps(block_max + v * VW, mx[v]);
}

// Dispatches one column of query vectors (NQ constant) over all keys: full 8-key tiles, then
// the remaining keys one at a time.
FA_INLINE FA_AVX512 void scores_column(const int NQ, int keys, int64_t dqk, const float *k,
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

FA_AVX512 static void scores_t_avx512(int keys, int rows_padded, int64_t dqk, const float *k,
                                      int64_t ldk, const float *qt, int64_t ldqt, float *st,
                                      int64_t ldst, int masked, int64_t lo, int64_t hi,
                                      float *block_max) {
    for (int i0 = 0; i0 < rows_padded; i0 += QV * VW) {
        const int nq = (rows_padded - i0) / VW;
        // In this column, query i0 + i sees key j iff j + (lo − i0) ≤ i < j + (hi − i0).
        const int64_t l = lo - i0, h = hi - i0;
        if (nq >= 3)
            scores_column(3, keys, dqk, k, ldk, qt + i0, ldqt, st + i0, ldst, masked, l, h, block_max + i0);
        else if (nq == 2)
            scores_column(2, keys, dqk, k, ldk, qt + i0, ldqt, st + i0, ldst, masked, l, h, block_max + i0);
        else
            scores_column(1, keys, dqk, k, ldk, qt + i0, ldqt, st + i0, ldst, masked, l, h, block_max + i0);
    }
}

FA_AVX512 static void softmax_t_avx512(int keys, int rows_padded, float *st, int64_t ldst,
                                       float *block_max, float *row_max, float *row_sum,
                                       float *alpha, int masked, int64_t lo, int64_t hi) {
    const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < rows_padded; i += VW) {
        const __m512 m_old = _mm512_loadu_ps(row_max + i);
        const __m512 m_new = _mm512_max_ps(m_old, _mm512_loadu_ps(block_max + i));
        // m' = −inf: nothing visible yet; subtract 0 instead so P = 2^(−inf) = 0, not NaN.
        const __mmask16 none = _mm512_cmp_ps_mask(m_new, neg_inf, _CMP_EQ_OQ);
        const __m512 m_use = _mm512_mask_mov_ps(m_new, none, _mm512_setzero_ps());
        const __m512 a = exp2_ps(_mm512_sub_ps(m_old, m_use));
        // Four independent chains (keys j mod 4) hide the exp latency; the order is fixed.
        __m512 sum[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                         _mm512_setzero_ps()};
        // Keys outside these rows' band are −inf: their P is 0, stored without an exp2 (and
        // adding those zeros would not change the sums, so the chains keep their keys).
        int j0, j1;
        fa_band_keys(keys, i, VW, masked, lo, hi, &j0, &j1);
        j0 &= ~3;
        for (int z = 0; z < j0; z++) _mm512_storeu_ps(st + z * ldst + i, _mm512_setzero_ps());
        for (int z = j1; z < keys; z++) _mm512_storeu_ps(st + z * ldst + i, _mm512_setzero_ps());
        int j = j0;
        for (; j + 4 <= j1; j += 4) {
            for (int c = 0; c < 4; c++) {
                float *s = st + (j + c) * ldst + i;
                const __m512 p = exp2_ps(_mm512_sub_ps(_mm512_loadu_ps(s), m_use));
                _mm512_storeu_ps(s, p);
                sum[c] = _mm512_add_ps(sum[c], p);
            }
        }
        for (; j < j1; j++) {
            float *s = st + j * ldst + i;
            const __m512 p = exp2_ps(_mm512_sub_ps(_mm512_loadu_ps(s), m_use));
            _mm512_storeu_ps(s, p);
            sum[j & 3] = _mm512_add_ps(sum[j & 3], p);
        }
        const __m512 sum0 = _mm512_add_ps(sum[0], sum[1]), sum1 = _mm512_add_ps(sum[2], sum[3]);
        const __m512 l = _mm512_fmadd_ps(a, _mm512_loadu_ps(row_sum + i), _mm512_add_ps(sum0, sum1));
        _mm512_storeu_ps(row_sum + i, l);
        _mm512_storeu_ps(row_max + i, m_new);
        _mm512_storeu_ps(alpha + i, a);
        _mm512_storeu_ps(block_max + i, neg_inf);
    }
}

// One P·V tile: NR queries × NV value vectors (the last one masked by `tail`). NR and NV are
// constants after inlining (NR·NV ≤ 24), so the accumulators live in registers.
FA_INLINE FA_AVX512 void pv_tile(const int NR, const int NV, int keys, const float *pt,
                                 int64_t ldpt, const float *v, int64_t ldv, __mmask16 tail,
                                 const float *alpha, float *acc, int64_t ldacc) {
    __m512 c[MR][DV];
    int rescale = 0;
    for (int r = 0; r < NR; r++) rescale |= alpha[r] != 1.0f;
    for (int r = 0; r < NR; r++) {
        const __m512 a = _mm512_set1_ps(alpha[r]);
        for (int w = 0; w < NV; w++) {
            c[r][w] = _mm512_loadu_ps(acc + r * ldacc + w * VW);
            if (rescale) c[r][w] = _mm512_mul_ps(c[r][w], a);
        }
    }
    for (int j = 0; j < keys; j++) {
        __m512 vv[DV];
        for (int w = 0; w < NV; w++)
            vv[w] = w == NV - 1 ? _mm512_maskz_loadu_ps(tail, v + j * ldv + w * VW)
                                : _mm512_loadu_ps(v + j * ldv + w * VW);
        const float *p = pt + j * ldpt;
        for (int r = 0; r < NR; r++) {
            const __m512 pb = _mm512_set1_ps(p[r]);
            for (int w = 0; w < NV; w++) c[r][w] = _mm512_fmadd_ps(pb, vv[w], c[r][w]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) _mm512_storeu_ps(acc + r * ldacc + w * VW, c[r][w]);
}

FA_AVX512 static void accumulate_pv_avx512(int rows_padded, int keys, int64_t dv,
                                           const float *pt, int64_t ldpt, const float *v,
                                           int64_t ldv, const float *alpha, float *acc,
                                           int64_t ldacc, int masked, int64_t lo, int64_t hi) {
    // A tile of NR rows from row i, over the keys its rows see (P = 0 elsewhere: skipped).
#define FA_PV(NR, NV, i, vd, tail, a)                                                        \
    do {                                                                                     \
        int j0, j1;                                                                          \
        fa_band_keys(keys, (i), (NR), masked, lo, hi, &j0, &j1);                             \
        pv_tile((NR), (NV), j1 - j0, pt + (int64_t)j0 * ldpt + (i), ldpt,                    \
                (vd) + (int64_t)j0 * ldv, ldv, (tail), alpha + (i), (a), ldacc);             \
    } while (0)
    int64_t d0 = 0;
    // 64 value columns at a time: 6 rows × 4 vectors (then 4 or 2 rows: rows_padded is even).
    for (; dv - d0 > 48; d0 += 64) {
        const int64_t cols = dv - d0 < 64 ? dv - d0 : 64;
        const int rem = (int)(cols - 48);
        const __mmask16 tail = (__mmask16)(rem == VW ? 0xFFFF : (1u << rem) - 1);
        const float *vd = v + d0;
        int i = 0;
        for (; i + 6 <= rows_padded; i += 6) FA_PV(6, 4, i, vd, tail, acc + i * ldacc + d0);
        if (rows_padded - i == 4) FA_PV(4, 4, i, vd, tail, acc + i * ldacc + d0);
        else if (rows_padded - i == 2) FA_PV(2, 4, i, vd, tail, acc + i * ldacc + d0);
    }
    // The last ≤ 48 columns: 8 rows × 1–3 vectors.
    if (d0 < dv) {
        const int64_t cols = dv - d0;
        const int nv = (int)((cols + VW - 1) / VW);
        const int rem = (int)(cols - (int64_t)(nv - 1) * VW);
        const __mmask16 tail = (__mmask16)(rem == VW ? 0xFFFF : (1u << rem) - 1);
        const float *vd = v + d0;
        for (int i = 0; i < rows_padded; i += MR) {
            float *a = acc + i * ldacc + d0;
            if (nv == 3) FA_PV(MR, 3, i, vd, tail, a);
            else if (nv == 2) FA_PV(MR, 2, i, vd, tail, a);
            else FA_PV(MR, 1, i, vd, tail, a);
        }
    }
#undef FA_PV
}

// ---- backward ----

FA_AVX512 static void softmax_grad_t_avx512(int keys, int rows_padded, float *st, float *dpt,
                                            int64_t ld, const float *lse2, const float *dsum) {
    for (int i = 0; i < rows_padded; i += VW) {
        const __m512 l = _mm512_loadu_ps(lse2 + i);
        // A row that saw no key has lse = −inf: subtract +inf instead, so P = 2^(−inf) = 0.
        const __mmask16 none = _mm512_cmp_ps_mask(l, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
        const __m512 l_use = _mm512_mask_mov_ps(l, none, _mm512_set1_ps(INFINITY));
        const __m512 d = _mm512_loadu_ps(dsum + i);
        for (int j = 0; j < keys; j++) {
            float *s = st + j * ld + i, *g = dpt + j * ld + i;
            const __m512 p = exp2_ps(_mm512_sub_ps(_mm512_loadu_ps(s), l_use));
            _mm512_storeu_ps(s, p);
            _mm512_storeu_ps(g, _mm512_mul_ps(p, _mm512_sub_ps(_mm512_loadu_ps(g), d)));
        }
    }
}

// One c tile: NR rows × NV vectors; a(m, k) = a[m·a_rs + k·a_cs]; b's last vector masked.
FA_INLINE FA_AVX512 void gemm_tile(const int NR, const int NV, int K, const float *a,
                                   int64_t a_rs, int64_t a_cs, const float *b, int64_t ldb,
                                   __mmask16 tail, float *c, int64_t ldc) {
    __m512 acc[MR][DV];
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) acc[r][w] = _mm512_loadu_ps(c + r * ldc + w * VW);
    for (int k = 0; k < K; k++) {
        __m512 bv[DV];
        for (int w = 0; w < NV; w++)
            bv[w] = w == NV - 1 ? _mm512_maskz_loadu_ps(tail, b + k * ldb + w * VW)
                                : _mm512_loadu_ps(b + k * ldb + w * VW);
        for (int r = 0; r < NR; r++) {
            const __m512 ab = _mm512_set1_ps(a[r * a_rs + k * a_cs]);
            for (int w = 0; w < NV; w++) acc[r][w] = _mm512_fmadd_ps(ab, bv[w], acc[r][w]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) _mm512_storeu_ps(c + r * ldc + w * VW, acc[r][w]);
}

// Rows m0 … M−1 of one column strip (NV constant): tiles of NR rows, then 4, 2, 1.
#define FA_GEMM_ROWS(NR, NV)                                                                  \
    do {                                                                                      \
        int m = 0;                                                                            \
        for (; m + (NR) <= M; m += (NR))                                                      \
            gemm_tile((NR), (NV), K, a + m * a_rs, a_rs, a_cs, bn, ldb, tail, cn + m * ldc, ldc); \
        for (; m + 4 <= M; m += 4)                                                            \
            gemm_tile(4, (NV), K, a + m * a_rs, a_rs, a_cs, bn, ldb, tail, cn + m * ldc, ldc); \
        for (; m + 2 <= M; m += 2)                                                            \
            gemm_tile(2, (NV), K, a + m * a_rs, a_rs, a_cs, bn, ldb, tail, cn + m * ldc, ldc); \
        for (; m < M; m++)                                                                    \
            gemm_tile(1, (NV), K, a + m * a_rs, a_rs, a_cs, bn, ldb, tail, cn + m * ldc, ldc); \
    } while (0)

FA_AVX512 static void gemm_acc_avx512(int M, int64_t N, int K, const float *a, int64_t a_rs,
                                      int64_t a_cs, const float *b, int64_t ldb, float *c,
                                      int64_t ldc) {
    int64_t n0 = 0;
    for (; N - n0 > 48; n0 += 64) {  // 6 × 64 tiles
        const int64_t cols = N - n0 < 64 ? N - n0 : 64;
        const int rem = (int)(cols - 48);
        const __mmask16 tail = (__mmask16)(rem == VW ? 0xFFFF : (1u << rem) - 1);
        const float *bn = b + n0;
        float *cn = c + n0;
        FA_GEMM_ROWS(6, 4);
    }
    if (n0 < N) {  // the last ≤ 48 columns: 8 × 1–3 vectors
        const int64_t cols = N - n0;
        const int nv = (int)((cols + VW - 1) / VW);
        const int rem = (int)(cols - (int64_t)(nv - 1) * VW);
        const __mmask16 tail = (__mmask16)(rem == VW ? 0xFFFF : (1u << rem) - 1);
        const float *bn = b + n0;
        float *cn = c + n0;
        if (nv == 3) FA_GEMM_ROWS(8, 3);
        else if (nv == 2) FA_GEMM_ROWS(8, 2);
        else FA_GEMM_ROWS(8, 1);
    }
}

// ---- score modifiers ----

// tanh x, given e = e^(−2|x|) (computed by the caller without rounding x first): the odd
// polynomial x + x·z·P(z), z = x², where |x| < FA_TANH_SMALL; elsewhere ±(1 − e)/(1 + e).
FA_INLINE FA_AVX512 __m512 tanh_ps(__m512 x, __m512 e) {
    const __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(FA_TANH_P4);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(FA_TANH_P3));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(FA_TANH_P2));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(FA_TANH_P1));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(FA_TANH_P0));
    const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
    const __m512 one = _mm512_set1_ps(1.0f), sign = _mm512_set1_ps(-0.0f);
    const __m512 big = _mm512_or_ps(_mm512_and_ps(x, sign),
                                    _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e)));
    const __mmask16 is_small = _mm512_cmp_ps_mask(_mm512_andnot_ps(sign, x),
                                                  _mm512_set1_ps(FA_TANH_SMALL), _CMP_LT_OQ);
    return _mm512_mask_mov_ps(big, is_small, small);
}

// In place: r[c] lane i ← r[i] lane c (a 16 × 16 transpose: 4 rounds of 16 shuffles).
FA_INLINE FA_AVX512 void transpose16(__m512 r[VW]) {
    __m512 t[VW];
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

// 16 bool mask bytes → what they add to scores: 0 where nonzero (kept), −inf where 0.
FA_INLINE FA_AVX512 __m512 mask_from_bytes(__m128i b) {
    const __m512i w = _mm512_cvtepu8_epi32(b);
    return _mm512_maskz_mov_ps(_mm512_testn_epi32_mask(w, w), _mm512_set1_ps(-INFINITY));
}

// One mask element (row i, key j of the tile) as added to a score: m·log2 e, or 0 / −inf.
FA_INLINE FA_AVX512 float mask_one(const fa_tile_mods *m, int64_t i, int64_t j) {
    const int64_t at = i * m->mask_q + j * m->mask_k;
    if (m->mask_bool) return m->mask_bool[at] ? 0.0f : -INFINITY;
    return m->mask_add[at] * FA_LOG2E;
}

// How the mask's strides let a tile read it.
enum { MASK_NONE, MASK_BROADCAST, MASK_QUERIES, MASK_KEYS, MASK_GENERAL };

// mv[jj] lane r = the mask added to key j0 + jj's score for row i0 + r (jj < nk, r < live:
// the tile's real rows), and 0 in lanes r ≥ live (pad rows: the mask is not read there).
FA_INLINE FA_AVX512 void mask_vectors(const fa_tile_mods *m, int path, int i0, int live,
                                      int j0, int nk, __m512 mv[VW]) {
    const __mmask16 rows = (__mmask16)((1u << live) - 1);
    const __m512 log2e = _mm512_set1_ps(FA_LOG2E);
    if (path == MASK_BROADCAST) {  // [.., 1, Lk]: one element per key, for every row
        for (int jj = 0; jj < nk; jj++)
            mv[jj] = _mm512_maskz_mov_ps(rows, _mm512_set1_ps(mask_one(m, 0, j0 + jj)));
    } else if (path == MASK_QUERIES) {  // query stride 1: a vector load per key
        for (int jj = 0; jj < nk; jj++) {
            const int64_t at = (j0 + jj) * m->mask_k + i0;
            mv[jj] = m->mask_bool
                ? _mm512_maskz_mov_ps(rows, mask_from_bytes(_mm_maskz_loadu_epi8(rows, m->mask_bool + at)))
                : _mm512_mul_ps(_mm512_maskz_loadu_ps(rows, m->mask_add + at), log2e);
        }
    } else if (path == MASK_KEYS) {  // key stride 1: load 16 rows' keys, transpose
        const __mmask16 cols = (__mmask16)((1u << nk) - 1);
        for (int r = 0; r < VW; r++) {
            const int64_t at = (int64_t)(i0 + r) * m->mask_q + j0;
            if (r >= live) mv[r] = _mm512_setzero_ps();
            else if (m->mask_bool) mv[r] = mask_from_bytes(_mm_maskz_loadu_epi8(cols, m->mask_bool + at));
            else mv[r] = _mm512_mul_ps(_mm512_maskz_loadu_ps(cols, m->mask_add + at), log2e);
        }
        transpose16(mv);
    } else {  // any other strides: element by element
        for (int jj = 0; jj < nk; jj++) {
            float v[VW];
            for (int r = 0; r < VW; r++) v[r] = r < live ? mask_one(m, i0 + r, j0 + jj) : 0.0f;
            mv[jj] = _mm512_loadu_ps(v);
        }
    }
}

// Per vector of 16 rows, key by key (the mask in 16-key sub-tiles):
//   x = s·ln2/c,  e = 2^(−2|s|/c) = e^(−2|x|),  s' = c·tanh(x)·log2 e,  d = 4e/(1 + e)²
//   s' −= slope2·|alibi_base + i − j|;  s' += mask (real rows);  −inf in, −inf out
// The dense additive mask alone (key stride 1; no soft-capping, ALiBi or derivative), the
// case a mask costs most in: per 16 rows × 16 keys, 16 row loads, a register transpose and
// one FMA per key vector (s + m·log2 e). Scores hidden by the band (−inf) stay −inf.
FA_AVX512 static void additive_rows_avx512(const fa_tile_mods *m, int keys, int rows,
                                           int rows_padded, float *st, int64_t ldst,
                                           float *block_max) {
    const __m512 neg_inf = _mm512_set1_ps(-INFINITY), log2e = _mm512_set1_ps(FA_LOG2E);
    const int ahead = 4 * VW;  // rows asked for ahead of the row group being modified
    fa_prefetch_mask_rows(m, 0, rows < ahead ? rows : ahead, keys);
    for (int i0 = 0; i0 < rows_padded; i0 += VW) {
        const int live = rows - i0 < 0 ? 0 : (rows - i0 > VW ? VW : rows - i0);
        if (i0 + ahead < rows)
            fa_prefetch_mask_rows(m, i0 + ahead, rows < i0 + ahead + VW ? rows : i0 + ahead + VW, keys);
        __m512 mx = neg_inf;
        for (int j0 = 0; j0 < keys; j0 += VW) {
            const int nk = keys - j0 < VW ? keys - j0 : VW;
            const __mmask16 cols = (__mmask16)((1u << nk) - 1);
            __m512 mv[VW];
            const float *row = m->mask_add + (int64_t)i0 * m->mask_q + j0;
            for (int r = 0; r < VW; r++)  // pad rows (r ≥ live) add 0 and read nothing
                mv[r] = r < live ? _mm512_maskz_loadu_ps(cols, row + r * m->mask_q)
                                 : _mm512_setzero_ps();
            transpose16(mv);
            float *sp = st + (int64_t)j0 * ldst + i0;
            for (int jj = 0; jj < nk; jj++, sp += ldst) {
                const __m512 s0 = _mm512_loadu_ps(sp);
                __m512 s = _mm512_fmadd_ps(mv[jj], log2e, s0);
                s = _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(s0, neg_inf, _CMP_EQ_OQ), neg_inf);
                _mm512_storeu_ps(sp, s);
                mx = _mm512_max_ps(mx, s);
            }
        }
        _mm512_storeu_ps(block_max + i0, mx);
    }
}

FA_AVX512 static void score_mods_avx512(const fa_tile_mods *m, int keys, int rows,
                                        int rows_padded, float *st, int64_t ldst,
                                        float *block_max, float *derivative) {
    const float c = m->softcap;
    if (m->mask_add && m->mask_k == 1 && m->mask_q > 1 && c == 0.0f && !m->has_alibi &&
        !derivative) {
        additive_rows_avx512(m, keys, rows, rows_padded, st, ldst, block_max);
        return;
    }
    const int path = !m->mask_bool && !m->mask_add ? MASK_NONE
                   : m->mask_q == 0                ? MASK_BROADCAST
                   : m->mask_q == 1                ? MASK_QUERIES
                   : m->mask_k == 1                ? MASK_KEYS
                                                   : MASK_GENERAL;
    const __m512 neg_inf = _mm512_set1_ps(-INFINITY), one = _mm512_set1_ps(1.0f);
    const __m512 cap = _mm512_set1_ps(c), two = _mm512_set1_ps(2.0f);
    // Multiplications by 1/c instead of divisions by c (c > 0 only when used).
    const __m512 inv_c = _mm512_set1_ps(c > 0.0f ? 1.0f / c : 0.0f);
    const __m512 ln2_c = _mm512_set1_ps(c > 0.0f ? FA_LN2 / c : 0.0f);
    const __m512 log2e = _mm512_set1_ps(FA_LOG2E);
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512 slope2 = _mm512_set1_ps(m->alibi_slope2);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int ahead = 2 * VW;  // rows prefetched ahead of the row group being modified
    if (path == MASK_KEYS) fa_prefetch_mask_rows(m, 0, rows < ahead ? rows : ahead, keys);
    for (int i0 = 0; i0 < rows_padded; i0 += VW) {
        const int live = rows - i0 < 0 ? 0 : (rows - i0 > VW ? VW : rows - i0);
        __m512 mx = neg_inf;
        if (path == MASK_KEYS && i0 + ahead < rows)
            fa_prefetch_mask_rows(m, i0 + ahead, rows < i0 + ahead + VW ? rows : i0 + ahead + VW, keys);
        for (int j0 = 0; j0 < keys; j0 += VW) {
            const int nk = keys - j0 < VW ? keys - j0 : VW;
            __m512 mv[VW];
            const int masked = path != MASK_NONE && live > 0;
            if (masked) mask_vectors(m, path, i0, live, j0, nk, mv);
            for (int jj = 0; jj < nk; jj++) {
                const int64_t j = j0 + jj;
                float *sp = st + j * ldst + i0;
                const __m512 s0 = _mm512_loadu_ps(sp);
                __m512 s = s0, d = one;
                if (c > 0.0f) {
                    const __m512 x = _mm512_mul_ps(s0, ln2_c);  // s·ln2/c, e = 2^(−2|s|/c)
                    const __m512 abs2 = _mm512_mul_ps(two, _mm512_and_ps(s0, abs_mask));
                    const __m512 e = exp2_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), abs2), inv_c));
                    s = _mm512_mul_ps(_mm512_mul_ps(cap, tanh_ps(x, e)), log2e);
                    const __m512 e1 = _mm512_add_ps(one, e);
                    if (derivative) d = _mm512_div_ps(_mm512_mul_ps(_mm512_set1_ps(4.0f), e), _mm512_mul_ps(e1, e1));
                }
                if (m->has_alibi) {  // distance |alibi_base + i0 + lane − j|, exact as int32
                    const __m512i dist = _mm512_abs_epi32(_mm512_add_epi32(
                        lane, _mm512_set1_epi32((int32_t)(m->alibi_base + i0 - j))));
                    s = _mm512_fnmadd_ps(slope2, _mm512_cvtepi32_ps(dist), s);
                }
                if (masked) s = _mm512_add_ps(s, mv[jj]);
                s = _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(s0, neg_inf, _CMP_EQ_OQ), neg_inf);
                _mm512_storeu_ps(sp, s);
                mx = _mm512_max_ps(mx, s);
                if (derivative)
                    _mm512_storeu_ps(derivative + j * ldst + i0,
                                     _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, neg_inf, _CMP_NEQ_UQ), d));
            }
        }
        _mm512_storeu_ps(block_max + i0, mx);
    }
}

// ---- query-major row tiles (decoding), from the shared source ----
#include "vec_avx512.h"
#include "row_kernels.h"

const fa_kernels fa_kernels_avx512 = {
    .name = "avx512",
    .vector_width = VW,
    .query_tile = QV * VW,
    .key_tile = KR,
    .pack_qt = pack_qt_avx512,
    .scores_t = scores_t_avx512,
    .softmax_t = softmax_t_avx512,
    .accumulate_pv = accumulate_pv_avx512,
    .softmax_grad_t = softmax_grad_t_avx512,
    .gemm_acc = gemm_acc_avx512,
    .score_mods = score_mods_avx512,
    .exp2 = exp2_avx512,
    .scores_q = row_scores,
    .softmax_q = row_softmax,
    .accumulate_pv_q = row_accumulate_pv,
};
