// tile_kernels.h — the key-major micro-kernels of microkernel.h (prefill and backward), written
// once over the thin vector layer (vec_avx512.h, vec_avx2.h, vec_portable.h) and compiled once
// per ISA: each ISA file includes its vector header, then this file, row_kernels.h and
// kernel_table.h. Not an ordinary header: no guard, and it defines static functions.
//
// What differs per ISA is data from the vector header: the vector width, the register tiles
// (TILE_ST_K keys × TILE_ST_Q query vectors for scores, TILE_PV_R rows × TILE_PV_V vectors for
// P·V and gemm, TILE_PV_LAST_R rows for the last columns), the softmax's number of sum chains,
// and the few operations that are truly the ISA's: exp2, masked tails, the register
// transpose, bool-mask bytes. An ISA file may bring its own pack_qt (TILE_PACK_QT).
//
// Every output element's arithmetic is fixed by the contract, not by the tile shapes: a score
// sums d in order (in two halves past TILE_DOT_SINGLE), an accumulator a block's keys in order
// from zero, then adds them, a softmax row sum keys in
// TILE_SOFTMAX_CHAINS chains (key j in chain j mod chains, the chains added pairwise), so the
// tiles may be cut in any shape without moving a bit.

// 2^x over an array, as the kernels compute it (any x).
VF_FN static void tile_exp2(const float *x, float *y, int64_t n) {
    int64_t j = 0;
    for (; j + VF_W <= n; j += VF_W) vf_storeu(y + j, vf_exp2_any(vf_loadu(x + j)));
    if (j < n) {
        const vtail t = vf_tail((int)(n - j));
        vf_store_tail(y + j, vf_exp2_any(vf_load_tail(x + j, t)), t);
    }
}

#ifndef TILE_PACK_QT
// qt[d, i] = scale · q[i, d]; zero pad queries.
VF_FN static void tile_pack_qt(int rows, int rows_padded, int64_t dqk, const float *q,
                               int64_t ldq, float scale, float *qt, int64_t ldqt) {
    for (int64_t d = 0; d < dqk; d++) {
        float *row = qt + d * ldqt;
        for (int i = 0; i < rows; i++) row[i] = scale * q[i * ldq + d];
        for (int i = rows; i < rows_padded; i++) row[i] = 0.0f;
    }
}
#define TILE_PACK_QT tile_pack_qt
#endif

// ---- scores: st[j, i] = Σ_d k[j, d] · qt[d, i] ----

enum { TileStKeysMax = TILE_ST_K1 > TILE_ST_K ? TILE_ST_K1 : TILE_ST_K };

// s with −inf in the lanes the band hides from key a: query i (lane + v·VF_W) sees key a iff
// a + lo ≤ i < a + hi.
VF_INLINE vf tile_band_fill(vf s, int64_t a, int v, int64_t lo, int64_t hi) {
    const int64_t first = lo + a - v * VF_W, last = hi + a - v * VF_W;
    const int f = first < 0 ? 0 : (first > VF_W ? VF_W : (int)first);
    const int l = last < 0 ? 0 : (last > VF_W ? VF_W : (int)last);
    return vf_fill_outside(s, f, l, -INFINITY);
}

// A finished scores tile (NK keys × NQ query vectors of sums; times `scale` when SCALED):
// −inf outside the band, stored, folded into block_max.
VF_INLINE void tile_scores_store(const int NK, const int NQ, const int SCALED,
                                 vf acc[TileStKeysMax][TILE_ST_Q], float scale, float *st,
                                 int64_t ldst, int masked, int64_t lo, int64_t hi,
                                 float *block_max) {
    const vf sc = vf_set1(scale);
    vf mx[TILE_ST_Q];
    for (int v = 0; v < NQ; v++) mx[v] = vf_loadu(block_max + v * VF_W);
    for (int a = 0; a < NK; a++) {
        for (int v = 0; v < NQ; v++) {
            vf s = SCALED ? vf_mul(acc[a][v], sc) : acc[a][v];
            if (masked) s = tile_band_fill(s, a, v, lo, hi);
            vf_storeu(st + a * ldst + v * VF_W, s);
            mx[v] = vf_max(mx[v], s);
        }
    }
    for (int v = 0; v < NQ; v++) vf_storeu(block_max + v * VF_W, mx[v]);
}

