// forward_plan.h — what fa_forward resolves once per call, shared by its two tile kinds:
// key-major tiles of one query head (forward.c: prefill) and query-major row tiles of a
// whole GQA group (decode.c: at most FA_DECODE_MAX_Q query rows per sequence), and where
// each tile's rows end up: the output, or a partial state for the split-KV merge (split.c).
#ifndef FA_FORWARD_PLAN_H
#define FA_FORWARD_PLAN_H

#include "internal.h"
#include "online_softmax.h"

/// Rows of a row tile (query rows × heads of a group, flattened) and its key block: 128 keys,
/// or 256 when K and V are both half — the same bytes per block. Each block's K rows and V
/// rows are two streams that start and stop once per block; with half rows at 128 keys the
/// step read 10–15 % fewer GB/s (Zen 4, 32/8 heads, D = 128, 64k keys, A/B alternating).
#define FA_ROW_TILE_ROWS 64
#define FA_ROW_TILE_KEYS 128
#define FA_ROW_TILE_HALF_KEYS 256

/// The key block of p's row tiles.
static inline int fa_row_block_keys(const fa_problem *p) {
    return p->k_dtype != FA_DTYPE_F32 && p->v_dtype != FA_DTYPE_F32 ? FA_ROW_TILE_HALF_KEYS
                                                                    : FA_ROW_TILE_KEYS;
}
/// The smallest automatic split-KV chunk, in keys.
#define FA_SPLIT_MIN_KEYS 512

/// Per-thread workspace of a row tile: regions FA_ALIGN-aligned, offsets in floats.
typedef struct fa_row_layout {
    size_t q;        ///< rows × ldq      scaled query rows, zero-padded (bf16 dots: bf16 rows)
    size_t s;        ///< rows × lds      scores, then probabilities (query-major)
    size_t acc;      ///< rows × ldacc    the running output
    size_t pv;       ///< rows × ldacc    one block's P·V, added to acc once per block
    size_t pairs;    ///< block keys × Dv bf16: a paged bf16 V block whose pages split key pairs
    size_t row_max, row_sum, alpha;  ///< rows each
    int64_t ldq, lds, ldacc;
    size_t per_thread_bytes;
} fa_row_layout;

fa_row_layout fa_row_layout_for(const fa_problem *p);

/// Whether batch entry b runs on row tiles: at most FA_DECODE_MAX_Q valid query rows (decoding,
/// speculative rows). Longer entries (prefill, chunked prefill) run on key-major tiles; a batch
/// may mix both, and an entry's results depend on its own length only, not on the batch.
static inline int fa_is_row_entry(const fa_problem *p, int64_t b) {
    return fa_q_len_of(p, b) <= FA_DECODE_MAX_Q;
}
/// Whether any entry of p runs on row tiles; on key-major tiles.
int fa_uses_row_tiles(const fa_problem *p);
int fa_uses_key_major(const fa_problem *p);
/// Row tiles per (batch entry, kv head): the group's heads × the longest row entry's query
/// rows, FA_ROW_TILE_ROWS at a time (0 when no entry runs on row tiles).
int64_t fa_row_chunks(const fa_problem *p);
/// Kv heads per row tile (split.c). Where a page holds every kv head's rows of its keys side by
/// side (HND or NHD pages), or a key's row does ([B, L, Hkv, D] K and V): as many heads as
/// FA_ROW_TILE_ROWS rows hold, fewer when B × splits items per pack of heads would leave fewer
/// than 2 per thread. Otherwise (contiguous [B, Hkv, L, D] rows, pools with the heads
/// outermost), or when a head's rows need more than one tile: one. A tile of several heads
/// reads each page (each key block) for all of them before the next: one sweep of adjacent
/// memory instead of a short stream per head. Zen 2, 32/8 heads, D = 128, 32k keys, 2
/// threads: HND pages of 16 in a random order went from 0.79 to 0.98 of the contiguous
/// speed, NHD pages from 0.57 to 1.1, contiguous [B, L, Hkv, D] from 0.56 to 1.1 (heads
/// outermost, packing made pages slower: 17.7 → 21.3 ms; [B, Hkv, L, D] it left even). The
/// rows of a tile never mix, so the packing (which follows the thread count) changes no bit.
int64_t fa_row_heads(const fa_problem *p, int64_t row_chunks, int64_t splits, int threads);

/// Split-KV: how a call cuts its keys and where the partial states go.
typedef struct fa_split_plan {
    int64_t size;           ///< keys per chunk, counted from each sequence's first key
    int64_t count;          ///< chunks of the longest sequence (1: nothing is split)
    int64_t rows_per_head;  ///< query rows of the longest sequence (partial-state index)
    size_t bytes;           ///< partial states: B·Hq·rows_per_head·count·(Dv + 1) floats, or 0
} fa_split_plan;

/// The split of a (validated) problem: kv_split_size, or the automatic choice.
fa_split_plan fa_split_plan_for(const fa_problem *p);

