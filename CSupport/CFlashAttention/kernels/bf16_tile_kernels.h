// bf16_tile_kernels.h — key-major kernels over bf16 pairs with vdpbf16ps (AVX512-BF16): two
// bf16 products per fp32 lane per instruction, twice the multiply-adds of vfmadd231ps at the
// same instruction rate (Zen 4: 113 against 57 GMAC/s per core, measured). Included by
// avx512_bf16.c after vec_avx512.h; used when Q, K and V are all stored in bf16.
//
// vdpbf16ps: acc += a[2l]·b[2l] + a[2l+1]·b[2l+1] per lane l. bf16 × bf16 products are exact in
// fp32 (8 × 8 significant bits), and each of the two adds rounds to nearest even, as an FMA
// chain over d does — so the scores carry the fp32 path's error. The instruction treats
// subnormal inputs and results as zero (|x| < 2⁻¹²⁶ ≈ 1.2e-38, far below any score's error).
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

typedef __m512bh vbh;

// Two rows of 16 fp32 values → 16 pairs (bf16 of a in the low half, of b in the high half).
VF_INLINE __m512i bf16_pairs(__m512 a, __m512 b) {
    const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(a));
    const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(b));
    return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

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
        for (int v = 0; v < NQ; v++) qv[v] = (vbh)_mm512_loadu_si512(qt2 + p * ldqt2 + v * VF_W);
        for (int a = 0; a < NK; a++) {
            uint32_t pair;
            __builtin_memcpy(&pair, k + a * ldk + 2 * p, 4);
            const vbh kb = (vbh)_mm512_set1_epi32((int)pair);
            for (int v = 0; v < NQ; v++) acc[a][v] = _mm512_dpbf16_ps(acc[a][v], kb, qv[v]);
        }
    }
    if (!hidden && (dqk & 1)) {  // the last element alone: (k[d], 0)
        const int64_t p = dqk / 2;
        vbh qv[TILE_ST_Q];
        for (int v = 0; v < NQ; v++) qv[v] = (vbh)_mm512_loadu_si512(qt2 + p * ldqt2 + v * VF_W);
        for (int a = 0; a < NK; a++) {
            const vbh kb = (vbh)_mm512_set1_epi32((int)k[a * ldk + dqk - 1]);
            for (int v = 0; v < NQ; v++) acc[a][v] = _mm512_dpbf16_ps(acc[a][v], kb, qv[v]);
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

VF_FN static void scores_t_bf16(int keys, int rows_padded, int64_t dqk, const uint16_t *k,
                                int64_t ldk, const uint32_t *qt2, int64_t ldqt2, float scale,
                                float *st, int64_t ldst, int masked, int64_t lo, int64_t hi,
                                float *block_max) {
    for (int i0 = 0; i0 < rows_padded; i0 += TILE_ST_Q * VF_W) {
        const int left = (rows_padded - i0) / VF_W;
        const int nq = left < TILE_ST_Q ? left : TILE_ST_Q;
        const int64_t l = lo - i0, h = hi - i0;
        const uint32_t *q = qt2 + i0;
        float *s = st + i0, *bm = block_max + i0;
        if (nq >= 3) bf16_scores_column(3, keys, dqk, k, ldk, q, ldqt2, scale, s, ldst, masked, l, h, bm);
        else if (nq == 2) bf16_scores_column(2, keys, dqk, k, ldk, q, ldqt2, scale, s, ldst, masked, l, h, bm);
        else bf16_scores_column(1, keys, dqk, k, ldk, q, ldqt2, scale, s, ldst, masked, l, h, bm);
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
        for (; c + VF_W <= n; c += VF_W) {
            const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(a + c)));
            const __m512i hi = b ? _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(b + c)))
                                 : _mm512_setzero_si512();
            _mm512_storeu_si512(o + c, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
        for (; c < ldo; c++)
            o[c] = c < n ? (uint32_t)a[c] | (b ? (uint32_t)b[c] << 16 : 0u) : 0u;
    }
}

