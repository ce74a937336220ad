// row_kernels.h — query-major ("row") tiles for decoding, written once over the thin vector
// layer (vec_avx512.h, vec_avx2.h, vec_portable.h) and compiled once per ISA beside
// tile_kernels.h: each ISA file includes its vector header, then the kernel sources, then
// kernel_table.h (so this is not an ordinary header: it has no guard and defines static
// functions).
//
// A row tile holds a few query rows — the rows of every query head of a GQA group stacked
// (decoding: Lq × Hq/Hkv rows) — against a block of keys. Scores are kept query-major,
// s[r, j], so a vector holds one query's scores for consecutive keys and every lane is live
// however few rows there are (a key-major tile would fill one lane of 16 for a lone query).
// Each row's arithmetic is the same in any tile and any register grouping: rows never mix, so
// results do not depend on how rows are stacked or split between threads.
//
// Register tiles (per ISA, from the vector header): scores VF_SCORES_R rows with their query
// vectors held in registers (up to VF_QREG per row, row_scores_qreg) or, for longer heads,
// VF_SCORES_R rows × VF_SCORES_K keys of accumulators over d (row_scores_tile); P·V VF_PV_R
// rows × VF_PV_V value vectors, one broadcast probability per row and key.
//
// Memory order matters as much as instruction count here: decoding streams K and V from DRAM
// and the hardware prefetchers must see them as streams. On one Zen 4 core (AVX-512, D = 128,
// each variant timed against the others in one process, best of several passes):
// - Key rows are read one after another, each in address order. Interleaving rows (a tile of
//   several keys sharing its query loads) halves the stream even with software prefetch ahead
//   of it; holding the queries in registers instead gives the same saving without it: scores
//   of 4 rows went from 17 to 26 GB/s of K from DRAM (28 → 51 GB/s from L2).
// - A V row's vectors are loaded in order: the last one, when it may be partial, is a masked
//   load the compiler hoisted ahead of the others, and that order (7, 0, 1, … 6) cost 15–25 %
//   of the stream; whole-vector rows now load with plain loads only (the FULL tiles).
// - With several row groups, every group takes a short run of keys before the next run
//   (RowScoreKeys, RowPVKeys), so K and V come from DRAM once and from L1 for the other
//   groups; a whole block per group re-read them from L2 in series.
// The whole step went from 14 to 20 GB/s of K+V on one core at 4 rows (Hq/Hkv = 32/8).

// K and V rows in element type T (fa_kv_type, a constant after inlining): fp32, or fp16 /
// bf16 bits widened exactly as they are loaded, so a half cache is read at half the bytes and
// all arithmetic stays fp32. Offsets count elements.
VF_INLINE const void *row_at(const int T, const void *p, int64_t n) {
    return (const char *)p + n * (T == FA_KV_F32 ? 4 : 2);
}
// The vector of elements n … n + VF_W − 1 at p, or only the first `live` of them (0 elsewhere).
VF_INLINE vf row_load(const int T, const void *p, int64_t n) {
    if (T == FA_KV_F16) return vf_load_f16((const uint16_t *)p + n);
    if (T == FA_KV_BF16) return vf_load_bf16((const uint16_t *)p + n);
    return vf_loadu((const float *)p + n);
}
VF_INLINE vf row_load_first(const int T, const void *p, int64_t n, int live) {
    if (T == FA_KV_F16) return vf_load_f16_first((const uint16_t *)p + n, live);
    if (T == FA_KV_BF16) return vf_load_bf16_first((const uint16_t *)p + n, live);
    return vf_load_first_or((const float *)p + n, live, 0.0f);
}

// Whether rows of type T are read by parity: bf16 rows of whole vector pairs (one load and one
// integer op per vector instead of a widening load and a shift; measured on Zen 4 the
// conversions had made bf16 decoding compute-bound at 4 rows per K/V row).
VF_INLINE int row_split(const int T, const int FULL, const int NV) {
    return T == FA_KV_BF16 && FULL && NV % 2 == 0;
}