/// Chunks of batch entry b's keys (1 for an entry of at most `size` keys, or none).
static inline int64_t fa_splits_of(const fa_split_plan *s, const fa_problem *p, int64_t b) {
    const int64_t kv = fa_kv_len_of(p, b);
    return kv <= s->size ? 1 : (kv + s->size - 1) / s->size;
}

/// Everything a work item needs, resolved once per call.
typedef struct fa_forward_plan {
    const fa_problem *p;
    const fa_kernels *kr;
    fa_blocking blocks;         ///< key-major tiles
    fa_forward_layout layout;   ///< key-major tiles
    fa_row_layout row_layout;   ///< row tiles
    int bf16_dots;              ///< products over bf16 pairs (Q, K, V bf16; the ISA has them)
    float scale_log2;           ///< scale · log2(e)
    int64_t group;              ///< query heads per key/value head
    int64_t q_blocks;           ///< key-major: query blocks of the longest sequence (0: none)
    int64_t row_chunks;         ///< row tiles: tiles per (entry, pack of kv heads) (0: none)
    int64_t row_heads;          ///< row tiles: kv heads per pack (fa_row_heads)
    int64_t row_packs;          ///< row tiles: packs per entry, ⌈Hkv / row_heads⌉
    fa_split_plan split;
    float *partial_o;           ///< [B, Hq, rows_per_head, count, Dv] (split.count > 1)
    float *partial_lse;         ///< [B, Hq, rows_per_head, count]
} fa_forward_plan;

/// Stores row r of a finished step: query row i of batch entry b, head h, over key chunk
/// `split` — into o and lse when the entry has one chunk, else into its partial state.
static inline void fa_store_row(const fa_forward_plan *pl, int64_t b, int64_t h, int64_t i,
                                int64_t split, const fa_softmax_state *st, int r) {
    const fa_problem *p = pl->p;
    const int64_t dv = p->shape.head_dim_v;
    if (pl->split.count > 1 && fa_splits_of(&pl->split, p, b) > 1) {
        const int64_t at = ((b * p->shape.q_heads + h) * pl->split.rows_per_head + i) *
                               pl->split.count + split;
        pl->partial_lse[at] = fa_state_result(st, r, dv, pl->partial_o + at * dv);
        return;
    }
    // O = acc / l: into O itself when it is fp32, else in place in the row's accumulator and
    // then rounded into O's type.
    void *o = fa_o_row(p, b, h, i);
    float *out = p->o_dtype == FA_DTYPE_F32 ? (float *)o : st->acc + (int64_t)r * st->ldacc;
    const float lse = fa_state_result(st, r, dv, out);
    fa_put_o_row(p, o, out, dv);
    if (p->lse)
        p->lse[fa_q_entry(p, b, p->lse_strides) + h * p->lse_strides.head + i * p->lse_strides.seq] = lse;
}

/// Padding row i (past the entry's valid rows) of entry b, head h: output 0, LSE −inf.
static inline void fa_clear_row(const fa_problem *p, int64_t b, int64_t h, int64_t i) {
    // Zero is all-zero bits in every element type.
    memset(fa_o_row(p, b, h, i), 0, (size_t)p->shape.head_dim_v * fa_dtype_size(p->o_dtype));
    if (p->lse)
        p->lse[fa_q_entry(p, b, p->lse_strides) + h * p->lse_strides.head + i * p->lse_strides.seq] = -INFINITY;
}

/// The keys [*begin, *end) a tile visits within chunk `split` of entry b, given the keys its
/// rows can see, [lo, hi): blocks start at multiples of `block` from the chunk's first key,
/// so the rescale points depend on the problem and the split size only.
static inline void fa_chunk_range(const fa_forward_plan *pl, int64_t b, int64_t split,
                                  int64_t lo, int64_t hi, int block, int64_t *begin,
                                  int64_t *end) {
    const int64_t kv = fa_kv_len_of(pl->p, b);
    const int64_t c0 = split * pl->split.size;
    const int64_t c1 = fa_splits_of(&pl->split, pl->p, b) == 1 ? kv
                     : (c0 + pl->split.size < kv ? c0 + pl->split.size : kv);
    const int64_t first = lo > c0 ? lo : c0;
    *begin = c0 + (first - c0) / block * block;
    *end = hi < c1 ? hi : c1;
}

/// One row tile: chunk `chunk` of the rows of entry b's pack `pack` of kv heads (heads
/// pack·row_heads … , row_heads of them or the rest), over key chunk `split` (decode.c).
void fa_row_tile(const fa_forward_plan *pl, int64_t b, int64_t pack, int64_t chunk,
                 int64_t split, float *ws);

/// Merges the partial states of every split entry into o and lse, rows in parallel, each
/// row's chunks in order (split.c).
void fa_merge_partials(const fa_forward_plan *pl, int threads);

/// Merges n states of one row, chunk by chunk in order: O_i at o + i·o_step (dv floats),
/// LSE_i at lse[i·lse_step]; writes dv floats to out and returns the LSE (merge.c).
float fa_merge_row(int64_t n, const float *o, int64_t o_step, const float *lse,
                   int64_t lse_step, int64_t dv, float *out);

#endif  // FA_FORWARD_PLAN_H