// out[p, c] = (bf16(x[2p, c]), bf16(x[2p+1, c])) for c < n (a multiple of 16), fp32 rows x
// rounded to nearest even; the missing row of an odd count is 0. In place when out == x and
// ldo == ldx: row p is written after rows 2p and 2p + 1 are read.
VF_FN static void round_pairs_bf16(int rows, int n, const float *x, int64_t ldx, uint32_t *out,
                                   int64_t ldo) {
    for (int p = 0; p < (rows + 1) / 2; p++) {
        const float *a = x + (int64_t)(2 * p) * ldx;
        const float *b = 2 * p + 1 < rows ? a + ldx : NULL;
        for (int c = 0; c < n; c += VF_W) {
            const __m512i pair = bf16_pairs(vf_loadu(a + c), b ? vf_loadu(b + c) : vf_zero());
            _mm512_storeu_si512(out + (int64_t)p * ldo + c, pair);
        }
    }
}

// out[r, c] = bf16(x[r, c]) for c < n (a multiple of 16), rounded to nearest even: a row's
// consecutive elements become pairs along it. In place when out == (uint16_t *)x and
// ldo == 2·ldx: each vector is read before the half its conversion fills is written.
VF_FN static void round_rows_bf16(int rows, int n, const float *x, int64_t ldx, uint16_t *out,
                                  int64_t ldo) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (int64_t)r * ldx;
        uint16_t *o = out + (int64_t)r * ldo;
        int c = 0;
        for (; c + 2 * VF_W <= n; c += 2 * VF_W) {
            const __m512 a = vf_loadu(xr + c), b = vf_loadu(xr + c + VF_W);
            _mm512_storeu_si512(o + c, (__m512i)_mm512_cvtne2ps_pbh(b, a));  // a low, b high
        }
        if (c < n) _mm256_storeu_si256((__m256i *)(o + c), (__m256i)_mm512_cvtneps_pbh(vf_loadu(xr + c)));
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
        for (int w = 0; w < NV; w++) bv[w] = (vbh)_mm512_loadu_si512(b2 + p * ldb2 + w * VF_W);
        for (int r = 0; r < NR; r++) {
            const vbh ab = (vbh)_mm512_set1_epi32((int)a2[r * a_rs + p * a_ps]);
            for (int w = 0; w < NV; w++) acc[r][w] = _mm512_dpbf16_ps(acc[r][w], ab, bv[w]);
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
        if (nv == 3) bf16_gemm_rows(TILE_PV_LAST_R, 3, SCALED, band, M, keys, pairs, a2, a_rs, a_ps, bn, ldb2, alpha, cn, ldc);
        else if (nv == 2) bf16_gemm_rows(TILE_PV_LAST_R, 2, SCALED, band, M, keys, pairs, a2, a_rs, a_ps, bn, ldb2, alpha, cn, ldc);
        else bf16_gemm_rows(TILE_PV_LAST_R, 1, SCALED, band, M, keys, pairs, a2, a_rs, a_ps, bn, ldb2, alpha, cn, ldc);
    }
}

// acc[i, :] = α·acc[i, :] + Σ_j bf16(P[j, i]) · v[j, :] over the block (P in pt, key-major,
// turned into bf16 pairs in place; V as pack_pairs_bf16 left it in v2, ldv2 ≥ dv rounded up
// to 16, so every vector is whole and zero past dv).
VF_FN static void accumulate_pv_bf16(int rows_padded, int keys, int64_t dv, float *pt,
                                     int64_t ldpt, const uint32_t *v2, int64_t ldv2,
                                     const float *alpha, float *acc, int64_t ldacc, int masked,
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

// ---- decoding row tiles over bf16 pairs (kernels/row_kernels.h's shapes; Q, K, V all bf16) ----
//
// Scores: a query row's bf16 elements, unscaled and zero past dqk, are held in registers as
// pairs along d (32 elements per vector); each key row is read once, in address order, and
// dotted with every row (one vdpbf16ps per 32 elements and row, against two FMAs and two
// widenings in the fp32 path), then scaled. P·V: P rounded to bf16 in place (each row's keys
// become pairs), V rows 2jp and 2jp + 1 interleaved by 16-bit unpacks within each 128-bit lane:
// pair k of the low unpack is column 8⌊k/4⌋ + k mod 4 and of the high one that + 4, so the
// accumulators hold their 32 columns permuted, and are put in order once per block.

// s[r, j] = scale · Σ_d q2[r, d] · k[j, d] for NR ≤ VF_SCORES_R rows and NQ vectors of 32
// elements; k's last vector masked to `tail_mask` unless FULL.
VF_INLINE void bf16_row_scores_qreg(const int NR, const int NQ, const int FULL,
                                    __mmask32 tail_mask, int keys, const uint16_t *q2,
                                    int64_t ldq2, const uint16_t *k, int64_t ldk, float scale,
                                    float *s, int64_t lds) {
    vbh qr[VF_SCORES_R][VF_QREG];
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NQ; w++) qr[r][w] = (vbh)_mm512_loadu_si512(q2 + r * ldq2 + 32 * w);
    for (int j = 0; j < keys; j++) {
        const uint16_t *kj = k + (int64_t)j * ldk;
        vf a[VF_SCORES_R];
        for (int r = 0; r < NR; r++) a[r] = vf_zero();
        for (int w = 0; w < NQ; w++) {
            const __m512i kv = !FULL && w == NQ - 1 ? _mm512_maskz_loadu_epi16(tail_mask, kj + 32 * w)
                                                    : _mm512_loadu_si512(kj + 32 * w);
            for (int r = 0; r < NR; r++) a[r] = _mm512_dpbf16_ps(a[r], (vbh)kv, qr[r][w]);
        }
        if (NR == 4) {  // four rows' reductions at once
            float sum[4];
            vf_hsum4(a[0], a[1], a[2], a[3], sum);
            for (int r = 0; r < 4; r++) s[r * lds + j] = sum[r] * scale;
            continue;
        }
        for (int r = 0; r < NR; r++) s[r * lds + j] = vf_hsum(a[r]) * scale;
    }
}