// s[r, c] = Σ_d q[r, d] · k[c, d] for NR rows and NK keys (constants after inlining). q is
// zero from dqk to the next multiple of VF_W, so its loads need no tail; k's tail is masked.
// Two accumulators per (row, key), for even and odd vectors of d, keep enough independent
// FMA chains in flight when NK is 1.
VF_INLINE void row_scores_tile(const int T, const int NR, const int NK, int64_t dqk,
                               const float *q, int64_t ldq, const void *k, int64_t ldk, float *s,
                               int64_t lds) {
    vf acc[2][VF_SCORES_R][VF_SCORES_K];
    for (int h = 0; h < 2; h++)
        for (int r = 0; r < NR; r++)
            for (int c = 0; c < NK; c++) acc[h][r][c] = vf_zero();
    int64_t d = 0;
    for (; d + 2 * VF_W <= dqk; d += 2 * VF_W) {
        for (int h = 0; h < 2; h++) {
            vf kv[VF_SCORES_K];
            for (int c = 0; c < NK; c++) kv[c] = row_load(T, k, c * ldk + d + h * VF_W);
            for (int r = 0; r < NR; r++) {
                const vf qv = vf_loadu(q + r * ldq + d + h * VF_W);
                for (int c = 0; c < NK; c++) acc[h][r][c] = vf_fma(qv, kv[c], acc[h][r][c]);
            }
        }
    }
    for (; d < dqk; d += VF_W) {  // at most one full vector and a tail (even chain)
        const int n = dqk - d < VF_W ? (int)(dqk - d) : VF_W;
        vf kv[VF_SCORES_K];
        for (int c = 0; c < NK; c++) kv[c] = row_load_first(T, k, c * ldk + d, n);
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

VF_INLINE void row_scores_keys(const int T, const int NR, int keys, int64_t dqk, const float *q,
                               int64_t ldq, const void *k, int64_t ldk, float *s, int64_t lds) {
    int j = 0;
    for (; j + VF_SCORES_K <= keys; j += VF_SCORES_K)
        row_scores_tile(T, NR, VF_SCORES_K, dqk, q, ldq, row_at(T, k, j * ldk), ldk, s + j, lds);
    for (; j < keys; j++) row_scores_tile(T, NR, 1, dqk, q, ldq, row_at(T, k, j * ldk), ldk, s + j, lds);
}

/// Keys per scores pass: every row group takes RowScoreKeys keys before the next ones, so K
/// is read from memory once, by the first group, and the others find those rows in L1 (as
/// RowPVKeys for V below; a whole block per group re-read K from L2 for each further group).
enum { RowScoreKeys = 16 };

#if VF_QREG > 0
// Scores with the query rows held in registers: NR rows (≤ VF_SCORES_R) of NQ vectors each are
// loaded once per pass, then every key row is read once, in address order, and dotted with
// all of them — one FMA chain per (row, key) over d in order, reduced by vf_hsum's tree — so a
// key costs its own NQ loads and no query loads. q is zero past dqk; k's last vector holds
// `tail` live floats (all VF_W when FULL: plain loads only, issued in order).
VF_INLINE void row_scores_qreg(const int T, const int NR, const int NQ, const int FULL, int tail,
                               int keys, const float *q, int64_t ldq, const void *k, int64_t ldk,
                               float *s, int64_t lds) {
    // bf16 rows of whole vector pairs are read by parity (row_split): the query vectors are
    // held split the same way (pair w: qr[2w] the even elements, qr[2w+1] the odd ones).
    const int SPLIT = row_split(T, FULL, NQ);
    vf qr[VF_SCORES_R][VF_QREG];
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NQ; w++) qr[r][w] = vf_loadu(q + r * ldq + w * VF_W);
    if (SPLIT)
        for (int r = 0; r < NR; r++)
            for (int w = 0; w < NQ; w += 2) vf_split_parity(qr[r][w], qr[r][w + 1], &qr[r][w], &qr[r][w + 1]);
    for (int j = 0; j < keys; j++) {
        const void *kj = row_at(T, k, (int64_t)j * ldk);
        vf a[VF_SCORES_R];
        for (int r = 0; r < NR; r++) a[r] = vf_zero();
        for (int w = 0; w < NQ; w += SPLIT ? 2 : 1) {
            if (SPLIT) {
                vf ke, ko;
                vf_load_bf16_split((const uint16_t *)kj + w * VF_W, &ke, &ko);
                for (int r = 0; r < NR; r++) a[r] = vf_fma(qr[r][w + 1], ko, vf_fma(qr[r][w], ke, a[r]));
                continue;
            }
            const vf kv = !FULL && w == NQ - 1 ? row_load_first(T, kj, w * VF_W, tail)
                                               : row_load(T, kj, w * VF_W);
            for (int r = 0; r < NR; r++) a[r] = vf_fma(qr[r][w], kv, a[r]);
        }
#if VF_SCORES_R >= 4
        if (NR == 4) {  // four rows' reductions at once, each with vf_hsum's association
            float sum[4];
            vf_hsum4(a[0], a[1], a[2], a[3], sum);
            for (int r = 0; r < 4; r++) s[r * lds + j] = sum[r];
            continue;
        }
#endif
        for (int r = 0; r < NR; r++) s[r * lds + j] = vf_hsum(a[r]);
    }
}

// Every row group over `keys` keys, with NQ query vectors held (a constant after inlining).
VF_INLINE void row_scores_qreg_rows(const int T, const int NQ, const int FULL, int tail, int rows,
                                    int keys, const float *q, int64_t ldq, const void *k,
                                    int64_t ldk, float *s, int64_t lds) {
    int r = 0;
    for (; r + VF_SCORES_R <= rows; r += VF_SCORES_R)
        row_scores_qreg(T, VF_SCORES_R, NQ, FULL, tail, keys, q + r * ldq, ldq, k, ldk,
                        s + r * lds, lds);
    for (; r < rows; r++)
        row_scores_qreg(T, 1, NQ, FULL, tail, keys, q + r * ldq, ldq, k, ldk, s + r * lds, lds);
}

// The FULL variant when the head dim fills its last vector (plain loads only), else the tail one.
VF_INLINE void row_scores_qreg_tail(const int T, const int NQ, int tail, int rows, int keys,
                                    const float *q, int64_t ldq, const void *k, int64_t ldk,
                                    float *s, int64_t lds) {
    if (tail == VF_W) row_scores_qreg_rows(T, NQ, 1, tail, rows, keys, q, ldq, k, ldk, s, lds);
    else row_scores_qreg_rows(T, NQ, 0, tail, rows, keys, q, ldq, k, ldk, s, lds);
}
#endif

// Scores of a block. Head dims up to VF_QREG vectors keep the query rows in registers
// (row_scores_qreg); longer ones load them for every key (row_scores_keys).
VF_INLINE void row_scores(const int T, int rows, int keys, int64_t dqk, const float *q,
                          int64_t ldq, const void *k, int64_t ldk, float *s, int64_t lds) {
    const int pass = rows > VF_SCORES_R ? RowScoreKeys : keys;  // one row group: one pass
    for (int j0 = 0; j0 < keys; j0 += pass) {
        const int kk = keys - j0 < pass ? keys - j0 : pass;
        const void *kj = row_at(T, k, (int64_t)j0 * ldk);
        float *sj = s + j0;
#if VF_QREG > 0
        if (dqk <= VF_QREG * VF_W) {
            const int nq = (int)((dqk + VF_W - 1) / VF_W);
            const int tail = (int)(dqk - (int64_t)(nq - 1) * VF_W);
            switch (nq) {
            case 1: row_scores_qreg_tail(T, 1, tail, rows, kk, q, ldq, kj, ldk, sj, lds); break;
            case 2: row_scores_qreg_tail(T, 2, tail, rows, kk, q, ldq, kj, ldk, sj, lds); break;
#if VF_QREG > 2
            case 3: row_scores_qreg_tail(T, 3, tail, rows, kk, q, ldq, kj, ldk, sj, lds); break;
            case 4: row_scores_qreg_tail(T, 4, tail, rows, kk, q, ldq, kj, ldk, sj, lds); break;
#endif
#if VF_QREG > 4
            case 5: row_scores_qreg_tail(T, 5, tail, rows, kk, q, ldq, kj, ldk, sj, lds); break;
            case 6: row_scores_qreg_tail(T, 6, tail, rows, kk, q, ldq, kj, ldk, sj, lds); break;
            case 7: row_scores_qreg_tail(T, 7, tail, rows, kk, q, ldq, kj, ldk, sj, lds); break;
            case 8: row_scores_qreg_tail(T, 8, tail, rows, kk, q, ldq, kj, ldk, sj, lds); break;
#endif
            default: break;
            }
            continue;
        }
#endif
        int r = 0;
        for (; r + VF_SCORES_R <= rows; r += VF_SCORES_R)
            row_scores_keys(T, VF_SCORES_R, kk, dqk, q + r * ldq, ldq, kj, ldk, sj + r * lds, lds);
        for (; r < rows; r++)
            row_scores_keys(T, 1, kk, dqk, q + r * ldq, ldq, kj, ldk, sj + r * lds, lds);
    }
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

// out[r, d0 …] = (FRESH ? 0 : out[r, d0 …]) + Σ_j p[r, j] · v[j, d0 …] for NR rows and NV
// value vectors, the last one holding `tail` live columns — all VF_W when FULL, so every load
// is a plain one and the loads of a V row are issued in address order (a masked last load
// that the compiler hoists ahead of the others turns each row's lines into 7, 0, 1, … 6,
// which cost a fifth of the stream on one Zen 4 core). out rows are whole vectors up to ldo.
VF_INLINE void row_pv_tile(const int T, const int NR, const int NV, const int FULL,
                           const int FRESH, int tail, int keys, const float *p, int64_t ldp,
                           const void *v, int64_t ldv, float *out, int64_t ldo) {
    // Read by parity (row_split), the accumulators of pair w hold its even elements in a[2w]
    // and its odd ones in a[2w+1]: each output element's chain is the same, in another lane.
    const int SPLIT = row_split(T, FULL, NV);
    vf a[VF_PV_R][VF_PV_V];
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) a[r][w] = FRESH ? vf_zero() : vf_loadu(out + r * ldo + w * VF_W);
    if (SPLIT && !FRESH)
        for (int r = 0; r < NR; r++)
            for (int w = 0; w < NV; w += 2) vf_split_parity(a[r][w], a[r][w + 1], &a[r][w], &a[r][w + 1]);
    for (int j = 0; j < keys; j++) {
        vf vv[VF_PV_V];
        for (int w = 0; w < NV; w += SPLIT ? 2 : 1) {
            if (SPLIT)
                vf_load_bf16_split((const uint16_t *)v + j * ldv + w * VF_W, &vv[w], &vv[w + 1]);
            else
                vv[w] = !FULL && w == NV - 1 ? row_load_first(T, v, j * ldv + w * VF_W, tail)
                                             : row_load(T, v, j * ldv + w * VF_W);
        }
        for (int r = 0; r < NR; r++) {
            const vf pb = vf_set1(p[r * ldp + j]);
            for (int w = 0; w < NV; w++) a[r][w] = vf_fma(pb, vv[w], a[r][w]);
        }
    }
    if (SPLIT)
        for (int r = 0; r < NR; r++)
            for (int w = 0; w < NV; w += 2) vf_merge_parity(a[r][w], a[r][w + 1], &a[r][w], &a[r][w + 1]);
    for (int r = 0; r < NR; r++)
        for (int w = 0; w < NV; w++) vf_storeu(out + r * ldo + w * VF_W, a[r][w]);
}

// Every row group over `keys` keys and NV value vectors (one column chunk).
VF_INLINE void row_pv_rows(const int T, const int NV, const int FULL, const int FRESH, int tail,
                           int rows, int keys, const float *p, int64_t ldp, const void *v,
                           int64_t ldv, float *out, int64_t ldo) {
    int r = 0;
    for (; r + VF_PV_R <= rows; r += VF_PV_R)
        row_pv_tile(T, VF_PV_R, NV, FULL, FRESH, tail, keys, p + r * ldp, ldp, v, ldv,
                    out + r * ldo, ldo);
    for (; r < rows; r++)
        row_pv_tile(T, 1, NV, FULL, FRESH, tail, keys, p + r * ldp, ldp, v, ldv, out + r * ldo, ldo);
}

VF_INLINE void row_pv_chunk(const int T, const int NV, int tail, int first, int rows, int keys,
                            const float *p, int64_t ldp, const void *v, int64_t ldv, float *out,
                            int64_t ldo) {
    if (tail == VF_W) {
        if (first) row_pv_rows(T, NV, 1, 1, tail, rows, keys, p, ldp, v, ldv, out, ldo);
        else row_pv_rows(T, NV, 1, 0, tail, rows, keys, p, ldp, v, ldv, out, ldo);
    } else {
        if (first) row_pv_rows(T, NV, 0, 1, tail, rows, keys, p, ldp, v, ldv, out, ldo);
        else row_pv_rows(T, NV, 0, 0, tail, rows, keys, p, ldp, v, ldv, out, ldo);
    }
}

/// Keys per P·V pass when there are several row groups: every group and column chunk takes
/// RowPVKeys keys before the next ones, so V is read from memory once per block, by the first
/// group, and the others find those rows (8 KB at D = 128) in L1. Measured on one Zen 4 core
/// (V from DRAM, A/B in one process): 4 rows 18 → 20–22 GB/s against whole-block passes
/// (32-key passes: 17), 8 rows about even (14–15); from L2 the extra accumulator loads and
/// stores cost 54 → 46 GB/s at 4 rows, which decoding, bound by DRAM, does not see.
enum { RowPVKeys = 16 };

// out = P·V over one run of keys (out from 0 when `fresh`, else added to): key passes, then
// column chunks, then row groups. Each out element sees the keys in order in one chain, so
// the bits are those of one pass over the block, however the block is cut into runs.
VF_INLINE void row_run_pv(const int T, int fresh, int rows, int keys, int64_t dv, const float *p,
                          int64_t ldp, const void *v, int64_t ldv, float *out, int64_t ldo) {
    const int pass = rows > VF_PV_R ? RowPVKeys : keys;  // one row group: one pass
    for (int j0 = 0; j0 < keys; j0 += pass) {
        const int kk = keys - j0 < pass ? keys - j0 : pass;
        const float *pj = p + j0;
        const void *vj = row_at(T, v, (int64_t)j0 * ldv);
        const int first = fresh && j0 == 0;
        for (int64_t d0 = 0; d0 < dv; d0 += VF_PV_V * VF_W) {
            const int64_t cols = dv - d0 < VF_PV_V * VF_W ? dv - d0 : VF_PV_V * VF_W;
            const int nv = (int)((cols + VF_W - 1) / VF_W);
            const int tail = (int)(cols - (int64_t)(nv - 1) * VF_W);
            const void *vd = row_at(T, vj, d0);
            float *od = out + d0;
            switch (nv) {
            case 1: row_pv_chunk(T, 1, tail, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
            case 2: row_pv_chunk(T, 2, tail, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
#if VF_PV_V > 2
            case 3: row_pv_chunk(T, 3, tail, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
            case 4: row_pv_chunk(T, 4, tail, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
#endif
#if VF_PV_V > 4
            case 5: row_pv_chunk(T, 5, tail, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
            case 6: row_pv_chunk(T, 6, tail, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
            case 7: row_pv_chunk(T, 7, tail, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
            case 8: row_pv_chunk(T, 8, tail, first, rows, kk, pj, ldp, vd, ldv, od, ldo); break;
#endif
            default: break;
            }
        }
    }
}

// out = P·V over the given runs of the block, in order: the run at key 0 starts the sums, a
// later one adds to them (so the block's runs may come over several calls, in key order).
VF_INLINE void row_block_pv(const int T, int rows, int keys, int64_t dv, const float *p,
                            int64_t ldp, const fa_row_run *runs, int nruns, float *out,
                            int64_t ldo) {
    (void)keys;
    for (int i = 0; i < nruns; i++)
        row_run_pv(T, runs[i].key == 0, rows, runs[i].keys, dv, p + runs[i].key, ldp,
                   runs[i].rows, runs[i].ld, out, ldo);
}

// acc[r, :] = α_r · acc[r, :] + out[r, :] (the multiply skipped where α_r is 1: the row max did
// not move), whole vectors up to dv rounded up to VF_W.
VF_FN static void row_fold(int rows, int64_t dv, const float *alpha, const float *out,
                           int64_t ldo, float *acc, int64_t ldacc) {
    for (int r = 0; r < rows; r++) {
        const float *o = out + r * ldo;
        float *a = acc + r * ldacc;
        if (alpha[r] == 1.0f) {
            for (int64_t d = 0; d < dv; d += VF_W) vf_storeu(a + d, vf_add(vf_loadu(a + d), vf_loadu(o + d)));
        } else {
            const vf al = vf_set1(alpha[r]);
            for (int64_t d = 0; d < dv; d += VF_W)
                vf_storeu(a + d, vf_fma(al, vf_loadu(a + d), vf_loadu(o + d)));
        }
    }
}

// dst[i] = src[i] widened to fp32 (exactly), i < n: the key-major paths' half tiles.
VF_INLINE void row_widen(const int T, const void *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + VF_W <= n; i += VF_W) vf_storeu(dst + i, row_load(T, src, i));
    if (i < n) vf_store_first(dst + i, row_load_first(T, src, i, (int)(n - i)), (int)(n - i));
}

// The table's entries: one per element type of K and V.
#define ROW_ENTRIES(name, T)                                                                 \
    VF_FN static void row_scores_##name(int rows, int keys, int64_t dqk, const float *q,      \
                                        int64_t ldq, const void *k, int64_t ldk, float *s,    \
                                        int64_t lds) {                                        \
        row_scores(T, rows, keys, dqk, q, ldq, k, ldk, s, lds);                               \
    }                                                                                         \
    VF_FN static void row_block_pv_##name(int rows, int keys, int64_t dv, const float *p,     \
                                          int64_t ldp, const fa_row_run *runs, int nruns,     \
                                          float *out, int64_t ldo) {                          \
        row_block_pv(T, rows, keys, dv, p, ldp, runs, nruns, out, ldo);                       \
    }                                                                                         \
    VF_FN static void row_widen_##name(const void *src, float *dst, int64_t n) {              \
        row_widen(T, src, dst, n);                                                            \
    }
ROW_ENTRIES(f32, FA_KV_F32)
ROW_ENTRIES(f16, FA_KV_F16)
ROW_ENTRIES(bf16, FA_KV_BF16)
#undef ROW_ENTRIES
