// forward.c — the FlashAttention-2 forward loop nest. No ISA code: tiles go to fa_kernels.
//
// For each (batch b, query head h, query block of BQ rows), with g = h / (Hq / Hkv):
//   Qᵀ = scale·log2(e) · Q[b,h,rows]ᵀ                       (pack_qt, once per block)
//   m = −inf, l = 0, acc = 0                                 (running max, sum, output)
//   for each key block of BK keys that some row of the block can see:
//     Sᵀ = K[b,g,keys] · Qᵀ   (log2 units)                   (scores_t; it also applies the
//     Sᵀ[j,i] = −inf where key j is hidden from row i          causal mask on diagonal blocks
//     m_blk = max_j Sᵀ[j,i]                                    and keeps the block max)
//     m' = max(m, m_blk);  P = 2^(Sᵀ − m');  α = 2^(m − m')  (softmax_t)
//     l = α·l + Σ_j P;     acc = α·acc + Pᵀ · V[b,g,keys]    (accumulate_pv; skips α = 1)
//   O = acc / l,  LSE = (m + log2 l)·ln 2;  rows that saw no key: O = 0, LSE = −inf
//
// Working in base 2 (log2(e) folded into the scale) turns every exp into one exp2. Work
// items are (b, h, query block); threads claim them one at a time, heaviest first under a
// causal mask, so late (long) query blocks do not finish last. Each item is computed by one
// thread in a fixed order, and a row's arithmetic does not depend on which block holds it,
// so results are bitwise independent of the thread count.
#include <math.h>
#include <string.h>
#include "internal.h"

#ifdef _OPENMP
int omp_get_thread_num(void);
#endif

/// Everything a work item needs, resolved once per call.
typedef struct forward_plan {
    const fa_problem *p;
    const fa_kernels *kr;
    fa_blocking blocks;
    fa_forward_layout layout;
    float scale_log2;       ///< scale · log2(e)
    int64_t group;          ///< query heads per key/value head
    int64_t q_blocks;       ///< ceil(Lq / BQ)
} forward_plan;

/// Prefetches `rows` rows of `width` floats, `stride` apart, into the caches.
static void prefetch_rows(const float *base, int rows, int64_t stride, int64_t width) {
    for (int r = 0; r < rows; r++)
        for (int64_t d = 0; d < width; d += 16) __builtin_prefetch(base + r * stride + d, 0, 3);
}

/// The first key block from `k0` (a multiple of bk) before `kv_end` that the masks do not hide
/// entirely, and its kind; kv_end if there is none.
static int64_t next_visited(const fa_score_mods *m, int64_t q0, int rows, int64_t k0,
                            int64_t kv_end, int bk, fa_tile_kind *kind) {
    for (; k0 < kv_end; k0 += bk) {
        *kind = fa_classify_tile(m, q0, rows, k0, (int)(kv_end - k0 < bk ? kv_end - k0 : bk));
        if (*kind != FA_TILE_HIDDEN) return k0;
    }
    return kv_end;
}

/// Burst `i` of `n`: asks for its share of the mask rows of the tile at (q0, k0).
static void prefetch_burst(const fa_score_mods *m, int64_t q0, int rows, int i, int n,
                           int64_t k0, int keys) {
    if (m->mask_kind == FA_MASK_NONE) return;
    const int r0 = (int)((int64_t)rows * i / n), r1 = (int)((int64_t)rows * (i + 1) / n);
    if (r1 > r0) fa_prefetch_tile_mask(m, q0 + r0, r1 - r0, k0, keys);
}

