// bf16_tile_kernels.h — key-major kernels over bf16 pairs (prefill and backward, Q, K and V all
// stored in bf16), written once over a pair layer and compiled per ISA: vec_avx512_bf16.h
// (vdpbf16ps, avx512_bf16.c) and vec_neon_bf16.h (BFDOT, neon_bf16.c). Two bf16 products per
// fp32 lane per instruction: twice the multiply-adds of an fp32 FMA at the same instruction
// rate (Zen 4: 113 against 57 GMAC/s per core, measured). Not an ordinary header: no guard,
// static functions, included after tile_kernels.h.
//
// The pair layer: vbh (VF_W pairs, 32 bits each, low half first), vbh_loadu, vbh_set1,
// vf_dot_bf16 (acc[l] += a[2l]·b[2l] + a[2l+1]·b[2l+1]), and the conversions vbh_store_rounded,
// vbh_store_zipped, vf_store_bf16x2 and vf_store_bf16. bf16 × bf16 products are exact in fp32
// (8 × 8 significant bits). vdpbf16ps rounds each of the two adds to nearest even, as an FMA
// chain over d does — so the scores carry the fp32 path's error — and treats subnormal inputs
// and results as zero (|x| < 2⁻¹²⁶ ≈ 1.2e-38, far below any score's error). BFDOT without
// FEAT_EBF16 rounds to odd instead: at most one fp32 unit per step (neon_bf16.c).
//
// Scores: Q is packed once per query block as pairs along d, qt2[p, i] = (q[i, 2p], q[i, 2p+1])
// (32 bits, low half first), unscaled — a scaled Q would be rounded back to bf16 — and the
// scale·log2 e is applied to each finished score (one more rounding, within the fp32 bound).
// K rows are read where they lie: a key's pair (k[2p], k[2p+1]) is one 32-bit broadcast.
//
// P·V: P (fp32, the softmax's output) is rounded to bf16, to nearest even — the one place the
// forward's arithmetic differs from fp32: each product p·v is off by at most 2⁻⁸·p·|v| (bf16's
// unit roundoff: 8 significant bits), so an output row by at most 2⁻⁸·max|v| (the same order
// as rounding the output to bf16, which follows). V is packed once per key block as pairs
// along the keys, v2[jp, c] = (v[2jp, c], v[2jp+1, c]), and P pairs, p2[jp, i] = (P[2jp, i],
// P[2jp+1, i]), are written over the scores (row jp of the tile holds pair jp: each pair is
// read before its row is overwritten).
//
// The backward (frame/backward.c) runs its five products on these kernels: Sᵀ and dPᵀ as the
// scores (exact products, fp32 sums), dV = Pᵀ·dO, dK = dSᵀ·Q and dQ = dS·K with P and dS
// rounded to bf16 — each gradient off by at most 2⁻⁸ times its sum of absolute products more
// than in fp32, again the order of its own rounding to bf16. Pairs run along each product's
// reduction axis: the queries for dV and dK (a key's P or dS row, rounded in place, is already
// pairs; Q and dO rows are paired), the keys for dQ (dS and K rows paired).

// qt2[p, i] = (q[i, 2p], q[i, 2p+1]) for i < rows; 0 for rows ≤ i < rows_padded and for the
// missing half of an odd head dim's last pair.
VF_FN static void pack_qt_bf16(int rows, int rows_padded, int64_t dqk, const uint16_t *q,
                               int64_t ldq, uint32_t *qt2, int64_t ldqt2) {
    const int64_t pairs = (dqk + 1) / 2;
    for (int64_t p = 0; p < pairs; p++) {
        uint32_t *row = qt2 + p * ldqt2;
        const int64_t d = 2 * p;
        for (int i = 0; i < rows; i++) {
            const uint16_t *qi = q + i * ldq;
            row[i] = (uint32_t)qi[d] | (d + 1 < dqk ? (uint32_t)qi[d + 1] << 16 : 0u);
        }
        for (int i = rows; i < rows_padded; i++) row[i] = 0;
    }
}