// One scores tile: NK keys × NQ query vectors (constants after inlining, so the accumulators
// live in registers), then banded, stored and folded into block_max. A head dim over
// TILE_DOT_SINGLE is summed in two halves, each a chain from zero, the halves then added: one
// FMA chain over all of d rounds every product into a sum grown over the whole dot product,
// and the score's error is what P, and through it every output and gradient, carries. Two
// halves take about a third off it at D = 64 and D = 128 (chunks of 32 took half off at
// D = 128, but each chunk's sums pass through memory: 4–7 % slower backward there). The first
// half's sums are parked in the tile: at D = 16 and 32 that costs 2–4 % of the whole forward in
// a C timing harness and 0–1 % in attention-bench (both halves side by side in registers, half
// the keys at a time, cost 6–8 %), for 6–18 % less output error (AVX2, Zen 2; issue 14's
// case grid, seeds 0–6).
enum { TILE_DOT_SINGLE = 8 };

// acc[a][v] = Σ_{d0 ≤ d < d1} k[a, d] · qt[d, v]: one chain per score, from zero.
VF_INLINE void tile_scores_chain(const int NK, const int NQ, int64_t d0, int64_t d1,
                                 const float *k, int64_t ldk, const float *qt, int64_t ldqt,
                                 vf acc[TileStKeysMax][TILE_ST_Q]) {
    for (int a = 0; a < NK; a++)
        for (int v = 0; v < NQ; v++) acc[a][v] = vf_zero();
    for (int64_t d = d0; d < d1; d++) {
        vf qv[TILE_ST_Q];
        for (int v = 0; v < NQ; v++) qv[v] = vf_loadu(qt + d * ldqt + v * VF_W);
        for (int a = 0; a < NK; a++) {
            const vf kb = vf_set1(k[a * ldk + d]);
            for (int v = 0; v < NQ; v++) acc[a][v] = vf_fma(kb, qv[v], acc[a][v]);
        }
    }
}

VF_INLINE void tile_scores(const int NK, const int NQ, int64_t dqk, const float *k, int64_t ldk,
                           const float *qt, int64_t ldqt, float *st, int64_t ldst, int masked,
                           int64_t lo, int64_t hi, float *block_max) {
    vf acc[TileStKeysMax][TILE_ST_Q];
    // Key a is seen by queries [a + lo, a + hi): if that misses the tile's queries for every
    // key (all below the first key's band, or all at or past the last key's), the tile is
    // all −inf, with no dot products to compute.
    const int hidden = masked && (lo >= NQ * VF_W || (NK - 1) + hi <= 0);
    const int64_t dots = hidden ? 0 : dqk;
    if (dots <= TILE_DOT_SINGLE) {
        tile_scores_chain(NK, NQ, 0, dots, k, ldk, qt, ldqt, acc);
    } else {
        // The first half's sums parked in st, the second half's added to them.
        const int64_t half = (dots + 1) / 2;
        tile_scores_chain(NK, NQ, 0, half, k, ldk, qt, ldqt, acc);
        for (int a = 0; a < NK; a++)
            for (int v = 0; v < NQ; v++) vf_storeu(st + a * ldst + v * VF_W, acc[a][v]);
        tile_scores_chain(NK, NQ, half, dots, k, ldk, qt, ldqt, acc);
        for (int a = 0; a < NK; a++)
            for (int v = 0; v < NQ; v++)
                acc[a][v] = vf_add(vf_loadu(st + a * ldst + v * VF_W), acc[a][v]);
    }
    tile_scores_store(NK, NQ, 0, acc, 1.0f, st, ldst, masked, lo, hi, block_max);
}

