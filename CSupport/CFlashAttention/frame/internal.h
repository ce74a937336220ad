// internal.h — what the frame files share: resolved problem values, workspace layout, threads.
#ifndef FA_INTERNAL_H
#define FA_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "../include/flash_attention.h"
#include "../kernels/microkernel.h"

/// Alignment of every workspace region (a cache line; also what AVX-512 loads like best).
#define FA_ALIGN 64

/// Values derived from a validated problem.
typedef struct fa_resolved {
    float scale;        ///< the scale actually used (default resolved)
    int threads;        ///< the thread count actually used (0 resolved)
    int64_t group;      ///< q_heads / kv_heads: query heads per key/value head
} fa_resolved;

/// Which tensors a call reads and writes.
typedef enum fa_mode { FA_MODE_FORWARD, FA_MODE_BACKWARD } fa_mode;

/// Validates `p` for a forward (diag may be NULL) and resolves defaults into `r` (may be NULL).
fa_status fa_validate(const fa_problem *p, fa_diagnostic *diag, fa_resolved *r);
/// The same for either mode.
fa_status fa_validate_mode(const fa_problem *p, fa_diagnostic *diag, fa_resolved *r,
                           fa_mode mode);

/// Validates extents and options only (no pointers): enough for sizes and kernel choices.
fa_status fa_validate_shape_options(const fa_problem *p, fa_diagnostic *diag);

/// Tile sizes of one call.
typedef struct fa_blocking {
    int block_q;  ///< query rows per block (a multiple of the vector width)
    int block_k;  ///< keys per block (a multiple of the key micro-tile)
} fa_blocking;

/// FA_ISA_AUTO → the process's choice; anything else unchanged.
fa_isa fa_resolve_isa(fa_isa requested);
/// The kernel table for an ISA (which must be supported).
const fa_kernels *fa_kernels_for(fa_isa isa);
/// The per-core L2 cache size in bytes (0 if unknown).
int64_t fa_l2_bytes(void);
/// The tile sizes for a problem (dispatch/cpu.c explains the heuristic).
fa_blocking fa_blocking_for(const fa_kernels *kr, const fa_shape *s, int threads,
                            int64_t window_left, int64_t mask_block_q);

/// Per-thread workspace of the forward: regions, each FA_ALIGN-aligned, offsets in floats.
typedef struct fa_forward_layout {
    size_t qt;         ///< Dqk × BQ  the query block, transposed and scaled
    size_t st;         ///< BK × BQ   scores, then probabilities (key-major)
    size_t acc;        ///< BQ × ldacc  the unnormalised output
    size_t row_max;    ///< BQ  running row max (log2 units)
    size_t row_sum;    ///< BQ  running row sum
    size_t alpha;      ///< BQ  this block's rescale factors
    size_t block_max;  ///< BQ  this block's row max
    size_t kw, vw;     ///< BK × Dqk, BK × Dv  a block gathered (widened) when K or V is half or paged (else size 0)
    size_t qw;         ///< BQ × Dqk  a half Q block widened to fp32 (size 0 if fp32)
    size_t v2;         ///< ⌈BK/2⌉ × ldacc  a bf16 V block in key pairs (size 0 unless V is bf16)
    int64_t ldacc;     ///< Dv rounded up to 16
    size_t per_thread_bytes;  ///< the sum, rounded to FA_ALIGN
} fa_forward_layout;

/// Lays out `n` regions of sizes[i] floats back to back, each FA_ALIGN-aligned: writes their
/// offsets (in floats) and returns the total in bytes.
static inline size_t fa_layout_regions(const size_t *sizes, size_t *offsets, int n) {
    const size_t per_align = FA_ALIGN / sizeof(float);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        offsets[i] = at;
        at += (sizes[i] + per_align - 1) / per_align * per_align;
    }
    return at * sizeof(float);
}

/// Region offsets and bytes per thread for a shape and tiling.
/// The forward's layout for a problem's shape and element types, under blocking b.
fa_forward_layout fa_forward_layout_for(const fa_problem *p, fa_blocking b);

/// What a thread's cached buffers hold (frame/workspace.c).
typedef enum fa_buffer {
    FA_BUFFER_TILES,     ///< a worker's tiles (fa_thread_workspace)
    FA_BUFFER_PARTIALS,  ///< the calling thread's split-KV partial states
    FA_BUFFER_COUNT
} fa_buffer;

/// This thread's cached buffer for `use`, of at least `bytes` (64-byte aligned), or NULL if it
/// cannot be allocated. Valid until the thread's next call; freed when the thread exits.
float *fa_thread_buffer(fa_buffer use, size_t bytes);
/// fa_thread_buffer(FA_BUFFER_TILES, bytes).
float *fa_thread_workspace(size_t bytes);

