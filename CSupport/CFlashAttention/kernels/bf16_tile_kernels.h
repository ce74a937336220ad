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
// P·V: P (fp32, the softmax's output) is rounded to bf16, to nearest even — the one place this
// path's arithmetic differs from fp32: each product p·v is off by at most 2⁻⁹·p·|v|, so an
// output row by at most 2⁻⁹·max|v| (the same order as rounding the output to bf16, which
// follows). V is packed once per key block as pairs along the keys, v2[jp, c] = (v[2jp, c],
// v[2jp+1, c]), and P pairs, p2[jp, i] = (P[2jp, i], P[2jp+1, i]), are written over the scores
// (row jp of the tile holds pair jp: each pair is read before its row is overwritten).

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

// v2[jp, c] = (v[2jp, c], v[2jp+1, c]) for c < dv (0 for dv ≤ c < ldv2 and for the missing
// row of an odd key count).
VF_FN static void pack_v_bf16(int keys, int64_t dv, const uint16_t *v, int64_t ldv,
                              uint32_t *v2, int64_t ldv2) {
    for (int jp = 0; jp < (keys + 1) / 2; jp++) {
        const uint16_t *a = v + (int64_t)(2 * jp) * ldv;
        const uint16_t *b = 2 * jp + 1 < keys ? a + ldv : NULL;
        uint32_t *out = v2 + (int64_t)jp * ldv2;
        int64_t c = 0;
        for (; c + VF_W <= dv; c += VF_W) {
            const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(a + c)));
            const __m512i hi = b ? _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(b + c)))
                                 : _mm512_setzero_si512();
            _mm512_storeu_si512(out + c, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
        for (; c < ldv2; c++)
            out[c] = c < dv ? (uint32_t)a[c] | (b ? (uint32_t)b[c] << 16 : 0u) : 0u;
    }
}