VF_INLINE void bf16_row_scores_rows(const int NQ, const int FULL, __mmask32 tail_mask, int rows,
                                    int keys, const uint16_t *q2, int64_t ldq2, const uint16_t *k,
                                    int64_t ldk, float scale, float *s, int64_t lds) {
    int r = 0;
    for (; r + VF_SCORES_R <= rows; r += VF_SCORES_R)
        bf16_row_scores_qreg(VF_SCORES_R, NQ, FULL, tail_mask, keys, q2 + r * ldq2, ldq2, k, ldk,
                             scale, s + r * lds, lds);
    for (; r < rows; r++)
        bf16_row_scores_qreg(1, NQ, FULL, tail_mask, keys, q2 + r * ldq2, ldq2, k, ldk, scale,
                             s + r * lds, lds);
}

VF_INLINE void bf16_row_scores_nq(const int NQ, int64_t dqk, int rows, int keys,
                                  const uint16_t *q2, int64_t ldq2, const uint16_t *k,
                                  int64_t ldk, float scale, float *s, int64_t lds) {
    const int live = (int)(dqk - 32 * (NQ - 1));
    const __mmask32 mask = live >= 32 ? 0xFFFFFFFFu : (1u << live) - 1;
    if (live == 32) bf16_row_scores_rows(NQ, 1, mask, rows, keys, q2, ldq2, k, ldk, scale, s, lds);
    else bf16_row_scores_rows(NQ, 0, mask, rows, keys, q2, ldq2, k, ldk, scale, s, lds);
}

/// scores_q over bf16 pairs: s[r, j] = scale · Σ_d q2[r, d] · k[j, d] (r < rows, j < keys);
/// q2 rows are bf16, zero from dqk to the next multiple of 32; dqk ≤ 32 · VF_QREG.
VF_FN static void row_scores_bf16dot(int rows, int keys, int64_t dqk, const uint16_t *q2,
                                     int64_t ldq2, const uint16_t *k, int64_t ldk, float scale,
                                     float *s, int64_t lds) {
    const int pass = rows > VF_SCORES_R ? RowScoreKeys : keys;  // as row_scores
    for (int j0 = 0; j0 < keys; j0 += pass) {
        const int kk = keys - j0 < pass ? keys - j0 : pass;
        const uint16_t *kj = k + (int64_t)j0 * ldk;
        float *sj = s + j0;
        switch ((dqk + 31) / 32) {
        case 1: bf16_row_scores_nq(1, dqk, rows, kk, q2, ldq2, kj, ldk, scale, sj, lds); break;
        case 2: bf16_row_scores_nq(2, dqk, rows, kk, q2, ldq2, kj, ldk, scale, sj, lds); break;
        case 3: bf16_row_scores_nq(3, dqk, rows, kk, q2, ldq2, kj, ldk, scale, sj, lds); break;
        case 4: bf16_row_scores_nq(4, dqk, rows, kk, q2, ldq2, kj, ldk, scale, sj, lds); break;
        case 5: bf16_row_scores_nq(5, dqk, rows, kk, q2, ldq2, kj, ldk, scale, sj, lds); break;
        case 6: bf16_row_scores_nq(6, dqk, rows, kk, q2, ldq2, kj, ldk, scale, sj, lds); break;
        case 7: bf16_row_scores_nq(7, dqk, rows, kk, q2, ldq2, kj, ldk, scale, sj, lds); break;
        case 8: bf16_row_scores_nq(8, dqk, rows, kk, q2, ldq2, kj, ldk, scale, sj, lds); break;
        default: break;
        }
    }
}

