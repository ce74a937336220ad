// avx512_bf16_rows.h — the decoding row kernels over bf16 pairs on AVX512-BF16
// (row_scores_bf16dot, row_block_pv_bf16dot; kernels/row_kernels.h's shapes, Q, K and V all
// bf16). Included by avx512_bf16.c after bf16_tile_kernels.h (it uses round_rows_bf16).
// neon_bf16.c has its own: the row shapes and the interleaving of V rows are the ISA's.

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