/// The keys each query row sees, from the causal mask and the sliding window: row i sees
/// [row_lo(i), row_hi(i)) with row_lo(i) = i + c_lo (if has_lo) and row_hi(i) = i + c_hi (if
/// has_hi), clamped to [0, Lk]. Both ends are non-decreasing in i.
typedef struct fa_row_band {
    int has_lo, has_hi;
    int64_t c_lo, c_hi;
    int64_t lk;
} fa_row_band;

/// ⌈a / b⌉ for a ≥ 0 and b ≥ 1, without the overflow of (a + b − 1) / b when b is near
/// INT64_MAX (a block or page size is the caller's number).
static inline int64_t fa_ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0); }

/// Batch entry b's valid query rows and keys: its packed sequence's length, its per-batch
/// length, or the extent.
static inline int64_t fa_q_len_of(const fa_problem *p, int64_t b) {
    if (p->cu_seqlens_q) return (int64_t)p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
    return p->q_lengths ? p->q_lengths[b] : p->shape.q_len;
}
static inline int64_t fa_kv_len_of(const fa_problem *p, int64_t b) {
    if (p->cu_seqlens_k) return (int64_t)p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b];
    if (p->kv_pages.page_size > 0) {  // paged: the keys its table describes
        const fa_kv_pages *pg = &p->kv_pages;
        if (pg->seq_lens) return pg->seq_lens[b];
        const int64_t pages = (int64_t)pg->indptr[b + 1] - pg->indptr[b];
        return pages == 0 ? 0 : (pages - 1) * pg->page_size + pg->last_page_len[b];
    }
    return p->kv_lengths ? p->kv_lengths[b] : p->shape.kv_len;
}
/// Whether K and V are paged (fa_kv_pages).
static inline int fa_is_paged(const fa_problem *p) { return p->kv_pages.page_size > 0; }
/// Paged: batch entry b's page indices, in key order.
static inline const int32_t *fa_pages_of(const fa_problem *p, int64_t b) {
    const fa_kv_pages *pg = &p->kv_pages;
    return pg->block_table ? pg->block_table + b * pg->max_pages : pg->indices + pg->indptr[b];
}
/// Checks a paged K/V description (pages.c): the form, every table entry, every length.
fa_status fa_check_pages(const fa_problem *p, fa_diagnostic *diag);
/// The buffer rows batch entry b owns (valid rows, then padding): its packed sequence, or the
/// whole extent.
static inline int64_t fa_q_rows_of(const fa_problem *p, int64_t b) {
    return p->cu_seqlens_q ? fa_q_len_of(p, b) : p->shape.q_len;
}
static inline int64_t fa_kv_rows_of(const fa_problem *p, int64_t b) {
    return p->cu_seqlens_k ? fa_kv_len_of(p, b) : p->shape.kv_len;
}
/// Element offset of batch entry b's first row in a query-side tensor (Q, O, LSE, dO, dQ)
/// with strides s: its packed sequence's first row, or b batch strides.
/// An empty packed sequence owns no row and gets offset 0: its first row may lie at the
/// extent, where validation bounds nothing (a one-row extent takes any row stride).
static inline int64_t fa_q_entry(const fa_problem *p, int64_t b, fa_strides s) {
    const int32_t *cu = p->cu_seqlens_q;
    return cu ? (cu[b] == cu[b + 1] ? 0 : (int64_t)cu[b] * s.seq) : b * s.batch;
}
/// The same for a key-side tensor (K, V, dK, dV).
static inline int64_t fa_kv_entry(const fa_problem *p, int64_t b, fa_strides s) {
    const int32_t *cu = p->cu_seqlens_k;
    return cu ? (cu[b] == cu[b + 1] ? 0 : (int64_t)cu[b] * s.seq) : b * s.batch;
}
/// Row i of batch entry b, head h of Q or O, in the tensor's own element type.
static inline const void *fa_q_row(const fa_problem *p, int64_t b, int64_t h, int64_t i) {
    const int64_t at = fa_q_entry(p, b, p->q_strides) + h * p->q_strides.head + i * p->q_strides.seq;
    return (const char *)p->q + at * (int64_t)fa_dtype_size(p->q_dtype);
}
static inline void *fa_o_row(const fa_problem *p, int64_t b, int64_t h, int64_t i) {
    const int64_t at = fa_q_entry(p, b, p->o_strides) + h * p->o_strides.head + i * p->o_strides.seq;
    return (char *)p->o + at * (int64_t)fa_dtype_size(p->o_dtype);
}
/// n values of a row into O's element type (to nearest, ties to even, for a half type); `src`
/// and `dst` are the same memory when O is fp32 and the row was computed in place.
static inline void fa_put_o_row(const fa_problem *p, void *dst, const float *src, int64_t n) {
    if ((const void *)src != dst) fa_convert(FA_DTYPE_F32, src, p->o_dtype, dst, n);
}
/// n values of a Q row (any element type) as fp32, exactly.
static inline void fa_get_q_row(const fa_kernels *kr, const fa_problem *p, const void *src,
                                float *dst, int64_t n) {
    kr->widen[p->q_dtype](src, dst, n);
}
/// Row i of batch entry b lines up with key i + this: Lk_b − Lq_b (bottom-right), or
/// q_start − kv_start with explicit positions. The window, ALiBi and bottom-right causal
/// masking use it (top-left causal masking too, with positions).
static inline int64_t fa_diagonal_offset(const fa_problem *p, int64_t b) {
    if (p->positions.enabled) return p->positions.q_start - p->positions.kv_start;
    return fa_kv_len_of(p, b) - fa_q_len_of(p, b);
}
/// The largest fa_q_rows_of over the batch.
int64_t fa_max_q_rows(const fa_problem *p);
int64_t fa_max_kv_rows(const fa_problem *p);
/// Packed problems: rows of the query side past the last sequence get output 0, logsumexp
/// −inf (forward) or dQ = 0 (backward); keys past the last sequence dK = dV = 0 (backward).
void fa_clear_unpacked_rows(const fa_problem *p, int backward);