// All keys against NQ query vectors: tiles of TILE_ST_K keys (TILE_ST_K1 against a lone query
// vector), then one tile of the keys left.
VF_INLINE void tile_scores_column(const int NQ, int keys, int64_t dqk, const float *k,
                                  int64_t ldk, const float *qt, int64_t ldqt, float *st,
                                  int64_t ldst, int masked, int64_t lo, int64_t hi,
                                  float *block_max) {
    int j = 0;
    if (NQ == 1 && TILE_ST_K1 != TILE_ST_K)
        for (; j + TILE_ST_K1 <= keys; j += TILE_ST_K1)
            tile_scores(TILE_ST_K1, 1, dqk, k + j * ldk, ldk, qt, ldqt, st + j * ldst, ldst,
                        masked, j + lo, j + hi, block_max);
    for (; j + TILE_ST_K <= keys; j += TILE_ST_K)
        tile_scores(TILE_ST_K, NQ, dqk, k + j * ldk, ldk, qt, ldqt, st + j * ldst, ldst, masked,
                    j + lo, j + hi, block_max);
    const float *kj = k + j * ldk;
    float *sj = st + j * ldst;
    switch (keys - j) {
#define TILE_SCORES_REST(n)                                                                  \
    case n:                                                                                  \
        if (n < TILE_ST_K)                                                                   \
            tile_scores(n, NQ, dqk, kj, ldk, qt, ldqt, sj, ldst, masked, j + lo, j + hi,     \
                        block_max);                                                          \
        break;
    TILE_SCORES_REST(1) TILE_SCORES_REST(2) TILE_SCORES_REST(3) TILE_SCORES_REST(4)
    TILE_SCORES_REST(5) TILE_SCORES_REST(6) TILE_SCORES_REST(7)
#undef TILE_SCORES_REST
    default: break;
    }
}

VF_FN static void tile_scores_t(int keys, int rows_padded, int64_t dqk, const float *k,
                                int64_t ldk, const float *qt, int64_t ldqt, float *st,
                                int64_t ldst, int masked, int64_t lo, int64_t hi,
                                float *block_max) {
    for (int i0 = 0; i0 < rows_padded; i0 += TILE_ST_Q * VF_W) {
        const int left = (rows_padded - i0) / VF_W;
        const int nq = left < TILE_ST_Q ? left : TILE_ST_Q;
        (void)nq;  // unread where TILE_ST_Q is 1 (portable)
        // In this column, query i0 + i sees key j iff j + (lo − i0) ≤ i < j + (hi − i0).
        const int64_t l = lo - i0, h = hi - i0;
        const float *q = qt + i0;
        float *s = st + i0, *bm = block_max + i0;
#if TILE_ST_Q >= 3
        if (nq >= 3) {
            tile_scores_column(3, keys, dqk, k, ldk, q, ldqt, s, ldst, masked, l, h, bm);
            continue;
        }
#endif
#if TILE_ST_Q >= 2
        if (nq == 2) {
            tile_scores_column(2, keys, dqk, k, ldk, q, ldqt, s, ldst, masked, l, h, bm);
            continue;
        }
#endif
        tile_scores_column(1, keys, dqk, k, ldk, q, ldqt, s, ldst, masked, l, h, bm);
    }
}

// ---- online softmax over a key-major tile ----

VF_FN static void tile_softmax_t(int keys, int rows_padded, float *st, int64_t ldst,
                                 float *block_max, float *row_max, float *row_sum, float *alpha,
                                 int masked, int64_t lo, int64_t hi) {
    enum { C = TILE_SOFTMAX_CHAINS };
    const vf neg_inf = vf_set1(-INFINITY);
    for (int i = 0; i < rows_padded; i += VF_W) {
        const vf m_old = vf_loadu(row_max + i);
        const vf m_new = vf_max(m_old, vf_loadu(block_max + i));
        // m' = −inf: nothing visible yet; subtract 0 instead so P = 2^(−inf) = 0, not NaN.
        const vf m_use = vf_select(vf_eq(m_new, neg_inf), m_new, vf_zero());
        const vf a = vf_exp2(vf_sub(m_old, m_use));
        // C independent chains (key j in chain j mod C) hide the exp latency; the order is
        // fixed, so are the bits.
        vf sum[C];
        for (int c = 0; c < C; c++) sum[c] = vf_zero();
        // Keys outside these rows' band are −inf: their P is 0, stored without an exp2 (and
        // adding those zeros would not change the sums, so the chains keep their keys).
        int j0, j1;
        fa_band_keys(keys, i, VF_W, masked, lo, hi, &j0, &j1);
        j0 &= ~(C - 1);
        for (int z = 0; z < j0; z++) vf_storeu(st + z * ldst + i, vf_zero());
        for (int z = j1; z < keys; z++) vf_storeu(st + z * ldst + i, vf_zero());
        int j = j0;
        for (; j + C <= j1; j += C) {
            for (int c = 0; c < C; c++) {
                float *s = st + (j + c) * ldst + i;
                const vf p = vf_exp2(vf_sub(vf_loadu(s), m_use));
                vf_storeu(s, p);
                sum[c] = vf_add(sum[c], p);
            }
        }
        for (; j < j1; j++) {
            float *s = st + j * ldst + i;
            const vf p = vf_exp2(vf_sub(vf_loadu(s), m_use));
            vf_storeu(s, p);
            sum[j & (C - 1)] = vf_add(sum[j & (C - 1)], p);
        }
        for (int w = 1; w < C; w *= 2)  // pairwise: (0 + 1) + (2 + 3)
            for (int c = 0; c + w < C; c += 2 * w) sum[c] = vf_add(sum[c], sum[c + w]);
        vf_storeu(row_sum + i, vf_fma(a, vf_loadu(row_sum + i), sum[0]));
        vf_storeu(row_max + i, m_new);
        vf_storeu(alpha + i, a);
        vf_storeu(block_max + i, neg_inf);
    }
}

