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
#include "forward_plan.h"
#include "kv_source.h"

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

/// A key-major tile: one query block of one (b, h), its Qᵀ packed, and what its step needs.
typedef struct key_major_tile {
    int64_t b, h, q0;
    int rows, rows_padded;
    fa_row_band band;
    fa_score_mods mods;
    fa_kv_source src;
    const float *qt;
    float *st, *block_max;
    float *kw, *vw;  ///< where a half block's K and V rows are widened to fp32
    uint32_t *v2;    ///< a bf16 block's V rows in key pairs (bf16 dot products)
} key_major_tile;

// The first key block of [k_begin, k_end) that a tile computes: its K and V rows and mask
// asked for (callers do it before packing Q, so that they load meanwhile).
static void prefetch_first_block(const fa_forward_plan *pl, const key_major_tile *t,
                                 int64_t k_begin, int64_t k_end) {
    const int bk = pl->blocks.block_k;
    fa_tile_kind kind;
    const int64_t k0 = next_visited(&t->mods, t->q0, t->rows, k_begin, k_end, bk, &kind);
    if (k0 >= k_end) return;
    const int first = (int)(k_end - k0 < bk ? k_end - k0 : bk);
    fa_kv_prefetch(&t->src, k0, first, pl->p->shape.head_dim_qk, pl->p->shape.head_dim_v);
    fa_prefetch_tile_mask(&t->mods, t->q0, t->rows, k0, first);
}

// One step over the key blocks [k_begin, k_end) of a key-major tile (k_begin on the tile's
// block grid): the online softmax update of `state`, which the caller owns. The first block
// should have been asked for (prefetch_first_block).
static void attend_keys_t(const fa_forward_plan *pl, const key_major_tile *t,
                          fa_softmax_state *state, int64_t k_begin, int64_t k_end) {
    const fa_problem *p = pl->p;
    const fa_kernels *kr = pl->kr;
    const int64_t dqk = p->shape.head_dim_qk, dv = p->shape.head_dim_v;
    const int bq = pl->blocks.block_q, bk = pl->blocks.block_k;
    const int64_t q0 = t->q0;
    const int rows = t->rows, rows_padded = t->rows_padded;
    const fa_score_mods *mods = &t->mods;
    float *st = t->st, *block_max = t->block_max;
    for (int i = 0; i < rows_padded; i++) block_max[i] = -INFINITY;

    // Blocks the masks hide entirely add nothing (P = 0) and are skipped; each block is
    // classified once, one visited block ahead, so that only blocks that will be computed are
    // prefetched (a block-sparse mask keeping 10 % would otherwise fetch ten times the K, V).
    fa_tile_kind tile;
    int64_t k0 = next_visited(mods, q0, rows, k_begin, k_end, bk, &tile);
    // With an element mask, scores and the P·V product are computed a query tile at a time,
    // and between the chunks the next key block's mask is asked for (see below).
    const int chunk = mods->mask_kind != FA_MASK_NONE ? kr->query_tile : rows_padded;

    while (k0 < k_end) {
        const int keys = (int)(k_end - k0 < bk ? k_end - k0 : bk);
        // This block's K and V rows: as they lie; over bf16 pairs, V packed in key pairs; or
        // widened to fp32 tiles once, if stored in half. A paged block is gathered into the
        // tiles first (widened on the way unless the bf16 pairs read it as stored).
        const int bf16 = pl->bf16_dots;
        const int widen = !bf16 && fa_kv_source_is_half(&t->src);
        const fa_kv_block blk =
            t->src.page_size || widen
                ? fa_kv_block_gather(kr, &t->src, k0, keys, dqk, dv, widen, t->kw, t->vw)
                : fa_kv_block_at(&t->src, k0);
        const int64_t ldv2 = pl->layout.ldacc;
        if (bf16) kr->pack_v_bf16(keys, dv, (const uint16_t *)blk.v, blk.ldv, t->v2, ldv2);
        // The next block to compute; ask for its K and V rows now: they arrive from L3 while
        // this block computes (the hardware prefetchers do not see 2·BK short row streams).
        fa_tile_kind next_tile;
        const int64_t k1 = next_visited(mods, q0, rows, k0 + bk, k_end, bk, &next_tile);
        const int next_keys = k1 < k_end ? (int)(k_end - k1 < bk ? k_end - k1 : bk) : 0;
        if (next_keys > 0) fa_kv_prefetch(&t->src, k1, next_keys, dqk, dv);
        // Local query i sees local key j iff j + lo ≤ i < j + hi (element masks on the
        // band's edges only).
        int64_t lo, hi;
        const int masked = fa_tile_band(&t->band, q0, rows, k0, keys, &lo, &hi);
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
            if (bf16)
                kr->scores_t_bf16(keys, n, dqk, (const uint16_t *)blk.k, blk.ldk,
                                  (const uint32_t *)t->qt + r0, bq, pl->scale_log2, st + r0, bq,
                                  masked, lo - r0, hi - r0, block_max + r0);
            else
                kr->scores_t(keys, n, dqk, (const float *)blk.k, blk.ldk, t->qt + r0, bq,
                             st + r0, bq, masked, lo - r0, hi - r0, block_max + r0);
            if (next_keys > 0) prefetch_burst(mods, q0, rows, burst++, bursts, k1, next_keys);
        }
        // Soft-capping, ALiBi and element masks, if any (they also recompute the block max).
        if (tile == FA_TILE_MODIFIED || tile == FA_TILE_PARTIAL)
            fa_modify_tile(kr, tile, mods, keys, rows, rows_padded, st, bq, q0, k0, block_max,
                           NULL);
        kr->softmax_t(keys, rows_padded, st, bq, block_max, state->row_max, state->row_sum,
                      state->alpha, masked, lo, hi);
        for (int r0 = 0; r0 < rows_padded; r0 += chunk) {
            const int n = rows_padded - r0 < chunk ? rows_padded - r0 : chunk;
            float *acc = state->acc + (int64_t)r0 * state->ldacc;
            if (bf16)
                kr->accumulate_pv_bf16(n, keys, dv, st + r0, bq, t->v2, ldv2, state->alpha + r0,
                                       acc, state->ldacc, masked, lo - r0, hi - r0);
            else
                kr->accumulate_pv(n, keys, dv, st + r0, bq, (const float *)blk.v, blk.ldv,
                                  state->alpha + r0, acc, state->ldacc, masked, lo - r0,
                                  hi - r0);
            if (next_keys > 0) prefetch_burst(mods, q0, rows, burst++, bursts, k1, next_keys);
        }
        k0 = k1;
        tile = next_tile;
    }
}