// One scores tile: NK keys × NQ query vectors, over the d pairs, then scaled, banded, stored
// and folded into block_max (as tile_scores).
VF_INLINE void bf16_scores_tile(const int NK, const int NQ, int64_t dqk, const uint16_t *k,
                                int64_t ldk, const uint32_t *qt2, int64_t ldqt2, float scale,
                                float *st, int64_t ldst, int masked, int64_t lo, int64_t hi,
                                float *block_max) {
    vf acc[TileStKeysMax][TILE_ST_Q];
    for (int a = 0; a < NK; a++)
        for (int v = 0; v < NQ; v++) acc[a][v] = vf_zero();
    const int hidden = masked && (lo >= NQ * VF_W || (NK - 1) + hi <= 0);
    const int64_t full = hidden ? 0 : dqk / 2;  // whole pairs; an odd dim's last one below
    for (int64_t p = 0; p < full; p++) {
        vbh qv[TILE_ST_Q];
        for (int v = 0; v < NQ; v++) qv[v] = vbh_loadu(qt2 + p * ldqt2 + v * VF_W);
        for (int a = 0; a < NK; a++) {
            uint32_t pair;
            __builtin_memcpy(&pair, k + a * ldk + 2 * p, 4);
            const vbh kb = vbh_set1(pair);
            for (int v = 0; v < NQ; v++) acc[a][v] = vf_dot_bf16(acc[a][v], kb, qv[v]);
        }
    }
    if (!hidden && (dqk & 1)) {  // the last element alone: (k[d], 0)
        const int64_t p = dqk / 2;
        vbh qv[TILE_ST_Q];
        for (int v = 0; v < NQ; v++) qv[v] = vbh_loadu(qt2 + p * ldqt2 + v * VF_W);
        for (int a = 0; a < NK; a++) {
            const vbh kb = vbh_set1(k[a * ldk + dqk - 1]);
            for (int v = 0; v < NQ; v++) acc[a][v] = vf_dot_bf16(acc[a][v], kb, qv[v]);
        }
    }
    tile_scores_store(NK, NQ, 1, acc, scale, st, ldst, masked, lo, hi, block_max);
}

VF_INLINE void bf16_scores_column(const int NQ, int keys, int64_t dqk, const uint16_t *k,
                                  int64_t ldk, const uint32_t *qt2, int64_t ldqt2, float scale,
                                  float *st, int64_t ldst, int masked, int64_t lo, int64_t hi,
                                  float *block_max) {
    int j = 0;
    for (; j + TILE_ST_K <= keys; j += TILE_ST_K)
        bf16_scores_tile(TILE_ST_K, NQ, dqk, k + j * ldk, ldk, qt2, ldqt2, scale, st + j * ldst,
                         ldst, masked, j + lo, j + hi, block_max);
    const uint16_t *kj = k + j * ldk;
    float *sj = st + j * ldst;
    switch (keys - j) {
#define BF16_SCORES_REST(n)                                                                  \
    case n:                                                                                  \
        if (n < TILE_ST_K)                                                                   \
            bf16_scores_tile(n, NQ, dqk, kj, ldk, qt2, ldqt2, scale, sj, ldst, masked,       \
                             j + lo, j + hi, block_max);                                     \
        break;
    BF16_SCORES_REST(1) BF16_SCORES_REST(2) BF16_SCORES_REST(3) BF16_SCORES_REST(4)
    BF16_SCORES_REST(5) BF16_SCORES_REST(6) BF16_SCORES_REST(7)
#undef BF16_SCORES_REST
    default: break;
    }
}