// ---- c[r, :] += Σ_k a[r, k] · b[k, :]: P·V and the backward's products ----

// One tile: NR rows × NV column vectors of c (constants after inlining); a(r, k) =
// a[r·a_rs + k·a_cs]; b's last vector read under `tail` when TAIL (else whole vectors, plain
// loads only, issued in address order). Every call's K products are summed from zero and
// added to c once: a chain of one block, not of the whole sequence, for the same loads,
// stores and FMAs. With SCALED (the forward's P·V), c = alpha[r]·c + sum as one fma (an add
// where every row's alpha is exactly 1: no row max moved); without (the backward's dQ, dK, dV,
// summed over every key or query block), c + sum. At N = 1000, causal, that took dK's and dV's
// RMS error against float64 to half, and the output's by a third. (An earlier forward
// version held the alphas in registers across the loop and measured 3–12 % slower; read after
// it, they cost nothing measurable: 0.98–1.0× the chained time at N = 2048, D = 64 and 128.)
VF_INLINE void tile_gemm(const int NR, const int NV, const int TAIL, const int SCALED, int K,
                         const float *a, int64_t a_rs, int64_t a_cs, const float *b, int64_t ldb,
                         vtail tail, const float *alpha, float *c, int64_t ldc) {
    vf acc[TILE_PV_LAST_R > TILE_PV_R ? TILE_PV_LAST_R : TILE_PV_R][TILE_PV_V];
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) acc[r][w] = vf_zero();
    for (int k = 0; k < K; k++) {
        vf bv[TILE_PV_V];
        for (int w = 0; w < NV; w++)
            bv[w] = TAIL && w == NV - 1 ? vf_load_tail(b + k * ldb + w * VF_W, tail)
                                        : vf_loadu(b + k * ldb + w * VF_W);
        for (int r = 0; r < NR; r++) {
            const vf ab = vf_set1(a[r * a_rs + k * a_cs]);
            for (int w = 0; w < NV; w++) acc[r][w] = vf_fma(ab, bv[w], acc[r][w]);
        }
    }
    // The alphas are read only now: held across the loop, they would take registers from it.
    int rescale = 0;
    if (SCALED)
        for (int r = 0; r < NR; r++) rescale |= alpha[r] != 1.0f;
    for (int r = 0; r < NR; r++) {
        const vf al = vf_set1(rescale ? alpha[r] : 1.0f);
        for (int w = 0; w < NV; w++) {
            float *cw = c + r * ldc + w * VF_W;
            const vf old = vf_loadu(cw);
            vf_storeu(cw, rescale ? vf_fma(al, old, acc[r][w]) : vf_add(old, acc[r][w]));
        }
    }
}

// The k range row tile [i, i + nr) of P·V needs: the keys its rows see (P = 0 elsewhere).
typedef struct tile_band {
    int masked;
    int64_t lo, hi;
} tile_band;

// One row tile of NR rows from row i: P·V over the keys in its band (band NULL: all K), or
// the plain gemm.
VF_INLINE void tile_gemm_band(const int NR, const int NV, const int TAIL, const int SCALED,
                              const tile_band *band, int i, int K, const float *a, int64_t a_rs,
                              int64_t a_cs, const float *b, int64_t ldb, vtail tail,
                              const float *alpha, float *c, int64_t ldc) {
    int k0 = 0, k1 = K;
    if (band) fa_band_keys(K, i, NR, band->masked, band->lo, band->hi, &k0, &k1);
    tile_gemm(NR, NV, TAIL, SCALED, k1 - k0, a + (int64_t)i * a_rs + (int64_t)k0 * a_cs, a_rs,
              a_cs, b + (int64_t)k0 * ldb, ldb, tail, SCALED ? alpha + i : alpha,
              c + (int64_t)i * ldc, ldc);
}