// One key pair's V step for NR rows and NC chunks of 32 columns: rows a and b (b = 0 for the
// lone last key of an odd count) interleaved, dotted with each row's broadcast P pair.
VF_INLINE void bf16_row_pv_pair(const int NR, const int NC, const int FULL, __mmask32 last_mask,
                                const uint16_t *a, const uint16_t *b, const uint32_t *p2,
                                int64_t ldp2, vf acc[VF_PV_R][4][2]) {
    __m512i pb[VF_PV_R];
    for (int r = 0; r < NR; r++) pb[r] = _mm512_set1_epi32((int)p2[r * ldp2]);
    for (int c = 0; c < NC; c++) {
        const int masked = !FULL && c == NC - 1;
        const __m512i va = masked ? _mm512_maskz_loadu_epi16(last_mask, a + 32 * c)
                                  : _mm512_loadu_si512(a + 32 * c);
        const __m512i vb = !b ? _mm512_setzero_si512()
                              : masked ? _mm512_maskz_loadu_epi16(last_mask, b + 32 * c)
                                       : _mm512_loadu_si512(b + 32 * c);
        const vbh lo = (vbh)_mm512_unpacklo_epi16(va, vb), hi = (vbh)_mm512_unpackhi_epi16(va, vb);
        for (int r = 0; r < NR; r++) {
            acc[r][c][0] = _mm512_dpbf16_ps(acc[r][c][0], (vbh)pb[r], lo);
            acc[r][c][1] = _mm512_dpbf16_ps(acc[r][c][1], (vbh)pb[r], hi);
        }
    }
}

// NR rows × NC chunks of 32 columns over `keys` keys (P pairs p2, V rows from v), adding to the
// permuted accumulators in out (FRESH: from 0): out[r, 32c … 32c + 15] holds the low
// unpack's columns, out[r, 32c + 16 …] the high one's.
VF_INLINE void bf16_row_pv_tile(const int NR, const int NC, const int FULL, const int FRESH,
                                __mmask32 last_mask, int keys, const uint32_t *p2, int64_t ldp2,
                                const uint16_t *v, int64_t ldv, float *out, int64_t ldo) {
    vf acc[VF_PV_R][4][2];
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++)
            for (int h = 0; h < 2; h++)
                acc[r][c][h] = FRESH ? vf_zero() : vf_loadu(out + r * ldo + 32 * c + 16 * h);
    int jp = 0;
    for (; 2 * jp + 1 < keys; jp++) {
        const uint16_t *a = v + (int64_t)(2 * jp) * ldv;
        bf16_row_pv_pair(NR, NC, FULL, last_mask, a, a + ldv, p2 + jp, ldp2, acc);
    }
    if (2 * jp < keys)
        bf16_row_pv_pair(NR, NC, FULL, last_mask, v + (int64_t)(2 * jp) * ldv, NULL, p2 + jp,
                         ldp2, acc);
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NC; c++)
            for (int h = 0; h < 2; h++) vf_storeu(out + r * ldo + 32 * c + 16 * h, acc[r][c][h]);
}

VF_INLINE void bf16_row_pv_rows(const int NC, const int FULL, const int FRESH, __mmask32 last_mask,
                                int rows, int keys, const uint32_t *p2, int64_t ldp2,
                                const uint16_t *v, int64_t ldv, float *out, int64_t ldo) {
    int r = 0;
    for (; r + VF_PV_R <= rows; r += VF_PV_R)
        bf16_row_pv_tile(VF_PV_R, NC, FULL, FRESH, last_mask, keys, p2 + r * ldp2, ldp2, v, ldv,
                         out + r * ldo, ldo);
    for (; r < rows; r++)
        bf16_row_pv_tile(1, NC, FULL, FRESH, last_mask, keys, p2 + r * ldp2, ldp2, v, ldv,
                         out + r * ldo, ldo);
}