// (unused where the AMX kernels replace it: avx512_amx.c)
VF_FN __attribute__((unused)) static void scores_t_bf16(int keys, int rows_padded, int64_t dqk,
                                                        const uint16_t *k, int64_t ldk,
                                                        const uint32_t *qt2, int64_t ldqt2,
                                                        float scale, float *st, int64_t ldst,
                                                        int masked, int64_t lo, int64_t hi,
                                                        float *block_max) {
    for (int i0 = 0; i0 < rows_padded; i0 += TILE_ST_Q * VF_W) {
        const int left = (rows_padded - i0) / VF_W;
        const int nq = left < TILE_ST_Q ? left : TILE_ST_Q;
        const int64_t l = lo - i0, h = hi - i0;
        const uint32_t *q = qt2 + i0;
        float *s = st + i0, *bm = block_max + i0;
        (void)nq;  // unread where TILE_ST_Q is 1
#if TILE_ST_Q >= 3
        if (nq >= 3) {
            bf16_scores_column(3, keys, dqk, k, ldk, q, ldqt2, scale, s, ldst, masked, l, h, bm);
            continue;
        }
#endif
#if TILE_ST_Q >= 2
        if (nq == 2) {
            bf16_scores_column(2, keys, dqk, k, ldk, q, ldqt2, scale, s, ldst, masked, l, h, bm);
            continue;
        }
#endif
        bf16_scores_column(1, keys, dqk, k, ldk, q, ldqt2, scale, s, ldst, masked, l, h, bm);
    }
}

// ---- pairs: the operands of products whose reduction axis is not the head dim ----

// out[p, c] = (x[2p, c], x[2p+1, c]) for c < n, bf16 rows x (row stride ldx): rows paired
// along the reduction axis; 0 for n ≤ c < ldo (ldo ≥ n rounded up to 16) and for the
// missing row of an odd count. out is [⌈rows/2⌉ × ldo].
VF_FN static void pack_pairs_bf16(int rows, int64_t n, const uint16_t *x, int64_t ldx,
                                  uint32_t *out, int64_t ldo) {
    for (int p = 0; p < (rows + 1) / 2; p++) {
        const uint16_t *a = x + (int64_t)(2 * p) * ldx;
        const uint16_t *b = 2 * p + 1 < rows ? a + ldx : NULL;
        uint32_t *o = out + (int64_t)p * ldo;
        int64_t c = 0;
        for (; c + VF_W <= n; c += VF_W) vbh_store_zipped(o + c, a + c, b ? b + c : NULL);
        for (; c < ldo; c++)
            o[c] = c < n ? (uint32_t)a[c] | (b ? (uint32_t)b[c] << 16 : 0u) : 0u;
    }
}

// out[p, c] = (bf16(x[2p, c]), bf16(x[2p+1, c])) for c < n (a multiple of VF_W), fp32 rows x
// rounded to nearest even; the missing row of an odd count is 0. In place when out == x and
// ldo == ldx: row p is written after rows 2p and 2p + 1 are read.
VF_FN static void round_pairs_bf16(int rows, int n, const float *x, int64_t ldx, uint32_t *out,
                                   int64_t ldo) {
    for (int p = 0; p < (rows + 1) / 2; p++) {
        const float *a = x + (int64_t)(2 * p) * ldx;
        const float *b = 2 * p + 1 < rows ? a + ldx : NULL;
        for (int c = 0; c < n; c += VF_W)
            vbh_store_rounded(out + (int64_t)p * ldo + c, vf_loadu(a + c),
                              b ? vf_loadu(b + c) : vf_zero());
    }
}

// out[r, c] = bf16(x[r, c]) for c < n (a multiple of VF_W), rounded to nearest even: a row's
// consecutive elements become pairs along it. In place when out == (uint16_t *)x and
// ldo == 2·ldx: each vector is read before the half its conversion fills is written.
VF_FN static void round_rows_bf16(int rows, int n, const float *x, int64_t ldx, uint16_t *out,
                                  int64_t ldo) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * ldx;
        uint16_t *o = out + (int64_t)r * ldo;
        int c = 0;
        for (; c + 2 * VF_W <= n; c += 2 * VF_W)
            vf_store_bf16x2(o + c, vf_loadu(xr + c), vf_loadu(xr + c + VF_W));
        if (c < n) vf_store_bf16(o + c, vf_loadu(xr + c));
    }
}

// ---- c[r, :] += Σ_p a2(r, p) · b2[p, :] over bf16 pairs: P·V and the backward's products ----