// All M rows against one strip of NV column vectors: tiles of R rows, then one of the rest.
VF_INLINE void tile_gemm_rows(const int R, const int NV, const int TAIL, const int SCALED,
                              const tile_band *band, int M, int K, const float *a, int64_t a_rs,
                              int64_t a_cs, const float *b, int64_t ldb, vtail tail,
                              const float *alpha, float *c, int64_t ldc) {
    int i = 0;
    for (; i + R <= M; i += R)
        tile_gemm_band(R, NV, TAIL, SCALED, band, i, K, a, a_rs, a_cs, b, ldb, tail, alpha, c, ldc);
    switch (M - i) {
#define TILE_GEMM_REST(n)                                                                    \
    case n:                                                                                  \
        if (n < R)                                                                           \
            tile_gemm_band(n, NV, TAIL, SCALED, band, i, K, a, a_rs, a_cs, b, ldb, tail,     \
                           alpha, c, ldc);                                                   \
        break;
    TILE_GEMM_REST(1) TILE_GEMM_REST(2) TILE_GEMM_REST(3) TILE_GEMM_REST(4)
    TILE_GEMM_REST(5) TILE_GEMM_REST(6) TILE_GEMM_REST(7)
#undef TILE_GEMM_REST
    default: break;
    }
}

// One column strip: R rows × NV vectors, the tail flag picked at run time.
VF_INLINE void tile_gemm_strip(const int R, const int NV, const int SCALED, int rem,
                               const tile_band *band, int M, int K, const float *a, int64_t a_rs,
                               int64_t a_cs, const float *b, int64_t ldb, const float *alpha,
                               float *c, int64_t ldc) {
    const vtail tail = vf_tail(rem);
    if (rem == VF_W)
        tile_gemm_rows(R, NV, 0, SCALED, band, M, K, a, a_rs, a_cs, b, ldb, tail, alpha, c, ldc);
    else
        tile_gemm_rows(R, NV, 1, SCALED, band, M, K, a, a_rs, a_cs, b, ldb, tail, alpha, c, ldc);
}

// c (M × N) += a · b over column strips: TILE_PV_R rows × TILE_PV_V vectors while more than
// TILE_PV_V − 1 vectors of columns are left, then TILE_PV_LAST_R rows × the 1 … TILE_PV_V − 1
// vectors left. Each c element sums its k in order, whatever the strip.
VF_INLINE void tile_gemm_all(const int SCALED, const tile_band *band, int M, int64_t N, int K,
                             const float *a, int64_t a_rs, int64_t a_cs, const float *b,
                             int64_t ldb, const float *alpha, float *c, int64_t ldc) {
    enum { V = TILE_PV_V };
    int64_t n0 = 0;
    for (; N - n0 > (V - 1) * VF_W; n0 += V * VF_W) {
        const int64_t cols = N - n0 < V * VF_W ? N - n0 : V * VF_W;
        tile_gemm_strip(TILE_PV_R, V, SCALED, (int)(cols - (V - 1) * VF_W), band, M, K, a, a_rs,
                        a_cs, b + n0, ldb, alpha, c + n0, ldc);
    }
    if (n0 < N) {
        const int64_t cols = N - n0;
        const int nv = (int)((cols + VF_W - 1) / VF_W);
        const int rem = (int)(cols - (int64_t)(nv - 1) * VF_W);
        const float *bn = b + n0;
        float *cn = c + n0;
#if TILE_PV_V > 3
        if (nv == 3) {
            tile_gemm_strip(TILE_PV_LAST_R, 3, SCALED, rem, band, M, K, a, a_rs, a_cs, bn, ldb, alpha, cn, ldc);
            return;
        }
#endif
#if TILE_PV_V > 2
        if (nv == 2) {
            tile_gemm_strip(TILE_PV_LAST_R, 2, SCALED, rem, band, M, K, a, a_rs, a_cs, bn, ldb, alpha, cn, ldc);
            return;
        }
#endif
        tile_gemm_strip(TILE_PV_LAST_R, 1, SCALED, rem, band, M, K, a, a_rs, a_cs, bn, ldb, alpha, cn, ldc);
    }
}