/// The band of batch entry b of a (validated) problem.
fa_row_band fa_row_band_for(const fa_problem *p, int64_t b);

static inline int64_t fa_row_lo(const fa_row_band *b, int64_t i) {
    if (!b->has_lo) return 0;
    const int64_t v = i + b->c_lo;
    return v < 0 ? 0 : (v > b->lk ? b->lk : v);
}

static inline int64_t fa_row_hi(const fa_row_band *b, int64_t i) {
    if (!b->has_hi) return b->lk;
    const int64_t v = i + b->c_hi;
    return v < 0 ? 0 : (v > b->lk ? b->lk : v);
}

/// The micro-kernels' band for a tile of rows from q0 and keys from k0: local query i sees
/// local key j iff j + *lo ≤ i < j + *hi. Returns whether any element needs masking, given
/// the tile's `rows` and `keys`.
static inline int fa_tile_band(const fa_row_band *b, int64_t q0, int rows, int64_t k0,
                               int keys, int64_t *lo, int64_t *hi) {
    *lo = b->has_hi ? k0 - q0 - b->c_hi + 1 : -FA_BAND_OPEN;
    *hi = b->has_lo ? k0 - q0 - b->c_lo + 1 : FA_BAND_OPEN;
    const int upper = b->has_hi && k0 + keys > fa_row_hi(b, q0);       // some key past row q0's end
    const int lower = b->has_lo && k0 < fa_row_lo(b, q0 + rows - 1);   // some key before the last row's start
    return upper || lower;
}

/// The elementwise score modifiers of one (batch, head) (frame/score_mods.c).
typedef struct fa_score_mods {
    int active;          ///< any modifier at all
    float softcap;       ///< c > 0, or 0 for none
    int has_alibi;
    float alibi_slope;   ///< this head's slope (natural units per key of distance)
    int64_t offset;      ///< fa_diagonal_offset: ALiBi's distance is |i + offset − j|
    fa_mask_kind mask_kind;
    const uint8_t *mask_bool;   ///< this (b, h)'s mask, element (i, j) at i·mask_q + j·mask_k
    const float *mask_add;
    int64_t mask_q, mask_k;
    const uint8_t *blocks;  ///< this (b, h)'s block mask (NULL: none)
    int64_t block_q, block_k, blocks_q, blocks_k;  ///< granularity and strides
} fa_score_mods;

/// The modifiers of `p` for batch entry b and query head h.
static inline fa_score_mods fa_score_mods_for(const fa_problem *p, int64_t b, int64_t h) {
    fa_score_mods m = {0};
    m.softcap = p->softcap;
    m.has_alibi = p->alibi_slopes != NULL;
    m.alibi_slope = m.has_alibi ? p->alibi_slopes[h] : 0.0f;
    m.offset = fa_diagonal_offset(p, b);
    m.mask_kind = p->mask.kind;
    if (p->mask.kind != FA_MASK_NONE) {  // without a mask its strides are unchecked: unused
        const int64_t base = b * p->mask.batch + h * p->mask.head;
        if (p->mask.kind == FA_MASK_BOOL) m.mask_bool = (const uint8_t *)p->mask.data + base;
        if (p->mask.kind == FA_MASK_ADDITIVE) m.mask_add = (const float *)p->mask.data + base;
        m.mask_q = p->mask.query;
        m.mask_k = p->mask.key;
    }
    if (p->block_mask.data) {
        m.blocks = p->block_mask.data + b * p->block_mask.batch + h * p->block_mask.head;
        m.block_q = p->block_mask.block_q;
        m.block_k = p->block_mask.block_k;
        m.blocks_q = p->block_mask.qblock;
        m.blocks_k = p->block_mask.kblock;
    }
    m.active = m.softcap > 0.0f || m.has_alibi || m.mask_kind != FA_MASK_NONE || m.blocks;
    return m;
}

