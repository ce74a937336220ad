// avx2.c — AVX2 + FMA micro-kernels (16 ymm registers, 8 floats each).
//
// Same contract and structure as avx512.c, with register tiles sized for 16 registers:
// scores 6 keys × 16 queries, P·V and the backward's gemm 6 rows × 16 columns — 12
// accumulators, 2 vectors loaded and 1 broadcast per step, 15 registers: a 12-accumulator
// tile with 3 loaded vectors (4 × 24) needs all 16, and the compiler then spilled an
// accumulator to the stack inside the inner loop. Tails use vmaskmov loads, which never touch
// masked-out memory.
#include <immintrin.h>
#include <math.h>
#include "microkernel.h"

#define FA_AVX2 __attribute__((target("avx2,fma")))
#define FA_INLINE static inline __attribute__((always_inline))

// Floats per vector; keys × query vectors of a scores tile (KR1 keys against a lone query
// vector, so that it too has 12 accumulators); rows × value vectors of a P·V tile.
enum { VW = 8, KR = 6, QV = 2, KR1 = 12, MR = 6, DV = 2 };

// A lane mask with the first `n` (0…8) lanes set, for vmaskmov.
FA_INLINE FA_AVX2 __m256i first_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// 2^x = 2^f · 2^n, n = round(x), |f| ≤ 0.5; 2^n built in the exponent bits (valid for
// n ≥ −126, which the live mask guarantees). Lanes below FA_EXP2_MIN are exactly 0.
// p(f) · 2^n for x = n + f, n = round(x), x ≥ FA_EXP2_MIN (n > 127 wraps: callers handle it).
FA_INLINE FA_AVX2 __m256 exp2_scaled(__m256 xc) {
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

FA_INLINE FA_AVX2 __m256 exp2_ps(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(FA_EXP2_MIN), _CMP_NLT_UQ);
    const __m256 xc = _mm256_max_ps(x, _mm256_set1_ps(FA_EXP2_MIN));  // keep n in range
    // Large x (never seen by the softmax, whose exponents are ≤ 0): n > 127 would wrap, so
    // those lanes are clamped to +inf.
    const __m256 r = exp2_scaled(xc);
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
FA_INLINE FA_AVX2 __m256 exp2_nonpositive_ps(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(FA_EXP2_MIN), _CMP_NLT_UQ);
    const __m256 xc = _mm256_max_ps(_mm256_set1_ps(FA_EXP2_MIN), x);  // NaN stays NaN
    return _mm256_and_ps(exp2_scaled(xc), live);
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

// One scores tile: NK keys × NQ query vectors (NK ≤ 6, NQ ≤ 2: 12 accumulators, 2 query
// vectors and a broadcast key, 15 of the 16 registers, so nothing spills; or NK ≤ 12, NQ = 1).
FA_INLINE FA_AVX2 void scores_tile(const int NK, const int NQ, int64_t dqk, const float *k,
                                   int64_t ldk, const float *qt, int64_t ldqt, float *st,
                                   int64_t ldst, int masked, int64_t lo, int64_t hi,
                                   float *block_max) {
    __m256 acc[KR1][QV];
    for (int a = 0; a < NK; a++)
        for (int v = 0; v < NQ; v++) acc[a][v] = _mm256_setzero_ps();
    // Key a is seen by queries [a + lo, a + hi): outside the tile for every key → all −inf.
    const int hidden = masked && (lo >= NQ * VW || (NK - 1) + hi <= 0);
    // st[a, i] = Σ_d k[a, d] · qt[d, i], d in order
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

// All keys against NQ query vectors: tiles of KR keys (KR1 for one vector, then at most one
// of KR), then one tile of the 1…KR−1 left.
FA_INLINE FA_AVX2 void scores_column(const int NQ, int keys, int64_t dqk, const float *k,
                                     int64_t ldk, const float *qt, int64_t ldqt, float *st,
                                     int64_t ldst, int masked, int64_t lo, int64_t hi,
                                     float *block_max) {
    int j = 0;
    if (NQ == 1)
        for (; j + KR1 <= keys; j += KR1)
            scores_tile(KR1, 1, dqk, k + j * ldk, ldk, qt, ldqt, st + j * ldst, ldst, masked,
                        j + lo, j + hi, block_max);
    for (; j + KR <= keys; j += KR)
        scores_tile(KR, NQ, dqk, k + j * ldk, ldk, qt, ldqt, st + j * ldst, ldst, masked,
                    j + lo, j + hi, block_max);
    const float *kj = k + j * ldk;
    float *sj = st + j * ldst;
    switch (keys - j) {
    case 5: scores_tile(5, NQ, dqk, kj, ldk, qt, ldqt, sj, ldst, masked, j + lo, j + hi, block_max); break;
    case 4: scores_tile(4, NQ, dqk, kj, ldk, qt, ldqt, sj, ldst, masked, j + lo, j + hi, block_max); break;
    case 3: scores_tile(3, NQ, dqk, kj, ldk, qt, ldqt, sj, ldst, masked, j + lo, j + hi, block_max); break;
    case 2: scores_tile(2, NQ, dqk, kj, ldk, qt, ldqt, sj, ldst, masked, j + lo, j + hi, block_max); break;
    case 1: scores_tile(1, NQ, dqk, kj, ldk, qt, ldqt, sj, ldst, masked, j + lo, j + hi, block_max); break;
    default: break;
    }
}

FA_AVX2 static void scores_t_avx2(int keys, int rows_padded, int64_t dqk, const float *k,
                                  int64_t ldk, const float *qt, int64_t ldqt, float *st,
                                  int64_t ldst, int masked, int64_t lo, int64_t hi, float *block_max) {
    for (int i0 = 0; i0 < rows_padded; i0 += QV * VW) {
        const int64_t l = lo - i0, h = hi - i0;
        if (rows_padded - i0 >= QV * VW)
            scores_column(QV, keys, dqk, k, ldk, qt + i0, ldqt, st + i0, ldst, masked, l, h, block_max + i0);
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
        const __m256 a = exp2_nonpositive_ps(_mm256_sub_ps(m_old, m_use));
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
            const __m256 p0 = exp2_nonpositive_ps(_mm256_sub_ps(_mm256_loadu_ps(s0), m_use));
            const __m256 p1 = exp2_nonpositive_ps(_mm256_sub_ps(_mm256_loadu_ps(s1), m_use));
            _mm256_storeu_ps(s0, p0);
            _mm256_storeu_ps(s1, p1);
            sum0 = _mm256_add_ps(sum0, p0);
            sum1 = _mm256_add_ps(sum1, p1);
        }
        if (j < j1) {
            float *s0 = st + j * ldst + i;
            const __m256 p0 = exp2_nonpositive_ps(_mm256_sub_ps(_mm256_loadu_ps(s0), m_use));
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

// One P·V tile: NR queries × NV value vectors (NR ≤ 6, NV ≤ 2: 12 accumulators, 2 value
// vectors and a broadcast probability); the last vector is read under `tail` if TAIL.
FA_INLINE FA_AVX2 void pv_tile(const int NR, const int NV, const int TAIL, int keys,
                               const float *pt, int64_t ldpt, const float *v, int64_t ldv,
                               __m256i tail, const float *alpha, float *acc, int64_t ldacc) {
    __m256 c[MR][DV];
    int rescale = 0;
    for (int r = 0; r < NR; r++) rescale |= alpha[r] != 1.0f;
    // c = alpha · acc (skipped when no row's max moved)
    for (int r = 0; r < NR; r++) {
        const __m256 a = _mm256_set1_ps(alpha[r]);
        for (int w = 0; w < NV; w++) {
            c[r][w] = _mm256_loadu_ps(acc + r * ldacc + w * VW);
            if (rescale) c[r][w] = _mm256_mul_ps(c[r][w], a);
        }
    }
    // c[r, :] += Σ_j pt[j, r] · v[j, :], j in order
    for (int j = 0; j < keys; j++) {
        __m256 vv[DV];
        for (int w = 0; w < NV; w++)
            vv[w] = TAIL && w == NV - 1 ? _mm256_maskload_ps(v + j * ldv + w * VW, tail)
                                        : _mm256_loadu_ps(v + j * ldv + w * VW);
        const float *p = pt + j * ldpt;
        for (int r = 0; r < NR; r++) {
            const __m256 pb = _mm256_broadcast_ss(p + r);
            for (int w = 0; w < NV; w++) c[r][w] = _mm256_fmadd_ps(pb, vv[w], c[r][w]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) _mm256_storeu_ps(acc + r * ldacc + w * VW, c[r][w]);
}

// All rows against one group of NV value vectors: tiles of MR rows, then one of the rest.
FA_INLINE FA_AVX2 void pv_rows(const int NV, const int TAIL, int rows_padded, int keys,
                               const float *pt, int64_t ldpt, const float *v, int64_t ldv,
                               __m256i tail, const float *alpha, float *acc, int64_t ldacc,
                               int masked, int64_t lo, int64_t hi) {
    // A tile of NR rows from row i, over the keys its rows see (P = 0 elsewhere: skipped).
#define FA_PV(NR, i)                                                                          \
    do {                                                                                      \
        int j0, j1;                                                                           \
        fa_band_keys(keys, (i), (NR), masked, lo, hi, &j0, &j1);                              \
        pv_tile((NR), NV, TAIL, j1 - j0, pt + (int64_t)j0 * ldpt + (i), ldpt,                 \
                v + (int64_t)j0 * ldv, ldv, tail, alpha + (i), acc + (int64_t)(i) * ldacc,     \
                ldacc);                                                                       \
    } while (0)
    int i = 0;
    for (; i + MR <= rows_padded; i += MR) FA_PV(MR, i);
    switch (rows_padded - i) {
    case 5: FA_PV(5, i); break;
    case 4: FA_PV(4, i); break;
    case 3: FA_PV(3, i); break;
    case 2: FA_PV(2, i); break;
    case 1: FA_PV(1, i); break;
    default: break;
    }
#undef FA_PV
}

FA_AVX2 static void accumulate_pv_avx2(int rows_padded, int keys, int64_t dv, const float *pt,
                                       int64_t ldpt, const float *v, int64_t ldv,
                                       const float *alpha, float *acc, int64_t ldacc,
                                       int masked, int64_t lo, int64_t hi) {
    for (int64_t d0 = 0; d0 < dv; d0 += DV * VW) {
        const int64_t cols = dv - d0 < DV * VW ? dv - d0 : DV * VW;
        const int nv = (int)((cols + VW - 1) / VW);
        const int rem = (int)(cols - (int64_t)(nv - 1) * VW);
        const __m256i tail = first_lanes(rem);
        const float *vd = v + d0;
        float *ad = acc + d0;
        if (nv == 2 && rem == VW)
            pv_rows(2, 0, rows_padded, keys, pt, ldpt, vd, ldv, tail, alpha, ad, ldacc, masked, lo, hi);
        else if (nv == 2)
            pv_rows(2, 1, rows_padded, keys, pt, ldpt, vd, ldv, tail, alpha, ad, ldacc, masked, lo, hi);
        else if (rem == VW)
            pv_rows(1, 0, rows_padded, keys, pt, ldpt, vd, ldv, tail, alpha, ad, ldacc, masked, lo, hi);
        else
            pv_rows(1, 1, rows_padded, keys, pt, ldpt, vd, ldv, tail, alpha, ad, ldacc, masked, lo, hi);
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

// One gemm tile: NR rows × NV column vectors (NR ≤ 6, NV ≤ 2); the last vector of b is read
// under `tail` if TAIL.
FA_INLINE FA_AVX2 void gemm_tile(const int NR, const int NV, const int TAIL, int K,
                                 const float *a, int64_t a_rs, int64_t a_cs, const float *b,
                                 int64_t ldb, __m256i tail, float *c, int64_t ldc) {
    __m256 acc[MR][DV];
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) acc[r][w] = _mm256_loadu_ps(c + r * ldc + w * VW);
    // c[r, :] += Σ_k a[r, k] · b[k, :], k in order
    for (int k = 0; k < K; k++) {
        __m256 bv[DV];
        for (int w = 0; w < NV; w++)
            bv[w] = TAIL && w == NV - 1 ? _mm256_maskload_ps(b + k * ldb + w * VW, tail)
                                        : _mm256_loadu_ps(b + k * ldb + w * VW);
        for (int r = 0; r < NR; r++) {
            const __m256 ab = _mm256_broadcast_ss(a + r * a_rs + k * a_cs);
            for (int w = 0; w < NV; w++) acc[r][w] = _mm256_fmadd_ps(ab, bv[w], acc[r][w]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) _mm256_storeu_ps(c + r * ldc + w * VW, acc[r][w]);
}

// All M rows against one group of NV column vectors: tiles of MR rows, then one of the rest.
FA_INLINE FA_AVX2 void gemm_rows(const int NV, const int TAIL, int M, int K, const float *a,
                                 int64_t a_rs, int64_t a_cs, const float *b, int64_t ldb,
                                 __m256i tail, float *c, int64_t ldc) {
    int m = 0;
    for (; m + MR <= M; m += MR)
        gemm_tile(MR, NV, TAIL, K, a + m * a_rs, a_rs, a_cs, b, ldb, tail, c + m * ldc, ldc);
    const float *am = a + m * a_rs;
    float *cm = c + m * ldc;
    switch (M - m) {
    case 5: gemm_tile(5, NV, TAIL, K, am, a_rs, a_cs, b, ldb, tail, cm, ldc); break;
    case 4: gemm_tile(4, NV, TAIL, K, am, a_rs, a_cs, b, ldb, tail, cm, ldc); break;
    case 3: gemm_tile(3, NV, TAIL, K, am, a_rs, a_cs, b, ldb, tail, cm, ldc); break;
    case 2: gemm_tile(2, NV, TAIL, K, am, a_rs, a_cs, b, ldb, tail, cm, ldc); break;
    case 1: gemm_tile(1, NV, TAIL, K, am, a_rs, a_cs, b, ldb, tail, cm, ldc); break;
    default: break;
    }
}

FA_AVX2 static void gemm_acc_avx2(int M, int64_t N, int K, const float *a, int64_t a_rs,
                                  int64_t a_cs, const float *b, int64_t ldb, float *c,
                                  int64_t ldc) {
    for (int64_t n0 = 0; n0 < N; n0 += DV * VW) {  // 6 rows × 16 columns
        const int64_t cols = N - n0 < DV * VW ? N - n0 : DV * VW;
        const int nv = (int)((cols + VW - 1) / VW);
        const int rem = (int)(cols - (int64_t)(nv - 1) * VW);
        const __m256i tail = first_lanes(rem);
        const float *bn = b + n0;
        float *cn = c + n0;
        if (nv == 2 && rem == VW) gemm_rows(2, 0, M, K, a, a_rs, a_cs, bn, ldb, tail, cn, ldc);
        else if (nv == 2) gemm_rows(2, 1, M, K, a, a_rs, a_cs, bn, ldb, tail, cn, ldc);
        else if (rem == VW) gemm_rows(1, 0, M, K, a, a_rs, a_cs, bn, ldb, tail, cn, ldc);
        else gemm_rows(1, 1, M, K, a, a_rs, a_cs, bn, ldb, tail, cn, ldc);
    }
}

// ---- score modifiers ----

// tanh x, given e = e^(−2|x|) (computed by the caller without rounding x first): the odd
// polynomial x + x·z·P(z), z = x², where |x| < FA_TANH_SMALL; elsewhere ±(1 − e)/(1 + e).
FA_INLINE FA_AVX2 __m256 tanh_ps(__m256 x, __m256 e) {
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(FA_TANH_P4);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(FA_TANH_P3));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(FA_TANH_P2));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(FA_TANH_P1));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(FA_TANH_P0));
    const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    const __m256 big = _mm256_or_ps(_mm256_and_ps(x, sign),
                                    _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e)));
    const __m256 is_small = _mm256_cmp_ps(_mm256_andnot_ps(sign, x),
                                          _mm256_set1_ps(FA_TANH_SMALL), _CMP_LT_OQ);
    return _mm256_blendv_ps(big, small, is_small);
}

// In place: r[c] lane i ← r[i] lane c (an 8 × 8 transpose).
FA_INLINE FA_AVX2 void transpose8(__m256 r[VW]) {
    __m256 t[VW];
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
    for (int c = 0; c < VW; c++) r[c] = t[c];
}

// 8 bool mask bytes (the low 8 of b) → what they add to scores: 0 where nonzero, −inf where 0.
FA_INLINE FA_AVX2 __m256 mask_from_bytes(__m128i b) {
    const __m256i off = _mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(b), _mm256_setzero_si256());
    return _mm256_and_ps(_mm256_castsi256_ps(off), _mm256_set1_ps(-INFINITY));
}

// n (< 8) bool mask bytes, read one by one (8-byte loads could run past the mask's end).
FA_INLINE FA_AVX2 __m128i load_bytes(const uint8_t *p, int n) {
    uint8_t b[16] = {0};
    for (int k = 0; k < n; k++) b[k] = p[k];
    return _mm_loadu_si128((const __m128i *)b);
}

// One mask element (row i, key j of the tile) as added to a score: m·log2 e, or 0 / −inf.
FA_INLINE FA_AVX2 float mask_one(const fa_tile_mods *m, int64_t i, int64_t j) {
    const int64_t at = i * m->mask_q + j * m->mask_k;
    if (m->mask_bool) return m->mask_bool[at] ? 0.0f : -INFINITY;
    return m->mask_add[at] * FA_LOG2E;
}

// How the mask's strides let a tile read it.
enum { MASK_NONE, MASK_BROADCAST, MASK_QUERIES, MASK_KEYS, MASK_GENERAL };

// mv[jj] lane r = the mask added to key j0 + jj's score for row i0 + r (jj < nk, r < live:
// the tile's real rows), and 0 in lanes r ≥ live (pad rows: the mask is not read there).
FA_INLINE FA_AVX2 void mask_vectors(const fa_tile_mods *m, int path, int i0, int live, int j0,
                                    int nk, __m256 mv[VW]) {
    const __m256i rows = first_lanes(live);
    const __m256 log2e = _mm256_set1_ps(FA_LOG2E);
    if (path == MASK_BROADCAST) {  // [.., 1, Lk]: one element per key, for every row
        for (int jj = 0; jj < nk; jj++)
            mv[jj] = _mm256_and_ps(_mm256_castsi256_ps(rows), _mm256_set1_ps(mask_one(m, 0, j0 + jj)));
    } else if (path == MASK_QUERIES) {  // query stride 1: a vector load per key
        for (int jj = 0; jj < nk; jj++) {
            const int64_t at = (j0 + jj) * m->mask_k + i0;
            if (m->mask_bool) {
                const uint8_t *p = m->mask_bool + at;
                const __m128i b = live == VW ? _mm_loadl_epi64((const __m128i *)p) : load_bytes(p, live);
                mv[jj] = _mm256_and_ps(_mm256_castsi256_ps(rows), mask_from_bytes(b));
            } else {
                mv[jj] = _mm256_mul_ps(_mm256_maskload_ps(m->mask_add + at, rows), log2e);
            }
        }
    } else if (path == MASK_KEYS) {  // key stride 1: load 8 rows' keys, transpose
        const __m256i cols = first_lanes(nk);
        for (int r = 0; r < VW; r++) {
            const int64_t at = (int64_t)(i0 + r) * m->mask_q + j0;
            if (r >= live) {
                mv[r] = _mm256_setzero_ps();
            } else if (m->mask_bool) {
                const uint8_t *p = m->mask_bool + at;
                mv[r] = mask_from_bytes(nk == VW ? _mm_loadl_epi64((const __m128i *)p) : load_bytes(p, nk));
            } else {
                mv[r] = _mm256_mul_ps(_mm256_maskload_ps(m->mask_add + at, cols), log2e);
            }
        }
        transpose8(mv);
    } else {  // any other strides: element by element
        for (int jj = 0; jj < nk; jj++) {
            float v[VW];
            for (int r = 0; r < VW; r++) v[r] = r < live ? mask_one(m, i0 + r, j0 + jj) : 0.0f;
            mv[jj] = _mm256_loadu_ps(v);
        }
    }
}

// Per vector of 8 rows, key by key (the mask in 8-key sub-tiles):
//   x = s·ln2/c,  e = 2^(−2|s|/c) = e^(−2|x|),  s' = c·tanh(x)·log2 e,  d = 4e/(1 + e)²
//   s' −= slope2·|alibi_base + i − j|;  s' += mask (real rows);  −inf in, −inf out
// The dense additive mask alone (key stride 1; no soft-capping, ALiBi or derivative): per
// 8 rows × 8 keys, 8 row loads, a register transpose and one FMA per key vector
// (s + m·log2 e), mask rows asked for a few row groups ahead. Hidden scores (−inf) stay −inf.
FA_AVX2 static void additive_rows_avx2(const fa_tile_mods *m, int keys, int rows,
                                       int rows_padded, float *st, int64_t ldst,
                                       float *block_max) {
    const __m256 neg_inf = _mm256_set1_ps(-INFINITY), log2e = _mm256_set1_ps(FA_LOG2E);
    const int ahead = 8 * VW;  // rows asked for ahead of the row group being modified
    fa_prefetch_mask_rows(m, 0, rows < ahead ? rows : ahead, keys);
    for (int i0 = 0; i0 < rows_padded; i0 += VW) {
        const int live = rows - i0 < 0 ? 0 : (rows - i0 > VW ? VW : rows - i0);
        if (i0 + ahead < rows)
            fa_prefetch_mask_rows(m, i0 + ahead, rows < i0 + ahead + VW ? rows : i0 + ahead + VW, keys);
        __m256 mx = neg_inf;
        for (int j0 = 0; j0 < keys; j0 += VW) {
            const int nk = keys - j0 < VW ? keys - j0 : VW;
            const __m256i cols = first_lanes(nk);
            __m256 mv[VW];
            const float *row = m->mask_add + (int64_t)i0 * m->mask_q + j0;
            for (int r = 0; r < VW; r++)  // pad rows (r ≥ live) add 0 and read nothing
                mv[r] = r < live ? _mm256_maskload_ps(row + r * m->mask_q, cols) : _mm256_setzero_ps();
            transpose8(mv);
            float *sp = st + (int64_t)j0 * ldst + i0;
            for (int jj = 0; jj < nk; jj++, sp += ldst) {
                const __m256 s0 = _mm256_loadu_ps(sp);
                __m256 s = _mm256_fmadd_ps(mv[jj], log2e, s0);
                s = _mm256_blendv_ps(s, neg_inf, _mm256_cmp_ps(s0, neg_inf, _CMP_EQ_OQ));
                _mm256_storeu_ps(sp, s);
                mx = _mm256_max_ps(mx, s);
            }
        }
        _mm256_storeu_ps(block_max + i0, mx);
    }
}

FA_AVX2 static void score_mods_avx2(const fa_tile_mods *m, int keys, int rows, int rows_padded,
                                    float *st, int64_t ldst, float *block_max,
                                    float *derivative) {
    const float c = m->softcap;
    if (m->mask_add && m->mask_k == 1 && m->mask_q > 1 && c == 0.0f && !m->has_alibi &&
        !derivative) {
        additive_rows_avx2(m, keys, rows, rows_padded, st, ldst, block_max);
        return;
    }
    const int path = !m->mask_bool && !m->mask_add ? MASK_NONE
                   : m->mask_q == 0                ? MASK_BROADCAST
                   : m->mask_q == 1                ? MASK_QUERIES
                   : m->mask_k == 1                ? MASK_KEYS
                                                   : MASK_GENERAL;
    const __m256 neg_inf = _mm256_set1_ps(-INFINITY), one = _mm256_set1_ps(1.0f);
    const __m256 cap = _mm256_set1_ps(c), two = _mm256_set1_ps(2.0f);
    // Multiplications by 1/c instead of divisions by c (c > 0 only when used).
    const __m256 inv_c = _mm256_set1_ps(c > 0.0f ? 1.0f / c : 0.0f);
    const __m256 ln2_c = _mm256_set1_ps(c > 0.0f ? FA_LN2 / c : 0.0f);
    const __m256 log2e = _mm256_set1_ps(FA_LOG2E);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 slope2 = _mm256_set1_ps(m->alibi_slope2);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int i0 = 0; i0 < rows_padded; i0 += VW) {
        const int live = rows - i0 < 0 ? 0 : (rows - i0 > VW ? VW : rows - i0);
        __m256 mx = neg_inf;
        for (int j0 = 0; j0 < keys; j0 += VW) {
            const int nk = keys - j0 < VW ? keys - j0 : VW;
            __m256 mv[VW];
            const int masked = path != MASK_NONE && live > 0;
            if (masked) mask_vectors(m, path, i0, live, j0, nk, mv);
            for (int jj = 0; jj < nk; jj++) {
                const int64_t j = j0 + jj;
                float *sp = st + j * ldst + i0;
                const __m256 s0 = _mm256_loadu_ps(sp);
                __m256 s = s0, d = one;
                if (c > 0.0f) {
                    const __m256 x = _mm256_mul_ps(s0, ln2_c);  // s·ln2/c, e = 2^(−2|s|/c)
                    const __m256 abs2 = _mm256_mul_ps(two, _mm256_and_ps(s0, abs_mask));
                    const __m256 e = exp2_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), abs2), inv_c));
                    s = _mm256_mul_ps(_mm256_mul_ps(cap, tanh_ps(x, e)), log2e);
                    const __m256 e1 = _mm256_add_ps(one, e);
                    if (derivative) d = _mm256_div_ps(_mm256_mul_ps(_mm256_set1_ps(4.0f), e), _mm256_mul_ps(e1, e1));
                }
                if (m->has_alibi) {  // distance |alibi_base + i0 + lane − j|, exact as int32
                    const __m256i dist = _mm256_abs_epi32(_mm256_add_epi32(
                        lane, _mm256_set1_epi32((int32_t)(m->alibi_base + i0 - j))));
                    s = _mm256_fnmadd_ps(slope2, _mm256_cvtepi32_ps(dist), s);
                }
                if (masked) s = _mm256_add_ps(s, mv[jj]);
                s = _mm256_blendv_ps(s, neg_inf, _mm256_cmp_ps(s0, neg_inf, _CMP_EQ_OQ));
                _mm256_storeu_ps(sp, s);
                mx = _mm256_max_ps(mx, s);
                if (derivative)
                    _mm256_storeu_ps(derivative + j * ldst + i0,
                                     _mm256_and_ps(_mm256_cmp_ps(s, neg_inf, _CMP_NEQ_UQ), d));
            }
        }
        _mm256_storeu_ps(block_max + i0, mx);
    }
}

// ---- query-major row tiles (decoding), from the shared source ----
#include "vec_avx2.h"
#include "row_kernels.h"

const fa_kernels fa_kernels_avx2 = {
    .name = "avx2",
    .vector_width = VW,
    .query_tile = QV * VW,
    .key_tile = 4,  // key blocks (64) stay multiples of 4; 6-key tiles end with a 4-key one
    .pack_qt = pack_qt_avx2,
    .scores_t = scores_t_avx2,
    .softmax_t = softmax_t_avx2,
    .accumulate_pv = accumulate_pv_avx2,
    .softmax_grad_t = softmax_grad_t_avx2,
    .gemm_acc = gemm_acc_avx2,
    .score_mods = score_mods_avx2,
    .exp2 = exp2_avx2,
    .scores_q = row_scores,
    .softmax_q = row_softmax,
    .accumulate_pv_q = row_accumulate_pv,
};