// One P·V tile: NR rows × NV whole vectors of acc, over key pairs [0, pairs): p2 rows hold
// (P[2jp, i], P[2jp+1, i]) pairs at the row's lanes, v2 rows the V pairs. acc ← α·acc first
// (skipped when every row's α is 1).
VF_INLINE void bf16_pv_tile(const int NR, const int NV, int pairs, const uint32_t *p2,
                            int64_t ldp2, const uint32_t *v2, int64_t ldv2, const float *alpha,
                            float *acc, int64_t ldacc) {
    vf c[TILE_PV_LAST_R > TILE_PV_R ? TILE_PV_LAST_R : TILE_PV_R][TILE_PV_V];
    int rescale = 0;
    for (int r = 0; r < NR; r++) rescale |= alpha[r] != 1.0f;
    for (int r = 0; r < NR; r++) {
        const vf al = vf_set1(alpha[r]);
        for (int w = 0; w < NV; w++) {
            c[r][w] = vf_loadu(acc + r * ldacc + w * VF_W);
            if (rescale) c[r][w] = vf_mul(c[r][w], al);
        }
    }
    for (int jp = 0; jp < pairs; jp++) {
        vbh vv[TILE_PV_V];
        for (int w = 0; w < NV; w++) vv[w] = (vbh)_mm512_loadu_si512(v2 + jp * ldv2 + w * VF_W);
        const uint32_t *p = p2 + jp * ldp2;
        for (int r = 0; r < NR; r++) {
            const vbh pb = (vbh)_mm512_set1_epi32((int)p[r]);
            for (int w = 0; w < NV; w++) c[r][w] = _mm512_dpbf16_ps(c[r][w], pb, vv[w]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) vf_storeu(acc + r * ldacc + w * VF_W, c[r][w]);
}

// All rows against NV vectors of columns: tiles of R rows (then one of the rest), each over
// the key pairs its band reaches.
VF_INLINE void bf16_pv_rows(const int R, const int NV, int rows_padded, int keys,
                            const uint32_t *p2, int64_t ldp2, const uint32_t *v2, int64_t ldv2,
                            const float *alpha, float *acc, int64_t ldacc, int masked,
                            int64_t lo, int64_t hi) {
#define BF16_PV(NR, i)                                                                       \
    do {                                                                                     \
        int j0, j1;                                                                          \
        fa_band_keys(keys, (i), (NR), masked, lo, hi, &j0, &j1);                             \
        const int p0 = j0 / 2, p1 = (j1 + 1) / 2;                                            \
        bf16_pv_tile((NR), NV, p1 - p0, p2 + (int64_t)p0 * ldp2 + (i), ldp2,                 \
                     v2 + (int64_t)p0 * ldv2, ldv2, alpha + (i), acc + (int64_t)(i) * ldacc, \
                     ldacc);                                                                 \
    } while (0)
    int i = 0;
    for (; i + R <= rows_padded; i += R) BF16_PV(R, i);
    switch (rows_padded - i) {
    case 7: if (7 < R) BF16_PV(7, i); break;
    case 6: if (6 < R) BF16_PV(6, i); break;
    case 5: if (5 < R) BF16_PV(5, i); break;
    case 4: if (4 < R) BF16_PV(4, i); break;
    case 3: if (3 < R) BF16_PV(3, i); break;
    case 2: if (2 < R) BF16_PV(2, i); break;
    case 1: if (1 < R) BF16_PV(1, i); break;
    default: break;
    }
#undef BF16_PV
}

// acc[i, :] = α·acc[i, :] + Σ_j bf16(P[j, i]) · v[j, :] over the block (P in pt, key-major,
// turned into bf16 pairs in place; V as pack_v_bf16 left it in v2, ldv2 ≥ dv rounded up to 16,
// so every vector is whole and zero past dv).
VF_FN static void accumulate_pv_bf16(int rows_padded, int keys, int64_t dv, float *pt,
                                     int64_t ldpt, const uint32_t *v2, int64_t ldv2,
                                     const float *alpha, float *acc, int64_t ldacc, int masked,
                                     int64_t lo, int64_t hi) {
    // P pairs over the scores: row jp ← (row 2jp, row 2jp + 1), lanes 0 … rows_padded − 1.
    uint32_t *p2 = (uint32_t *)pt;
    for (int jp = 0; jp < (keys + 1) / 2; jp++) {
        const float *a = pt + (int64_t)(2 * jp) * ldpt;
        const float *b = 2 * jp + 1 < keys ? a + ldpt : NULL;
        for (int i = 0; i < rows_padded; i += VF_W) {
            const __m512i pair = bf16_pairs(vf_loadu(a + i), b ? vf_loadu(b + i) : vf_zero());
            _mm512_storeu_si512(p2 + (int64_t)jp * ldpt + i, pair);
        }
    }
    enum { V = TILE_PV_V };
    int64_t d0 = 0;
    for (; dv - d0 > (V - 1) * VF_W; d0 += V * VF_W)
        bf16_pv_rows(TILE_PV_R, V, rows_padded, keys, p2, ldpt, v2 + d0, ldv2, alpha, acc + d0,
                     ldacc, masked, lo, hi);
    if (d0 < dv) {
        const int nv = (int)((dv - d0 + VF_W - 1) / VF_W);
        if (nv == 3) bf16_pv_rows(TILE_PV_LAST_R, 3, rows_padded, keys, p2, ldpt, v2 + d0, ldv2, alpha, acc + d0, ldacc, masked, lo, hi);
        else if (nv == 2) bf16_pv_rows(TILE_PV_LAST_R, 2, rows_padded, keys, p2, ldpt, v2 + d0, ldv2, alpha, acc + d0, ldacc, masked, lo, hi);
        else bf16_pv_rows(TILE_PV_LAST_R, 1, rows_padded, keys, p2, ldpt, v2 + d0, ldv2, alpha, acc + d0, ldacc, masked, lo, hi);
    }
}