// One query block of one (b, h): the whole inner loop of the algorithm above.
static void forward_tile(const forward_plan *pl, int64_t b, int64_t h, int64_t qb, float *ws) {
    const fa_problem *p = pl->p;
    const fa_kernels *kr = pl->kr;
    const int64_t dqk = p->shape.head_dim_qk, dv = p->shape.head_dim_v;
    const int bq = pl->blocks.block_q, bk = pl->blocks.block_k;
    const int64_t q0 = qb * bq;
    // Rows of this entry's buffer in the block (packed sequences are shorter than q_len).
    const int64_t entry_rows = fa_q_rows_of(p, b);
    if (q0 >= entry_rows) return;
    const int block_rows = (int)(entry_rows - q0 < bq ? entry_rows - q0 : bq);
    // Rows past the batch entry's valid length are padding: output 0, logsumexp −inf.
    const int64_t q_valid = fa_q_len_of(p, b) - q0;
    const int rows = (int)(q_valid < 0 ? 0 : (q_valid < block_rows ? q_valid : block_rows));
    const fa_row_band band = fa_row_band_for(p, b);
    const int vw = kr->vector_width;
    const int rows_padded = (rows + vw - 1) / vw * vw;
    const int64_t g = h / pl->group;
    const int64_t ldacc = pl->layout.ldacc;

    const float *q = p->q + fa_q_entry(p, b, p->q_strides) + h * p->q_strides.head +
                     q0 * p->q_strides.seq;
    const float *k = p->k + fa_kv_entry(p, b, p->k_strides) + g * p->k_strides.head;
    const float *v = p->v + fa_kv_entry(p, b, p->v_strides) + g * p->v_strides.head;
    const fa_score_mods mods = fa_score_mods_for(p, b, h);
    float *o = p->o + fa_q_entry(p, b, p->o_strides) + h * p->o_strides.head +
               q0 * p->o_strides.seq;
    float *lse = p->lse ? p->lse + fa_q_entry(p, b, p->lse_strides) + h * p->lse_strides.head +
                              q0 * p->lse_strides.seq
                        : NULL;
    for (int i = rows; i < block_rows; i++) {
        for (int64_t d = 0; d < dv; d++) o[i * p->o_strides.seq + d] = 0.0f;
        if (lse) lse[i * p->lse_strides.seq] = -INFINITY;
    }
    if (rows == 0) return;

    float *qt = ws + pl->layout.qt;
    float *st = ws + pl->layout.st;
    float *acc = ws + pl->layout.acc;
    float *row_max = ws + pl->layout.row_max;
    float *row_sum = ws + pl->layout.row_sum;
    float *alpha = ws + pl->layout.alpha;
    float *block_max = ws + pl->layout.block_max;

    // Keys outside [first row's start, last row's end) are hidden from every row: only the
    // key blocks in between are visited (aligned to BK, so the rescale points are fixed).
    // Blocks the masks hide entirely add nothing (P = 0) and are skipped; each block is
    // classified once, one visited block ahead, so that only blocks that will be computed are
    // prefetched (a block-sparse mask keeping 10 % would otherwise fetch ten times the K, V).
    const int64_t kv_begin = fa_row_lo(&band, q0) / bk * bk;
    const int64_t kv_end = fa_row_hi(&band, q0 + rows - 1);
    fa_tile_kind tile;
    int64_t k0 = next_visited(&mods, q0, rows, kv_begin, kv_end, bk, &tile);
    if (k0 < kv_end) {  // the first key block loads while Q is packed
        const int first = (int)(kv_end - k0 < bk ? kv_end - k0 : bk);
        prefetch_rows(k + k0 * p->k_strides.seq, first, p->k_strides.seq, dqk);
        prefetch_rows(v + k0 * p->v_strides.seq, first, p->v_strides.seq, dv);
        fa_prefetch_tile_mask(&mods, q0, rows, k0, first);
    }
    // With an element mask, scores and the P·V product are computed a query tile at a time,
    // and between the chunks the next key block's mask is asked for (see below).
    const int chunk = mods.mask_kind != FA_MASK_NONE ? kr->query_tile : rows_padded;

    // Qᵀ = scale·log2(e) · Qᵀ, padded with zero queries; fresh softmax state.
    kr->pack_qt(rows, rows_padded, dqk, q, p->q_strides.seq, pl->scale_log2, qt, bq);
    for (int i = 0; i < rows_padded; i++) {
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
        block_max[i] = -INFINITY;
    }
    memset(acc, 0, sizeof(float) * (size_t)rows_padded * (size_t)ldacc);

    while (k0 < kv_end) {
        const int keys = (int)(kv_end - k0 < bk ? kv_end - k0 : bk);
        // The next block to compute; ask for its K and V rows now: they arrive from L3 while
        // this block computes (the hardware prefetchers do not see 2·BK short row streams).
        fa_tile_kind next_tile;
        const int64_t k1 = next_visited(&mods, q0, rows, k0 + bk, kv_end, bk, &next_tile);
        const int next_keys = k1 < kv_end ? (int)(kv_end - k1 < bk ? kv_end - k1 : bk) : 0;
        if (next_keys > 0) {
            prefetch_rows(k + k1 * p->k_strides.seq, next_keys, p->k_strides.seq, dqk);
            prefetch_rows(v + k1 * p->v_strides.seq, next_keys, p->v_strides.seq, dv);
        }
        // Local query i sees local key j iff j + lo ≤ i < j + hi (element masks on the
        // band's edges only).
        int64_t lo, hi;
        const int masked = fa_tile_band(&band, q0, rows, k0, keys, &lo, &hi);
        // The next block's mask rows are asked for in 2·chunks bursts, after each chunk of
        // scores and of the P·V product. A dense mask's tile is hundreds of short runs a mask
        // row apart: no hardware prefetcher follows them, and requests made all at once are
        // mostly dropped or evicted before use; spread over the whole block they are served
        // while it computes (with the kernel's own requests a few row groups ahead, this took
        // a dense additive mask from 1.8× to 1.25× the unmasked time at N = 2048, D = 64).
        const int bursts = 2 * ((rows_padded + chunk - 1) / chunk);
        int burst = 0;
        for (int r0 = 0; r0 < rows_padded; r0 += chunk) {
            const int n = rows_padded - r0 < chunk ? rows_padded - r0 : chunk;
            kr->scores_t(keys, n, dqk, k + k0 * p->k_strides.seq, p->k_strides.seq, qt + r0, bq,
                         st + r0, bq, masked, lo - r0, hi - r0, block_max + r0);
            if (next_keys > 0) prefetch_burst(&mods, q0, rows, burst++, bursts, k1, next_keys);
        }
        // Soft-capping, ALiBi and element masks, if any (they also recompute the block max).
        if (tile == FA_TILE_MODIFIED || tile == FA_TILE_PARTIAL)
            fa_modify_tile(kr, tile, &mods, keys, rows, rows_padded, st, bq, q0, k0, block_max,
                           NULL);
        kr->softmax_t(keys, rows_padded, st, bq, block_max, row_max, row_sum, alpha, masked, lo,
                      hi);
        for (int r0 = 0; r0 < rows_padded; r0 += chunk) {
            const int n = rows_padded - r0 < chunk ? rows_padded - r0 : chunk;
            kr->accumulate_pv(n, keys, dv, st + r0, bq, v + k0 * p->v_strides.seq,
                              p->v_strides.seq, alpha + r0, acc + (int64_t)r0 * ldacc, ldacc,
                              masked, lo - r0, hi - r0);
            if (next_keys > 0) prefetch_burst(&mods, q0, rows, burst++, bursts, k1, next_keys);
        }
        k0 = k1;
        tile = next_tile;
    }

    // O = acc / l,  LSE = (m + log2 l)·ln 2  (0 and −inf for rows that saw no key)
    for (int i = 0; i < rows; i++) {
        float *oi = o + i * p->o_strides.seq;
        const float l = row_sum[i];
        if (l > 0.0f) {
            const float inv = 1.0f / l;
            const float *ai = acc + (int64_t)i * ldacc;
            for (int64_t d = 0; d < dv; d++) oi[d] = ai[d] * inv;
        } else {
            for (int64_t d = 0; d < dv; d++) oi[d] = 0.0f;
        }
        if (lse) lse[i * p->lse_strides.seq] = l > 0.0f ? (row_max[i] + log2f(l)) * FA_LN2 : -INFINITY;
    }
}