VF_INLINE void bf16_row_pv_chunk(const int NC, int live, int first, int rows, int keys,
                                 const uint32_t *p2, int64_t ldp2, const uint16_t *v, int64_t ldv,
                                 float *out, int64_t ldo) {
    const __mmask32 mask = live >= 32 ? 0xFFFFFFFFu : (1u << live) - 1;
    if (live == 32) {
        if (first) bf16_row_pv_rows(NC, 1, 1, mask, rows, keys, p2, ldp2, v, ldv, out, ldo);
        else bf16_row_pv_rows(NC, 1, 0, mask, rows, keys, p2, ldp2, v, ldv, out, ldo);
    } else {
        if (first) bf16_row_pv_rows(NC, 0, 1, mask, rows, keys, p2, ldp2, v, ldv, out, ldo);
        else bf16_row_pv_rows(NC, 0, 0, mask, rows, keys, p2, ldp2, v, ldv, out, ldo);
    }
}

// P·V over one run of V rows (keys key0 … key0 + keys − 1 of the block, key0 even), P pairs
// p2 of the whole block: into the permuted accumulators of out, from 0 when `fresh`.
VF_INLINE void bf16_row_run_pv(int fresh, int rows, int key0, int keys, int64_t dv,
                               const uint32_t *p2, int64_t ldp, const uint16_t *v, int64_t ldv,
                               float *out, int64_t ldo) {
    const int pass = rows > VF_PV_R ? RowPVKeys : keys;  // even: pairs never straddle passes
    for (int j0 = 0; j0 < keys; j0 += pass) {
        const int kk = keys - j0 < pass ? keys - j0 : pass;
        const uint32_t *pj = p2 + (key0 + j0) / 2;
        const uint16_t *vj = v + (int64_t)j0 * ldv;
        const int first = fresh && j0 == 0;
        for (int64_t d0 = 0; d0 < dv; d0 += 4 * 32) {
            const int64_t cols = dv - d0 < 4 * 32 ? dv - d0 : 4 * 32;
            const int nc = (int)((cols + 31) / 32);
            const int live = (int)(cols - 32 * (nc - 1));
            const uint16_t *vd = vj + d0;
            float *od = out + d0;
            switch (nc) {
            case 1: bf16_row_pv_chunk(1, live, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
            case 2: bf16_row_pv_chunk(2, live, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
            case 3: bf16_row_pv_chunk(3, live, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
            default: bf16_row_pv_chunk(4, live, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
            }
        }
    }
}

/// block_pv_q over bf16 pairs: out[r, :] = Σ_j bf16(p[r, j]) · v[j, :] (r < rows, j < keys),
/// P rounded to nearest even in place (p is overwritten); out rows are written up to dv
/// rounded up to 32 (ldo ≥ that), zero past dv. V rows come in runs, each but the last
/// starting and ending on an even key: every output element sees the key pairs in order in
/// one chain, whatever the runs.
VF_FN static void row_block_pv_bf16dot(int rows, int keys, int64_t dv, float *p, int64_t ldp,
                                       const fa_row_run *runs, int nruns, float *out,
                                       int64_t ldo) {
    // Each row's P as bf16 pairs, in place; an odd count's missing partner is 0 (its V row is
    // 0 too, but the stale lane could hold anything, inf or NaN among it).
    round_rows_bf16(rows, (keys + 15) / 16 * 16, p, ldp, (uint16_t *)p, 2 * ldp);
    if (keys & 1)
        for (int r = 0; r < rows; r++) ((uint16_t *)p)[(int64_t)r * 2 * ldp + keys] = 0;
    for (int i = 0; i < nruns; i++)
        bf16_row_run_pv(i == 0, rows, runs[i].key, runs[i].keys, dv, (const uint32_t *)p, ldp,
                        (const uint16_t *)runs[i].rows, runs[i].ld, out, ldo);
    // The columns in order: out[32c …] = (low 0–3, high 0–3, low 4–7, high 4–7), then 8–15.
    const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int r = 0; r < rows; r++)
        for (int64_t c = 0; c < dv; c += 32) {
            float *o = out + r * ldo + c;
            const vf lo = vf_loadu(o), hi = vf_loadu(o + 16);
            vf_storeu(o, _mm512_permutex2var_ps(lo, first, hi));
            vf_storeu(o + 16, _mm512_permutex2var_ps(lo, second, hi));
        }
}
