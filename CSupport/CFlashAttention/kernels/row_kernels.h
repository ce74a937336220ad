// row_kernels.h — query-major ("row") tiles for decoding, written once over the thin vector
// layer (vec_avx512.h, vec_avx2.h, vec_portable.h) and compiled once per ISA: each ISA file
// includes its vector header, then this file, and puts the three functions in its table (so
// this is not an ordinary header: it has no guard and defines static functions).
//
// A row tile holds a few query rows — the rows of every query head of a GQA group stacked
// (decoding: Lq × Hq/Hkv rows) — against a block of keys. Scores are kept query-major,
// s[r, j], so a vector holds one query's scores for consecutive keys and every lane is live
// however few rows there are (a key-major tile would fill one lane of 16 for a lone query).
// Each row's arithmetic is the same in any tile and any register grouping: rows never mix, so
// results do not depend on how rows are stacked or split between threads.
//
// Register tiles (per ISA, from the vector header): scores VF_SCORES_R rows × VF_SCORES_K keys
// of accumulators over d, reduced across lanes at the end; P·V VF_PV_R rows × VF_PV_V value
// vectors, one broadcast probability per row and key.
//
// Memory order matters more than instruction count here: decoding streams K and V from DRAM
// and the hardware prefetchers must see it as streams. Scores read one key row after another
// (VF_SCORES_K = 1: a 4-key tile interleaves four rows 512 B apart, which the prefetchers
// followed badly — 9 → 12 GB/s on one Zen 4 core at D = 128 with this order), and P·V reads
// whole V rows (VF_PV_V vectors cover D = 128 on AVX-512) instead of one half of every row
// and then the other.

// s[r, c] = Σ_d q[r, d] · k[c, d] for NR rows and NK keys (constants after inlining). q is
// zero from dqk to the next multiple of VF_W, so its loads need no tail; k's tail is masked.
// Two accumulators per (row, key), for even and odd vectors of d, keep enough independent
// FMA chains in flight when NK is 1.
VF_INLINE void row_scores_tile(const int NR, const int NK, int64_t dqk, const float *q,
                               int64_t ldq, const float *k, int64_t ldk, float *s, int64_t lds) {
    vf acc[2][VF_SCORES_R][VF_SCORES_K];
    for (int h = 0; h < 2; h++)
        for (int r = 0; r < NR; r++)
            for (int c = 0; c < NK; c++) acc[h][r][c] = vf_zero();
    int64_t d = 0;
    for (; d + 2 * VF_W <= dqk; d += 2 * VF_W) {
        for (int h = 0; h < 2; h++) {
            vf kv[VF_SCORES_K];
            for (int c = 0; c < NK; c++) kv[c] = vf_loadu(k + c * ldk + d + h * VF_W);
            for (int r = 0; r < NR; r++) {
                const vf qv = vf_loadu(q + r * ldq + d + h * VF_W);
                for (int c = 0; c < NK; c++) acc[h][r][c] = vf_fma(qv, kv[c], acc[h][r][c]);
            }
        }
    }
    for (; d < dqk; d += VF_W) {  // at most one full vector and a tail (even chain)
        const int n = dqk - d < VF_W ? (int)(dqk - d) : VF_W;
        vf kv[VF_SCORES_K];
        for (int c = 0; c < NK; c++) kv[c] = vf_load_first_or(k + c * ldk + d, n, 0.0f);
        for (int r = 0; r < NR; r++) {
            const vf qv = vf_loadu(q + r * ldq + d);
            for (int c = 0; c < NK; c++) acc[0][r][c] = vf_fma(qv, kv[c], acc[0][r][c]);
        }
    }
#if VF_SCORES_R >= 4
    if (NR == 4 && NK == 1) {  // the common tile: four rows' reductions at once, same bits
        float sum[4];
        vf_hsum4(vf_add(acc[0][0][0], acc[1][0][0]), vf_add(acc[0][1][0], acc[1][1][0]),
                 vf_add(acc[0][2][0], acc[1][2][0]), vf_add(acc[0][3][0], acc[1][3][0]), sum);
        for (int r = 0; r < 4; r++) s[r * lds] = sum[r];
        return;
    }
#endif
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < NK; c++) s[r * lds + c] = vf_hsum(vf_add(acc[0][r][c], acc[1][r][c]));
}

VF_INLINE void row_scores_keys(const int NR, int keys, int64_t dqk, const float *q, int64_t ldq,
                               const float *k, int64_t ldk, float *s, int64_t lds) {
    int j = 0;
    for (; j + VF_SCORES_K <= keys; j += VF_SCORES_K)
        row_scores_tile(NR, VF_SCORES_K, dqk, q, ldq, k + j * ldk, ldk, s + j, lds);
    for (; j < keys; j++) row_scores_tile(NR, 1, dqk, q, ldq, k + j * ldk, ldk, s + j, lds);
}

VF_FN static void row_scores(int rows, int keys, int64_t dqk, const float *q, int64_t ldq,
                             const float *k, int64_t ldk, float *s, int64_t lds) {
    int r = 0;
    for (; r + VF_SCORES_R <= rows; r += VF_SCORES_R)
        row_scores_keys(VF_SCORES_R, keys, dqk, q + r * ldq, ldq, k, ldk, s + r * lds, lds);
    for (; r < rows; r++) row_scores_keys(1, keys, dqk, q + r * ldq, ldq, k, ldk, s + r * lds, lds);
}