// One query block of one (b, h) over key chunk `split`: pack Qᵀ, one step over the block's
// keys in the chunk, finish into O and LSE (or the chunk's partial state).
static void forward_tile(const fa_forward_plan *pl, int64_t b, int64_t h, int64_t qb,
                         int64_t split, float *ws) {
    const fa_problem *p = pl->p;
    const int bq = pl->blocks.block_q;
    const int64_t q0 = qb * bq;
    if (split >= fa_splits_of(&pl->split, p, b)) return;
    // Rows of this entry's buffer in the block (packed sequences are shorter than q_len).
    const int64_t entry_rows = fa_q_rows_of(p, b);
    if (q0 >= entry_rows || fa_is_row_entry(p, b)) return;  // (row entries: decode.c)
    const int block_rows = (int)(entry_rows - q0 < bq ? entry_rows - q0 : bq);
    // Rows past the batch entry's valid length are padding: output 0, logsumexp −inf
    // (written once, by the first chunk's item).
    const int64_t q_valid = fa_q_len_of(p, b) - q0;
    const int rows = (int)(q_valid < 0 ? 0 : (q_valid < block_rows ? q_valid : block_rows));
    if (split == 0)
        for (int i = rows; i < block_rows; i++) fa_clear_row(p, b, h, q0 + i);
    if (rows == 0) return;

    const int vw = pl->kr->vector_width;
    key_major_tile t;
    t.b = b;
    t.h = h;
    t.q0 = q0;
    t.rows = rows;
    t.rows_padded = (rows + vw - 1) / vw * vw;
    t.band = fa_row_band_for(p, b);
    t.mods = fa_score_mods_for(p, b, h);
    t.src = fa_kv_source_for(p, b, h / pl->group);
    t.qt = ws + pl->layout.qt;
    t.st = ws + pl->layout.st;
    t.block_max = ws + pl->layout.block_max;
    t.kw = ws + pl->layout.kw;
    t.vw = ws + pl->layout.vw;
    t.v2 = (uint32_t *)(ws + pl->layout.v2);
    fa_softmax_state state = {ws + pl->layout.row_max, ws + pl->layout.row_sum,
                              ws + pl->layout.alpha, ws + pl->layout.acc, pl->layout.ldacc,
                              t.rows_padded};

    // Keys outside [first row's start, last row's end) are hidden from every row: only the
    // key blocks in between, within this chunk, are visited (on a grid of BK from the chunk's
    // first key, so the rescale points are fixed).
    int64_t k_begin, k_end;
    fa_chunk_range(pl, b, split, fa_row_lo(&t.band, q0), fa_row_hi(&t.band, q0 + rows - 1),
                   pl->blocks.block_k, &k_begin, &k_end);

    // Qᵀ = scale·log2(e) · Qᵀ, padded with zero queries, while the first key block loads;
    // fresh softmax state.
    prefetch_first_block(pl, &t, k_begin, k_end);
    // (Half Q rows are widened to fp32 first.)
    const int64_t dqk = p->shape.head_dim_qk;
    const float *q = (const float *)fa_q_row(p, b, h, q0);
    int64_t ldq = p->q_strides.seq;
    if (pl->bf16_dots) {  // pairs along d, unscaled (the scores get the scale)
        pl->kr->pack_qt_bf16(rows, t.rows_padded, dqk, (const uint16_t *)fa_q_row(p, b, h, q0),
                             ldq, (uint32_t *)(ws + pl->layout.qt), bq);
    } else if (p->q_dtype != FA_DTYPE_F32) {
        float *qw = ws + pl->layout.qw;
        for (int i = 0; i < rows; i++)
            fa_get_q_row(pl->kr, p, fa_q_row(p, b, h, q0 + i), qw + (int64_t)i * dqk, dqk);
        q = qw, ldq = dqk;
    }
    if (!pl->bf16_dots)
        pl->kr->pack_qt(rows, t.rows_padded, dqk, q, ldq, pl->scale_log2, ws + pl->layout.qt, bq);
    fa_state_reset(&state);
    attend_keys_t(pl, &t, &state, k_begin, k_end);

    // O = acc / l,  LSE = (m + log2 l)·ln 2  (0 and −inf for rows that saw no key)
    for (int i = 0; i < rows; i++) fa_store_row(pl, b, h, q0 + i, split, &state, i);
}