/// sech²(x) = 1 − tanh²(x) = 4e/(1 + e)² with e = exp(−2|x|): accurate (relatively) even
/// where tanh(x) rounds to ±1.
static inline float fa_sech2(float x) {
    const float e = expf(-2.0f * (x < 0 ? -x : x));
    return 4.0f * e / ((1.0f + e) * (1.0f + e));
}

/// Applies the modifiers to a key-major tile of scores (log2 units) for rows from q0 and
/// keys from k0, recomputing block_max; with `derivative`, also writes ∂s'/∂s per element.
void fa_apply_score_mods(const fa_score_mods *m, int keys, int rows, int rows_padded,
                         float *st, int64_t ldst, int64_t q0, int64_t k0, float *block_max,
                         float *derivative);

/// The modifiers of the tile with rows from q0 and keys from k0, for the kernels' score_mods
/// (everything but the block mask).
fa_tile_mods fa_tile_mods_for(const fa_score_mods *m, int64_t q0, int64_t k0);

/// Asks for the element mask of a (rows × keys) tile (into L2): issued a tile ahead, the
/// mask rows (a few cache lines each, far apart) arrive while the current tile computes.
void fa_prefetch_tile_mask(const fa_score_mods *m, int64_t q0, int rows, int64_t k0, int keys);

/// What a (rows × keys) tile needs from the modifiers, decided once per tile.
typedef enum fa_tile_kind {
    FA_TILE_HIDDEN,    ///< every element masked (block or element mask): skip the tile
    FA_TILE_PLAIN,     ///< no modifier pass needed
    FA_TILE_MODIFIED,  ///< run the kernels' score_mods on it (fa_tile_mods_for)
    FA_TILE_PARTIAL,   ///< a block mask covers it only partly: run fa_apply_score_mods
} fa_tile_kind;

/// Applies a MODIFIED or PARTIAL tile's modifiers with the kernel's score_mods or the general
/// fa_apply_score_mods.
static inline void fa_modify_tile(const fa_kernels *kr, fa_tile_kind kind,
                                  const fa_score_mods *m, int keys, int rows, int rows_padded,
                                  float *st, int64_t ldst, int64_t q0, int64_t k0,
                                  float *block_max, float *derivative) {
    if (kind == FA_TILE_PARTIAL) {
        fa_apply_score_mods(m, keys, rows, rows_padded, st, ldst, q0, k0, block_max, derivative);
    } else {
        const fa_tile_mods t = fa_tile_mods_for(m, q0, k0);
        kr->score_mods(&t, keys, rows, rows_padded, st, ldst, block_max, derivative);
    }
}

/// Classifies a tile: hidden if every block-mask block it touches is off or the element mask
/// hides all of it (skipping it changes no bit: its probabilities are all 0); partial if a
/// block mask covers it only partly; modified if soft-capping, ALiBi or an element mask apply.
fa_tile_kind fa_classify_tile(const fa_score_mods *m, int64_t q0, int rows, int64_t k0,
                              int keys);

/// Records a failure in `diag` (if any: status, argument, values, printf-style message) and
/// returns `status` (validate.c).
fa_status fa_fail(fa_diagnostic *diag, fa_status status, fa_argument arg, int64_t v0,
                  int64_t v1, int64_t v2, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/// Checks a strided tensor of four dimensions (the last contiguous, stride 1): strides ≥ 0,
/// no two elements at one address, the span within the address space; writes the span in
/// bytes. `name` and `arg` go into the diagnostic (validate.c).
fa_status fa_check_strided(const char *name, fa_argument arg, const void *base,
                           const int64_t extent[4], const int64_t stride[4], size_t *span_bytes,
                           fa_diagnostic *diag);

/// Threads a call that asks for `requested` (0 = the default) runs on (threads.c).
int fa_resolve_threads(int32_t requested);

/// A parallel region (threads.c): body(ctx, me, n) for each me in 0 … n − 1 (n ≤ threads),
/// concurrently where the runtime allows; returns when all have. The thread runtime (OpenMP,
/// Grand Central Dispatch or none) is threads.c's alone.
typedef void (*fa_parallel_body)(void *ctx, int me, int n);
void fa_parallel(int threads, fa_parallel_body body, void *ctx);
/// Waits for every body of the region (OpenMP); a no-op where bodies may run one after another
/// (GCD, one thread). Only a hint that the others have reached it: never needed for results.
void fa_parallel_barrier(void);

#endif  // FA_INTERNAL_H