fa_status fa_forward(const fa_problem *p) {
    fa_resolved r;
    fa_status st = fa_validate(p, NULL, &r);
    if (st != FA_OK) return st;

    forward_plan pl = {0};
    pl.p = p;
    pl.kr = fa_kernels_for(p->isa);
    pl.blocks = fa_blocking_for(pl.kr, &p->shape, r.threads, p->window_left,
                                p->block_mask.data ? p->block_mask.block_q : 0);
    pl.layout = fa_forward_layout_for(&p->shape, pl.blocks);
    pl.scale_log2 = r.scale * FA_LOG2E;
    pl.group = r.group;
    // Packed sequences: blocks of the longest; a shorter sequence's extra items are empty.
    pl.q_blocks = (fa_max_q_rows(p) + pl.blocks.block_q - 1) / pl.blocks.block_q;

    // A caller workspace is split between the threads; otherwise each thread uses its own
    // cached one (frame/workspace.c). Either way every thread has its workspace before any
    // output is written, so a failed allocation leaves the outputs untouched.
    float *shared = p->workspace
        ? (float *)(((uintptr_t)p->workspace + FA_ALIGN - 1) & ~(uintptr_t)(FA_ALIGN - 1))
        : NULL;
    const size_t per_thread = pl.layout.per_thread_bytes;

    const int64_t heads = p->shape.batch * p->shape.q_heads;
    const int64_t items = heads * pl.q_blocks;
    // Items are claimed from a shared counter (dynamic scheduling by hand: the Debian libomp
    // predates the runtime entry points clang emits for schedule(dynamic)).
    int64_t next_item = 0;
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(r.threads)
#endif
    {
#ifdef _OPENMP
        const int me = omp_get_thread_num();
#else
        const int me = 0;
#endif
        float *mine = shared ? shared + (size_t)me * (per_thread / sizeof(float))
                             : fa_thread_workspace(per_thread);
        if (!mine) __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
#ifdef _OPENMP
#pragma omp barrier
#endif
        while (!__atomic_load_n(&failed, __ATOMIC_RELAXED)) {
            const int64_t t = __atomic_fetch_add(&next_item, 1, __ATOMIC_RELAXED);
            if (t >= items) break;
            // Causal: the last query blocks see the most keys, so they are handed out first.
            int64_t qb = t / heads;
            if (p->causal != FA_CAUSAL_NONE) qb = pl.q_blocks - 1 - qb;
            const int64_t bh = t % heads;
            forward_tile(&pl, bh / p->shape.q_heads, bh % p->shape.q_heads, qb, mine);
        }
    }
    if (failed) return FA_ERR_OUT_OF_MEMORY;
    fa_clear_unpacked_rows(p, 0);
    return FA_OK;
}