// One thread's share of a forward call: its tiles, then items from the shared counter until
// none is left (or a thread could not get its tiles).
typedef struct {
    const fa_forward_plan *pl;
    float *shared;  // a caller workspace split between the threads, or NULL
    size_t per_thread;
    int64_t items, key_items;
    int64_t next_item;
    int failed;
} forward_region;

static void forward_worker(void *ctx, int me, int n) {
    (void)n;
    forward_region *g = ctx;
    const fa_forward_plan *pl = g->pl;
    const fa_problem *p = pl->p;
    float *mine = g->shared ? g->shared + (size_t)me * (g->per_thread / sizeof(float))
                            : fa_thread_workspace(g->per_thread);
    if (!mine) __atomic_store_n(&g->failed, 1, __ATOMIC_RELAXED);
    // Every thread has its tiles (or the call fails) before any output is written — where
    // the runtime runs the threads together (see threads.c).
    fa_parallel_barrier();
    const int64_t heads = p->shape.batch * p->shape.q_heads, count = pl->split.count;
    while (!__atomic_load_n(&g->failed, __ATOMIC_RELAXED)) {
        const int64_t t = __atomic_fetch_add(&g->next_item, 1, __ATOMIC_RELAXED);
        if (t >= g->items) break;
        // Key-major items first (a prefill chunk's query blocks each see a long prefix),
        // then the row tiles: the heavy items start early, the light ones fill in.
        if (t >= g->key_items) {
            const int64_t w = t - g->key_items, split = w % count, u = w / count;
            const int64_t chunk = u % pl->row_chunks, bp = u / pl->row_chunks;
            fa_row_tile(pl, bp / pl->row_packs, bp % pl->row_packs, chunk, split, mine);
            continue;
        }
        const int64_t split = t % count, u = t / count;  // an item's chunks side by side
        // Causal: the last query blocks see the most keys, so they are handed out first.
        int64_t qb = u / heads;
        if (p->causal != FA_CAUSAL_NONE) qb = pl->q_blocks - 1 - qb;
        const int64_t bh = u % heads;
        forward_tile(pl, bh / p->shape.q_heads, bh % p->shape.q_heads, qb, split, mine);
    }
}