// acc[i, :] = alpha[i] · acc[i, :] + Σ_j pt[j, i] · v[j, :]: P is key-major, so a(i, j) is
// pt[j·ldpt + i]; a row tile skips the keys its band hides from all its rows.
VF_FN static void tile_accumulate_pv(int rows_padded, int keys, int64_t dv, const float *pt,
                                     int64_t ldpt, const float *v, int64_t ldv,
                                     const float *alpha, float *acc, int64_t ldacc, int masked,
                                     int64_t lo, int64_t hi) {
    const tile_band band = {masked, lo, hi};
    tile_gemm_all(1, &band, rows_padded, dv, keys, pt, 1, ldpt, v, ldv, alpha, acc, ldacc);
}

VF_FN static void tile_gemm_acc(int M, int64_t N, int K, const float *a, int64_t a_rs,
                                int64_t a_cs, const float *b, int64_t ldb, float *c,
                                int64_t ldc) {
    tile_gemm_all(0, NULL, M, N, K, a, a_rs, a_cs, b, ldb, NULL, c, ldc);
}

// ---- backward: P from the logsumexp, dS = P · (dP − D) ----

VF_FN static void tile_softmax_grad_t(int keys, int rows_padded, float *st, float *dpt,
                                      int64_t ld, const float *lse2, const float *lse2_fix,
                                      const float *dsum) {
    for (int i = 0; i < rows_padded; i += VF_W) {
        const vf l = vf_loadu(lse2 + i), fix = vf_loadu(lse2_fix + i);
        // A row that saw no key has lse = −inf: subtract +inf instead, so P = 2^(−inf) = 0.
        const vf l_use = vf_select(vf_eq(l, vf_set1(-INFINITY)), l, vf_set1(INFINITY));
        const vf d = vf_loadu(dsum + i);
        // A hidden pair (score −inf) gets P = dS = 0 exactly, even in a row whose LSE or D
        // is NaN (a row that saw a NaN): 2^(−inf − NaN) and 0 · NaN would be NaN.
        for (int j = 0; j < keys; j++) {
            float *s = st + j * ld + i, *g = dpt + j * ld + i;
            const vf sv = vf_loadu(s);
            const vm seen = vf_neq(sv, vf_set1(-INFINITY));
            const vf e = vf_exp2_any(vf_sub(sv, l_use));
            const vf p = vf_zero_unless(seen, vf_fma(e, fix, e));
            vf_storeu(s, p);
            vf_storeu(g, vf_zero_unless(seen, vf_mul(p, vf_sub(vf_loadu(g), d))));
        }
    }
}

// ---- score modifiers ----

// tanh x, given e = e^(−2|x|) (computed by the caller without rounding x first): the odd
// polynomial x + x·z·P(z), z = x², where |x| < FA_TANH_SMALL; elsewhere ±(1 − e)/(1 + e).
VF_INLINE vf tile_tanh(vf x, vf e) {
    const vf z = vf_mul(x, x);
    vf p = vf_set1(FA_TANH_P4);
    p = vf_fma(p, z, vf_set1(FA_TANH_P3));
    p = vf_fma(p, z, vf_set1(FA_TANH_P2));
    p = vf_fma(p, z, vf_set1(FA_TANH_P1));
    p = vf_fma(p, z, vf_set1(FA_TANH_P0));
    const vf small = vf_fma(vf_mul(p, z), x, x);
    const vf one = vf_set1(1.0f);
    const vf big = vf_with_sign_of(vf_div(vf_sub(one, e), vf_add(one, e)), x);
    return vf_select(vf_lt(vf_abs(x), vf_set1(FA_TANH_SMALL)), big, small);
}

// One mask element (row i, key j of the tile) as added to a score: m·log2 e, or 0 / −inf.
static inline float tile_mask_one(const fa_tile_mods *m, int64_t i, int64_t j) {
    const int64_t at = i * m->mask_q + j * m->mask_k;
    if (m->mask_bool) return m->mask_bool[at] ? 0.0f : -INFINITY;
    return m->mask_add[at] * FA_LOG2E;
}

// How the mask's strides let a tile read it.
enum { TileMaskNone, TileMaskBroadcast, TileMaskQueries, TileMaskKeys, TileMaskGeneral };