// Per row: m' = max(m, max_j s); P = 2^(s − m'); α = 2^(m − m'); l = α·l + Σ_j P; m = m'.
// A row with m' = −inf (no key seen yet) subtracts 0 instead: P = 0, α = 0, state unchanged.
VF_FN static void row_softmax(int rows, int keys, float *s, int64_t lds, float *row_max,
                              float *row_sum, float *alpha) {
    for (int r = 0; r < rows; r++) {
        float *sr = s + r * lds;
        vf mx = vf_set1(-INFINITY);
        int j = 0;
        for (; j + VF_W <= keys; j += VF_W) mx = vf_max(mx, vf_loadu(sr + j));
        if (j < keys) mx = vf_max(mx, vf_load_first_or(sr + j, keys - j, -INFINITY));
        const float m_old = row_max[r], m_blk = vf_hmax(mx);
        const float m_new = m_blk > m_old ? m_blk : m_old;
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        const vf mu = vf_set1(m_use);
        vf sum0 = vf_zero(), sum1 = vf_zero();  // two chains: even and odd vectors
        j = 0;
        for (; j + 2 * VF_W <= keys; j += 2 * VF_W) {
            const vf p0 = vf_exp2(vf_sub(vf_loadu(sr + j), mu));
            const vf p1 = vf_exp2(vf_sub(vf_loadu(sr + j + VF_W), mu));
            vf_storeu(sr + j, p0);
            vf_storeu(sr + j + VF_W, p1);
            sum0 = vf_add(sum0, p0);
            sum1 = vf_add(sum1, p1);
        }
        for (; j < keys; j += VF_W) {
            const int n = keys - j < VF_W ? keys - j : VF_W;
            const vf p = vf_exp2(vf_sub(vf_load_first_or(sr + j, n, -INFINITY), mu));
            vf_store_first(sr + j, p, n);
            sum0 = vf_add(sum0, p);
        }
        const float a = vf_first(vf_exp2(vf_set1(m_old - m_use)));
        alpha[r] = a;
        row_sum[r] = a * row_sum[r] + vf_hsum(vf_add(sum0, sum1));
        row_max[r] = m_new;
    }
}

// acc[r, d0 …] = α_r · acc[r, d0 …] + Σ_j p[r, j] · v[j, d0 …] for NR rows and NV value vectors
// (the last one holding `tail` live columns; acc rows are whole vectors up to ldacc).
VF_INLINE void row_pv_tile(const int NR, const int NV, int tail, int keys, const float *p,
                           int64_t ldp, const float *v, int64_t ldv, const float *alpha,
                           float *acc, int64_t ldacc) {
    vf a[VF_PV_R][VF_PV_V];
    for (int r = 0; r < NR; r++) {
        const vf al = vf_set1(alpha[r]);
        for (int w = 0; w < NV; w++) a[r][w] = vf_mul(al, vf_loadu(acc + r * ldacc + w * VF_W));
    }
    for (int j = 0; j < keys; j++) {
        vf vv[VF_PV_V];
        for (int w = 0; w < NV; w++)
            vv[w] = w == NV - 1 && tail < VF_W ? vf_load_first_or(v + j * ldv + w * VF_W, tail, 0.0f)
                                               : vf_loadu(v + j * ldv + w * VF_W);
        for (int r = 0; r < NR; r++) {
            const vf pb = vf_set1(p[r * ldp + j]);
            for (int w = 0; w < NV; w++) a[r][w] = vf_fma(pb, vv[w], a[r][w]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) vf_storeu(acc + r * ldacc + w * VF_W, a[r][w]);
}

VF_INLINE void row_pv_rows(const int NV, int tail, int rows, int keys, const float *p,
                           int64_t ldp, const float *v, int64_t ldv, const float *alpha,
                           float *acc, int64_t ldacc) {
    int r = 0;
    for (; r + VF_PV_R <= rows; r += VF_PV_R)
        row_pv_tile(VF_PV_R, NV, tail, keys, p + r * ldp, ldp, v, ldv, alpha + r,
                    acc + r * ldacc, ldacc);
    for (; r < rows; r++)
        row_pv_tile(1, NV, tail, keys, p + r * ldp, ldp, v, ldv, alpha + r, acc + r * ldacc, ldacc);
}

VF_FN static void row_accumulate_pv(int rows, int keys, int64_t dv, const float *p, int64_t ldp,
                                    const float *v, int64_t ldv, const float *alpha, float *acc,
                                    int64_t ldacc) {
    for (int64_t d0 = 0; d0 < dv; d0 += VF_PV_V * VF_W) {
        const int64_t cols = dv - d0 < VF_PV_V * VF_W ? dv - d0 : VF_PV_V * VF_W;
        const int nv = (int)((cols + VF_W - 1) / VF_W);
        const int tail = (int)(cols - (int64_t)(nv - 1) * VF_W);
        const float *vd = v + d0;
        float *ad = acc + d0;
        switch (nv) {
        case 1: row_pv_rows(1, tail, rows, keys, p, ldp, vd, ldv, alpha, ad, ldacc); break;
        case 2: row_pv_rows(2, tail, rows, keys, p, ldp, vd, ldv, alpha, ad, ldacc); break;
#if VF_PV_V > 2
        case 3: row_pv_rows(3, tail, rows, keys, p, ldp, vd, ldv, alpha, ad, ldacc); break;
        case 4: row_pv_rows(4, tail, rows, keys, p, ldp, vd, ldv, alpha, ad, ldacc); break;
#endif
#if VF_PV_V > 4
        case 5: row_pv_rows(5, tail, rows, keys, p, ldp, vd, ldv, alpha, ad, ldacc); break;
        case 6: row_pv_rows(6, tail, rows, keys, p, ldp, vd, ldv, alpha, ad, ldacc); break;
        case 7: row_pv_rows(7, tail, rows, keys, p, ldp, vd, ldv, alpha, ad, ldacc); break;
        case 8: row_pv_rows(8, tail, rows, keys, p, ldp, vd, ldv, alpha, ad, ldacc); break;
#endif
        default: break;
        }
    }
}