fa_status fa_forward(const fa_problem *p) {
    fa_resolved r;
    fa_status st = fa_validate(p, NULL, &r);
    if (st != FA_OK) return st;

    fa_forward_plan pl = {0};
    pl.p = p;
    pl.kr = fa_kernels_for(p->isa);
    pl.scale_log2 = fa_scale_log2(r.scale);
    pl.group = r.group;
    pl.split = fa_split_plan_for(p);
    pl.bf16_dots = pl.kr->scores_t_bf16 && p->q_dtype == FA_DTYPE_BF16 &&
                   p->k_dtype == FA_DTYPE_BF16 && p->v_dtype == FA_DTYPE_BF16;
    // Entries of at most FA_DECODE_MAX_Q query rows run on row tiles of whole GQA groups
    // (decode.c), longer ones on key-major tiles; a thread's workspace holds either.
    size_t per_thread = 0;
    int64_t key_items = 0, row_items = 0;
    if (fa_uses_key_major(p)) {
        pl.blocks = fa_blocking_for(pl.kr, &p->shape, r.threads, p->window_left,
                                    p->block_mask.data ? p->block_mask.block_q : 0);
        pl.layout = fa_forward_layout_for(p, pl.blocks);
        // Packed sequences: blocks of the longest; a shorter sequence's extra items are empty.
        pl.q_blocks = fa_ceil_div(fa_max_q_rows(p), pl.blocks.block_q);
        per_thread = pl.layout.per_thread_bytes;
        key_items = p->shape.batch * p->shape.q_heads * pl.q_blocks * pl.split.count;
    }
    if (fa_uses_row_tiles(p)) {
        pl.row_layout = fa_row_layout_for(p);
        pl.row_chunks = fa_row_chunks(p);
        if (pl.row_layout.per_thread_bytes > per_thread) per_thread = pl.row_layout.per_thread_bytes;
        pl.row_heads = fa_row_heads(p, pl.row_chunks, pl.split.count, r.threads);
        pl.row_packs = (p->shape.kv_heads + pl.row_heads - 1) / pl.row_heads;
        row_items = p->shape.batch * pl.row_packs * pl.row_chunks * pl.split.count;
    }
    const int64_t items = key_items + row_items;

    // A caller workspace is split between the threads, the partial states after them;
    // otherwise each thread uses its own cached tiles and the calling thread its cached
    // partial states (frame/workspace.c). Either way everything is in hand before any output
    // is written, so a failed allocation leaves the outputs untouched — under OpenMP; on GCD
    // threads (no barrier there, see threads.c) a worker that cannot get its tiles stops the
    // others after their current item, and the call still fails with FA_ERR_OUT_OF_MEMORY.
    float *shared = p->workspace
        ? (float *)(((uintptr_t)p->workspace + FA_ALIGN - 1) & ~(uintptr_t)(FA_ALIGN - 1))
        : NULL;
    if (pl.split.count > 1) {
        float *base = shared ? shared + (size_t)r.threads * (per_thread / sizeof(float))
                             : fa_thread_buffer(FA_BUFFER_PARTIALS, pl.split.bytes);
        if (!base) return FA_ERR_OUT_OF_MEMORY;
        const fa_split_plan *sp = &pl.split;
        pl.partial_o = base;
        pl.partial_lse = base + (size_t)p->shape.batch * (size_t)p->shape.q_heads *
                                    (size_t)sp->rows_per_head * (size_t)sp->count *
                                    (size_t)p->shape.head_dim_v;
    }

    // Items are claimed from a shared counter (dynamic scheduling by hand: the Debian libomp
    // predates the runtime entry points clang emits for schedule(dynamic)).
    forward_region region = {&pl, shared, per_thread, items, key_items, 0, 0};
    fa_parallel(r.threads, forward_worker, &region);
    const int failed = region.failed;
    if (!failed && pl.split.count > 1) fa_merge_partials(&pl, r.threads);
    if (failed) return FA_ERR_OUT_OF_MEMORY;
    fa_clear_unpacked_rows(p, 0);
    return FA_OK;
}