// mv[jj] lane r = the mask added to key j0 + jj's score for row i0 + r (jj < nk, r < live:
// the tile's real rows), and 0 in lanes r ≥ live (pad rows: the mask is not read there).
VF_INLINE void tile_mask_vectors(const fa_tile_mods *m, int path, int i0, int live, int j0,
                                 int nk, vf mv[VF_W]) {
    const vtail rows = vf_tail(live);
    const vf log2e = vf_set1(FA_LOG2E);
    if (path == TileMaskBroadcast) {  // [.., 1, Lk]: one element per key, for every row
        for (int jj = 0; jj < nk; jj++)
            mv[jj] = vf_zero_past(vf_set1(tile_mask_one(m, 0, j0 + jj)), rows);
    } else if (path == TileMaskQueries) {  // query stride 1: a vector load per key
        for (int jj = 0; jj < nk; jj++) {
            const int64_t at = (j0 + jj) * m->mask_k + i0;
            mv[jj] = m->mask_bool ? vf_zero_past(vf_bool_bytes(m->mask_bool + at, live), rows)
                                  : vf_mul(vf_load_tail(m->mask_add + at, rows), log2e);
        }
    } else if (path == TileMaskKeys) {  // key stride 1: load VF_W rows' keys, transpose
        const vtail cols = vf_tail(nk);
        for (int r = 0; r < VF_W; r++) {
            const int64_t at = (int64_t)(i0 + r) * m->mask_q + j0;
            if (r >= live) mv[r] = vf_zero();
            else if (m->mask_bool) mv[r] = vf_bool_bytes(m->mask_bool + at, nk);
            else mv[r] = vf_mul(vf_load_tail(m->mask_add + at, cols), log2e);
        }
        vf_transpose(mv);
    } else {  // any other strides: element by element
        for (int jj = 0; jj < nk; jj++) {
            float v[VF_W];
            for (int r = 0; r < VF_W; r++) v[r] = r < live ? tile_mask_one(m, i0 + r, j0 + jj) : 0.0f;
            mv[jj] = vf_loadu(v);
        }
    }
}

// Rows asked for ahead of the row group being modified, for masks read row by row.
enum { TileMaskAheadFast = 64, TileMaskAhead = 32 };

// The dense additive mask alone (key stride 1; no soft-capping, ALiBi or derivative), the
// case a mask costs most in: per VF_W rows × VF_W keys, VF_W row loads, a register transpose
// and one FMA per key vector (s + m·log2 e). Scores hidden by the band (−inf) stay −inf.
VF_FN static void tile_additive_rows(const fa_tile_mods *m, int keys, int rows, int rows_padded,
                                     float *st, int64_t ldst, float *block_max) {
    const vf neg_inf = vf_set1(-INFINITY), log2e = vf_set1(FA_LOG2E);
    const int ahead = TileMaskAheadFast;
    fa_prefetch_mask_rows(m, 0, rows < ahead ? rows : ahead, keys);
    for (int i0 = 0; i0 < rows_padded; i0 += VF_W) {
        const int live = rows - i0 < 0 ? 0 : (rows - i0 > VF_W ? VF_W : rows - i0);
        if (i0 + ahead < rows)
            fa_prefetch_mask_rows(m, i0 + ahead, rows < i0 + ahead + VF_W ? rows : i0 + ahead + VF_W, keys);
        vf mx = neg_inf;
        for (int j0 = 0; j0 < keys; j0 += VF_W) {
            const int nk = keys - j0 < VF_W ? keys - j0 : VF_W;
            const vtail cols = vf_tail(nk);
            vf mv[VF_W];
            const float *row = m->mask_add + (int64_t)i0 * m->mask_q + j0;
            for (int r = 0; r < VF_W; r++)  // pad rows (r ≥ live) add 0 and read nothing
                mv[r] = r < live ? vf_load_tail(row + r * m->mask_q, cols) : vf_zero();
            vf_transpose(mv);
            float *sp = st + (int64_t)j0 * ldst + i0;
            for (int jj = 0; jj < nk; jj++, sp += ldst) {
                const vf s0 = vf_loadu(sp);
                // −inf masks, whatever the score (NaN + −inf would be NaN): a masked key's
                // K never reaches the row.
                const vm hidden = vf_or_mask(vf_eq(s0, neg_inf), vf_eq(mv[jj], neg_inf));
                const vf s = vf_select(hidden, vf_fma(mv[jj], log2e, s0), neg_inf);
                vf_storeu(sp, s);
                mx = vf_max(mx, s);
            }
        }
        vf_storeu(block_max + i0, mx);
    }
}

