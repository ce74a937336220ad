// split.c — split-KV: which chunks of keys a call computes apart, and their merge.
//
// With few work items — one token decoded at batch 1 against a long cache, MQA — the
// (entry, kv head, query tile) items cannot keep every thread busy, and each item reads a long
// K/V range alone. Split-KV cuts every sequence's keys into chunks of `size` keys from its
// first key (FlashInfer's fixed split size), computes each chunk's partial state as its own
// work item, and merges the chunks of a row in order (merge.c's arithmetic). The size comes
// from the problem alone, never from the thread count, so results are bitwise the same for
// any thread count; an explicit size gives the same bits whatever else is in the batch.
//
// Automatic size (kv_split_size = 0), when every entry runs on row tiles (decoding): no split when there are
// FA_SPLIT_TARGET_ITEMS items or more; otherwise enough chunks to make about that many items,
// each at least FA_SPLIT_MIN_KEYS keys and a multiple of the row tiles' key block. Key-major
// (prefill) problems have many query tiles and are not split unless asked.
#include <math.h>
#include "forward_plan.h"

// Entries differ in query length only with per-entry lengths; otherwise entry 0 stands for all
// (a batch of 2³¹ entries is answered at once, not entry by entry).
static int64_t entries_to_inspect(const fa_problem *p) {
    const int uniform = !p->cu_seqlens_q && !p->q_lengths;
    return uniform && p->shape.batch > 1 ? 1 : p->shape.batch;
}

int fa_uses_row_tiles(const fa_problem *p) {
    const int64_t n = entries_to_inspect(p);
    for (int64_t b = 0; b < n; b++)
        if (fa_is_row_entry(p, b)) return 1;
    return 0;
}

int fa_uses_key_major(const fa_problem *p) {
    const int64_t n = entries_to_inspect(p);
    for (int64_t b = 0; b < n; b++)
        if (!fa_is_row_entry(p, b)) return 1;
    return 0;
}

// Row-tile rows of one kv head: its group's heads × the longest row entry's valid query rows
// (−1 when no entry runs on row tiles).
static int64_t row_rows_per_head(const fa_problem *p) {
    int64_t longest = -1;  // valid rows of the longest row entry
    const int64_t n = entries_to_inspect(p);
    for (int64_t b = 0; b < n; b++)
        if (fa_is_row_entry(p, b) && fa_q_len_of(p, b) > longest) longest = fa_q_len_of(p, b);
    return longest < 0 ? -1 : p->shape.q_heads / p->shape.kv_heads * longest;
}

int64_t fa_row_chunks(const fa_problem *p) {
    const int64_t rows = row_rows_per_head(p);
    if (rows < 0) return 0;
    return rows == 0 ? 1 : (rows + FA_ROW_TILE_ROWS - 1) / FA_ROW_TILE_ROWS;
}

// Whether every kv head's rows of one page (of one key, when not paged) lie within the page's
// (the key's) stride: HND and NHD pages, [B, L, Hkv, D] rows — not [B, Hkv, L, D] rows, nor
// pools with the heads outermost.
static int heads_side_by_side(const fa_problem *p, fa_strides st) {
    const int64_t span = fa_is_paged(p) ? st.batch : st.seq;
    return st.head <= span / p->shape.kv_heads;
}

int64_t fa_row_heads(const fa_problem *p, int64_t row_chunks, int64_t splits, int threads) {
    const fa_shape *s = &p->shape;
    if (row_chunks != 1 || s->kv_heads < 2 || !heads_side_by_side(p, p->k_strides) ||
        !heads_side_by_side(p, p->v_strides))
        return 1;
    const int64_t rows = row_rows_per_head(p);
    const int64_t fit = rows > 0 ? FA_ROW_TILE_ROWS / rows : FA_ROW_TILE_ROWS;
    // Items with one pack per entry: B × splits (saturating); packs enough for 2 per thread.
    int64_t items;
    if (__builtin_mul_overflow(s->batch, splits, &items)) items = INT64_MAX;
    const int64_t want = 2 * (int64_t)(threads > 0 ? threads : 1);
    int64_t packs = items >= want ? 1 : (want + items - 1) / items;
    if (packs > s->kv_heads) packs = s->kv_heads;
    const int64_t heads = (s->kv_heads + packs - 1) / packs;
    return heads < fit ? heads : fit;
}