// One tile: NR rows × NV whole vectors of c; a2(r, p) = a2[r·a_rs + p·a_ps] (a pair, one
// 32-bit broadcast), b2 rows of pairs. With SCALED, c starts as alpha[r] · c (skipped when
// every row's alpha is 1), as tile_gemm.
VF_INLINE void bf16_gemm_tile(const int NR, const int NV, const int SCALED, int pairs,
                              const uint32_t *a2, int64_t a_rs, int64_t a_ps, const uint32_t *b2,
                              int64_t ldb2, const float *alpha, float *c, int64_t ldc) {
    vf acc[TILE_PV_LAST_R > TILE_PV_R ? TILE_PV_LAST_R : TILE_PV_R][TILE_PV_V];
    int rescale = 0;
    if (SCALED)
        for (int r = 0; r < NR; r++) rescale |= alpha[r] != 1.0f;
    for (int r = 0; r < NR; r++) {
        const vf al = vf_set1(SCALED ? alpha[r] : 1.0f);
        for (int w = 0; w < NV; w++) {
            acc[r][w] = vf_loadu(c + r * ldc + w * VF_W);
            if (rescale) acc[r][w] = vf_mul(acc[r][w], al);
        }
    }
    for (int p = 0; p < pairs; p++) {
        vbh bv[TILE_PV_V];
        for (int w = 0; w < NV; w++) bv[w] = vbh_loadu(b2 + p * ldb2 + w * VF_W);
        for (int r = 0; r < NR; r++) {
            const vbh ab = vbh_set1(a2[r * a_rs + p * a_ps]);
            for (int w = 0; w < NV; w++) acc[r][w] = vf_dot_bf16(acc[r][w], ab, bv[w]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) vf_storeu(c + r * ldc + w * VF_W, acc[r][w]);
}

// One row tile of NR rows from row i: over the key pairs its band reaches (P·V: pairs are of
// keys, band as tile_band), or over all pairs (band NULL).
VF_INLINE void bf16_gemm_band(const int NR, const int NV, const int SCALED, const tile_band *band,
                              int i, int keys, int pairs, const uint32_t *a2, int64_t a_rs,
                              int64_t a_ps, const uint32_t *b2, int64_t ldb2, const float *alpha,
                              float *c, int64_t ldc) {
    int p0 = 0, p1 = pairs;
    if (band) {
        int j0, j1;
        fa_band_keys(keys, i, NR, band->masked, band->lo, band->hi, &j0, &j1);
        p0 = j0 / 2;
        p1 = (j1 + 1) / 2;
    }
    bf16_gemm_tile(NR, NV, SCALED, p1 - p0, a2 + (int64_t)i * a_rs + (int64_t)p0 * a_ps, a_rs,
                   a_ps, b2 + (int64_t)p0 * ldb2, ldb2, SCALED ? alpha + i : alpha,
                   c + (int64_t)i * ldc, ldc);
}

// All M rows against NV vectors of columns: tiles of R rows, then one of the rest.
VF_INLINE void bf16_gemm_rows(const int R, const int NV, const int SCALED, const tile_band *band,
                              int M, int keys, int pairs, const uint32_t *a2, int64_t a_rs,
                              int64_t a_ps, const uint32_t *b2, int64_t ldb2, const float *alpha,
                              float *c, int64_t ldc) {
    int i = 0;
    for (; i + R <= M; i += R)
        bf16_gemm_band(R, NV, SCALED, band, i, keys, pairs, a2, a_rs, a_ps, b2, ldb2, alpha, c, ldc);
    switch (M - i) {
#define BF16_GEMM_REST(n)                                                                    \
    case n:                                                                                  \
        if (n < R)                                                                           \
            bf16_gemm_band(n, NV, SCALED, band, i, keys, pairs, a2, a_rs, a_ps, b2, ldb2,    \
                           alpha, c, ldc);                                                   \
        break;
    BF16_GEMM_REST(1) BF16_GEMM_REST(2) BF16_GEMM_REST(3) BF16_GEMM_REST(4)
    BF16_GEMM_REST(5) BF16_GEMM_REST(6) BF16_GEMM_REST(7)
#undef BF16_GEMM_REST
    default: break;
    }
}

// c (M × N) += a2 · b2 over column strips, as tile_gemm_all; b2 and c rows are whole vectors
// up to N rounded up to 16 (b2 zero past N), so no strip has a tail.
VF_INLINE void bf16_gemm_all(const int SCALED, const tile_band *band, int M, int64_t N,
                             int keys, int pairs, const uint32_t *a2, int64_t a_rs, int64_t a_ps,
                             const uint32_t *b2, int64_t ldb2, const float *alpha, float *c,
                             int64_t ldc) {
    enum { V = TILE_PV_V };
    int64_t n0 = 0;
    for (; N - n0 > (V - 1) * VF_W; n0 += V * VF_W)
        bf16_gemm_rows(TILE_PV_R, V, SCALED, band, M, keys, pairs, a2, a_rs, a_ps, b2 + n0, ldb2,
                       alpha, c + n0, ldc);
    if (n0 < N) {
        const int nv = (int)((N - n0 + VF_W - 1) / VF_W);
        const uint32_t *bn = b2 + n0;
        float *cn = c + n0;
        (void)nv;  // unread where TILE_PV_V is 2 or less
#if TILE_PV_V > 3
        if (nv == 3)
            bf16_gemm_rows(TILE_PV_LAST_R, 3, SCALED, band, M, keys, pairs, a2, a_rs, a_ps, bn,
                           ldb2, alpha, cn, ldc);
        else
#endif
#if TILE_PV_V > 2
        if (nv == 2)
            bf16_gemm_rows(TILE_PV_LAST_R, 2, SCALED, band, M, keys, pairs, a2, a_rs, a_ps, bn,
                           ldb2, alpha, cn, ldc);
        else
#endif
        bf16_gemm_rows(TILE_PV_LAST_R, 1, SCALED, band, M, keys, pairs, a2, a_rs, a_ps, bn, ldb2,
                       alpha, cn, ldc);
    }
}

// acc[i, :] = α·acc[i, :] + Σ_j bf16(P[j, i]) · v[j, :] over the block (P in pt, key-major,
// turned into bf16 pairs in place; V as pack_pairs_bf16 left it in v2, ldv2 ≥ dv rounded up
// to 16, so every vector is whole and zero past dv).
// (unused where the AMX kernels replace it: avx512_amx.c)
VF_FN __attribute__((unused)) static void accumulate_pv_bf16(int rows_padded, int keys,
                                                             int64_t dv, float *pt, int64_t ldpt,
                                                             const uint32_t *v2, int64_t ldv2,
                                                             const float *alpha, float *acc,
                                                             int64_t ldacc, int masked,
                                                             int64_t lo, int64_t hi) {
    // P pairs over the scores: row jp ← (row 2jp, row 2jp + 1), lanes 0 … rows_padded − 1.
    uint32_t *p2 = (uint32_t *)pt;
    round_pairs_bf16(keys, rows_padded, pt, ldpt, p2, ldpt);
    const tile_band band = {masked, lo, hi};
    bf16_gemm_all(1, &band, rows_padded, dv, keys, (keys + 1) / 2, p2, 1, ldpt, v2, ldv2, alpha,
                  acc, ldacc);
}

// c[m, n] += Σ_p a2[m·a_rs + p·a_ps] · b2[p·ldb2 + n] over bf16 pairs (m < M, p < pairs):
// gemm_acc with both factors in bf16 pairs along the reduction axis.
VF_FN static void gemm_acc_bf16(int M, int64_t N, int pairs, const uint32_t *a2, int64_t a_rs,
                                int64_t a_ps, const uint32_t *b2, int64_t ldb2, float *c,
                                int64_t ldc) {
    bf16_gemm_all(0, NULL, M, N, 0, pairs, a2, a_rs, a_ps, b2, ldb2, NULL, c, ldc);
}