// Per vector of VF_W rows, key by key (the mask in VF_W-key sub-tiles):
//   x = s·ln2/c,  e = 2^(−2|s|/c) = e^(−2|x|),  s' = c·tanh(x)·log2 e,  d = 4e/(1 + e)²
//   s' −= slope2·|alibi_base + i − j|;  s' += mask (real rows);  −inf in, −inf out
VF_FN static void tile_score_mods(const fa_tile_mods *m, int keys, int rows, int rows_padded,
                                  float *st, int64_t ldst, float *block_max, float *derivative) {
    const float c = m->softcap;
    if (m->mask_add && m->mask_k == 1 && m->mask_q > 1 && c == 0.0f && !m->has_alibi &&
        !derivative) {
        tile_additive_rows(m, keys, rows, rows_padded, st, ldst, block_max);
        return;
    }
    const int path = !m->mask_bool && !m->mask_add ? TileMaskNone
                   : m->mask_q == 0                ? TileMaskBroadcast
                   : m->mask_q == 1                ? TileMaskQueries
                   : m->mask_k == 1                ? TileMaskKeys
                                                   : TileMaskGeneral;
    const vf neg_inf = vf_set1(-INFINITY), one = vf_set1(1.0f);
    const vf cap = vf_set1(c), two = vf_set1(2.0f);
    // Multiplications by 1/c instead of divisions by c (c > 0 only when used).
    const vf inv_c = vf_set1(c > 0.0f ? 1.0f / c : 0.0f);
    const vf ln2_c = vf_set1(c > 0.0f ? FA_LN2 / c : 0.0f);
    const vf log2e = vf_set1(FA_LOG2E);
    const vf slope2 = vf_set1(m->alibi_slope2);
    const int ahead = TileMaskAhead;
    if (path == TileMaskKeys) fa_prefetch_mask_rows(m, 0, rows < ahead ? rows : ahead, keys);
    for (int i0 = 0; i0 < rows_padded; i0 += VF_W) {
        const int live = rows - i0 < 0 ? 0 : (rows - i0 > VF_W ? VF_W : rows - i0);
        vf mx = neg_inf;
        if (path == TileMaskKeys && i0 + ahead < rows)
            fa_prefetch_mask_rows(m, i0 + ahead, rows < i0 + ahead + VF_W ? rows : i0 + ahead + VF_W, keys);
        for (int j0 = 0; j0 < keys; j0 += VF_W) {
            const int nk = keys - j0 < VF_W ? keys - j0 : VF_W;
            vf mv[VF_W];
            const int masked = path != TileMaskNone && live > 0;
            if (masked) tile_mask_vectors(m, path, i0, live, j0, nk, mv);
            for (int jj = 0; jj < nk; jj++) {
                const int64_t j = j0 + jj;
                float *sp = st + j * ldst + i0;
                const vf s0 = vf_loadu(sp);
                vf s = s0, d = one;
                if (c > 0.0f) {
                    const vf x = vf_mul(s0, ln2_c);  // s·ln2/c, e = 2^(−2|s|/c)
                    const vf abs2 = vf_mul(two, vf_abs(s0));
                    const vf e = vf_exp2_any(vf_mul(vf_sub(vf_zero(), abs2), inv_c));
                    s = vf_mul(vf_mul(cap, tile_tanh(x, e)), log2e);
                    const vf e1 = vf_add(one, e);
                    if (derivative) d = vf_div(vf_mul(vf_set1(4.0f), e), vf_mul(e1, e1));
                }
                if (m->has_alibi)  // distance |alibi_base + i0 + lane − j|, exact as int32
                    s = vf_fnma(slope2, vf_abs_lane_offset((int32_t)(m->alibi_base + i0 - j)), s);
                vm hidden = vf_eq(s0, neg_inf);
                if (masked) {  // −inf masks whatever the score (NaN + −inf would be NaN)
                    s = vf_add(s, mv[jj]);
                    hidden = vf_or_mask(hidden, vf_eq(mv[jj], neg_inf));
                }
                s = vf_select(hidden, s, neg_inf);
                vf_storeu(sp, s);
                mx = vf_max(mx, s);
                if (derivative) vf_storeu(derivative + j * ldst + i0, vf_zero_unless(vf_neq(s, neg_inf), d));
            }
        }
        vf_storeu(block_max + i0, mx);
    }
}