fa_row_layout fa_row_layout_for(const fa_problem *p) {
    const fa_shape *s = &p->shape;
    fa_row_layout l = {0};
    l.ldq = (s->head_dim_qk + 15) / 16 * 16;
    l.lds = fa_row_block_keys(p);
    l.ldacc = (s->head_dim_v + 31) / 32 * 32;  // block_pv_q_bf16dot writes whole 32-column chunks
    const size_t r = FA_ROW_TILE_ROWS;
    const int paired = fa_is_paged(p) && p->v_dtype == FA_DTYPE_BF16;
    const size_t sizes[8] = {r * (size_t)l.ldq, r * (size_t)l.lds, r * (size_t)l.ldacc, r, r, r,
                             r * (size_t)l.ldacc,
                             paired ? ((size_t)l.lds * (size_t)s->head_dim_v + 1) / 2 : 0};
    size_t offsets[8];
    l.per_thread_bytes = fa_layout_regions(sizes, offsets, 8);
    l.pairs = offsets[7];
    l.q = offsets[0];
    l.s = offsets[1];
    l.acc = offsets[2];
    l.row_max = offsets[3];
    l.row_sum = offsets[4];
    l.alpha = offsets[5];
    l.pv = offsets[6];
    return l;
}

fa_split_plan fa_split_plan_for(const fa_problem *p) {
    fa_split_plan s = {0};
    const int64_t max_kv = fa_max_kv_rows(p) > 0 ? fa_max_kv_rows(p) : 1;
    int64_t size = p->kv_split_size;
    if (size == 0) {
        size = max_kv;  // no split unless the rule below asks for one
        if (!fa_uses_key_major(p)) {  // decoding only: every entry on row tiles
            int64_t items;  // saturates: 2³¹ entries × 2³¹ heads × chunks overflows
            if (__builtin_mul_overflow(p->shape.batch, p->shape.kv_heads, &items) ||
                __builtin_mul_overflow(items, fa_row_chunks(p), &items))
                items = INT64_MAX;
            if (items > 0 && items < FA_SPLIT_TARGET_ITEMS) {
                const int64_t want = (FA_SPLIT_TARGET_ITEMS + items - 1) / items;
                int64_t c = (max_kv + want - 1) / want;
                const int64_t block = fa_row_block_keys(p);
                c = (c + block - 1) / block * block;
                size = c < FA_SPLIT_MIN_KEYS ? FA_SPLIT_MIN_KEYS : c;
            }
        }
    }
    s.size = size;
    s.count = size >= max_kv ? 1 : (max_kv + size - 1) / size;
    s.rows_per_head = fa_max_q_rows(p);
    if (s.count > 1) {
        // Extents are < 2^31 and count ≤ Lk: the product may still overflow size_t on
        // absurd problems; saturate (the allocation then fails cleanly).
        size_t n = 1;
        const size_t f[5] = {(size_t)p->shape.batch, (size_t)p->shape.q_heads,
                             (size_t)s.rows_per_head, (size_t)s.count,
                             (size_t)p->shape.head_dim_v + 1};
        for (int i = 0; i < 5; i++)
            if (__builtin_mul_overflow(n, f[i], &n)) n = SIZE_MAX / 8;
        if (__builtin_mul_overflow(n, sizeof(float), &s.bytes)) s.bytes = SIZE_MAX - 4 * FA_ALIGN;
    }
    return s;
}

// The merge of one thread's (entry, head) pairs, in a fixed interleave; each row's arithmetic
// is the same on any thread.
static void merge_worker(void *ctx, int me, int n) {
    const fa_forward_plan *pl = ctx;
    const fa_problem *p = pl->p;
    const int64_t hq = p->shape.q_heads, dv = p->shape.head_dim_v;
    const int64_t pairs = p->shape.batch * hq;
    for (int64_t t = me; t < pairs; t += n) {
        const int64_t b = t / hq, h = t % hq;
        const int64_t splits = fa_splits_of(&pl->split, p, b);
        if (splits < 2) continue;
        for (int64_t i = 0; i < fa_q_len_of(p, b); i++) {
            const int64_t at = ((b * hq + h) * pl->split.rows_per_head + i) * pl->split.count;
            // Merged into O when it is fp32, else over the row's first partial output
            // (fa_merge_row reads each chunk's O after writing that far only), then
            // rounded into O's type.
            void *o = fa_o_row(p, b, h, i);
            float *out = p->o_dtype == FA_DTYPE_F32 ? (float *)o : pl->partial_o + at * dv;
            const float lse = fa_merge_row(splits, pl->partial_o + at * dv, dv,
                                           pl->partial_lse + at, 1, dv, out);
            fa_put_o_row(p, o, out, dv);
            if (p->lse)
                p->lse[fa_q_entry(p, b, p->lse_strides) + h * p->lse_strides.head +
                       i * p->lse_strides.seq] = lse;
        }
    }
}

void fa_merge_partials(const fa_forward_plan *pl, int threads) {
    fa_parallel(threads, merge_worker, (void *)pl);
}
