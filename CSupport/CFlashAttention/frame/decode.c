// decode.c — row tiles: the forward for decoding shapes (at most FA_DECODE_MAX_Q query rows
// per sequence), whole GQA groups at a time.
//
// A tile stacks the query rows of every head of one kv head's group: row t of the group's
// G·Lq_b rows is head g·G + t / Lq_b, query row t mod Lq_b, and FA_ROW_TILE_ROWS of them make
// one tile. Each K/V block is then read once for the whole group (a key-major tile per head
// reads it G times), and the query-major kernels (kernels/row_kernels.h) keep every vector
// lane live for any number of rows. Where a page (or a key's row) holds every kv head side by
// side, a tile stacks the groups of several kv heads (fa_row_heads) and reads each run of
// keys for all of them before the next run. Per tile:
//   q = scale·log2(e) · Q rows (zero-padded to 16)            (once)
//   for each block of fa_row_block_keys keys in the tile's range within its key chunk:
//     s = q · Kᵀ                                              (scores_q)
//     s = −inf outside each row's band (causal, window); soft-capping, ALiBi, masks by the
//         row's own (head, position)                          (fa_apply_score_mods per row)
//     online softmax                                          (softmax_q)
//     acc = α·acc + P·V, the block's P·V formed on its own     (block_pv_q, fold_q)
//   finish each row into O and LSE, or into its chunk's partial state (fa_store_row)
// A row's arithmetic never depends on the other rows of its tile, so the stacking (and the
// thread count) changes no bit.
#include <math.h>
#include <string.h>
#include "forward_plan.h"
#include "kv_source.h"

/// Whether the row tiles run over bf16 pairs: Q, K and V all bf16 on an ISA with bf16 dot
/// row kernels (avx512bf16, neonbf16), head dims the kernel takes. K and V are then read as
/// stored, and P is rounded to bf16 for P·V (as the key-major bf16 path).
static int fa_row_bf16_dots(const fa_forward_plan *pl) {
    const fa_problem *p = pl->p;
    return pl->kr->scores_q_bf16dot && p->q_dtype == FA_DTYPE_BF16 &&
           p->k_dtype == FA_DTYPE_BF16 && p->v_dtype == FA_DTYPE_BF16 &&
           p->shape.head_dim_qk <= FA_ROW_BF16DOT_MAX_DQK;
}

/// One row of a tile: its head, its query position, its band of keys and its modifiers.
typedef struct tile_row {
    int64_t h, i;
    int64_t lo, hi;      ///< keys [lo, hi) are visible (band ∩ the sequence's keys)
    fa_score_mods mods;  ///< its head's modifiers (resolved once per tile, if any are on)
} tile_row;

// The keys the rows see in [k0, k0 + keys): −inf outside each row's band, then the
// elementwise modifiers of the row's head.
static void modify_rows(const tile_row *rows, int n, int64_t k0, int keys, float *s,
                        int64_t lds, int mods_active) {
    for (int r = 0; r < n; r++) {
        float *sr = s + r * lds;
        const int64_t lo = rows[r].lo - k0, hi = rows[r].hi - k0;
        if (lo > 0 || hi < keys) {
            for (int j = 0; j < keys; j++)
                if (j < lo || j >= hi) sr[j] = -INFINITY;
        }
        if (mods_active) {
            // A one-row key-major tile is one query-major row: st[j·1 + 0] = s[r, j].
            float unused_max;
            fa_apply_score_mods(&rows[r].mods, keys, 1, 1, sr, 1, rows[r].i, k0, &unused_max,
                                NULL);
        }
    }
}

// A paged block's V runs for the bf16 pair kernel, whose runs must not split a key pair: as
// they are when every run but the last has an even length (pages of an even size, blocks on
// an even key), else the block's V rows gathered into `scratch` [keys × dv] as one run.
static int pair_runs(fa_row_run *runs, int n, int keys, int64_t dv, uint16_t *scratch) {
    int aligned = 1;
    for (int i = 0; i + 1 < n; i++) aligned &= (runs[i].keys & 1) == 0;
    if (aligned) return n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < runs[i].keys; j++)
            memcpy(scratch + (int64_t)(runs[i].key + j) * dv,
                   (const uint16_t *)runs[i].rows + (int64_t)j * runs[i].ld,
                   (size_t)dv * sizeof(uint16_t));
    runs[0] = (fa_row_run){0, keys, scratch, dv};
    return 1;
}

/// The rows of one kv head in a tile: its keys and values, and its rows [r0, r1).
typedef struct tile_group {
    fa_kv_source src;
    int r0, r1;
} tile_group;

/// The rows of a run of keys in group g's source (every kv head of an entry has the same
/// page boundaries, so the runs of the tile's first head are every head's runs).
static fa_row_run run_in(const tile_group *g, int64_t k0, const fa_row_run *run, int values) {
    const fa_kv_block at = fa_kv_block_at(&g->src, k0 + run->key);
    return (fa_row_run){run->key, run->keys, values ? at.v : at.k, values ? at.ldv : at.ldk};
}

// One step over the keys [k_begin, k_end) of the tile's rows: the online softmax update of
// `state` (the caller owns it: reset before the first range, finished after the last). Each
// block's K and V rows come as runs (one, or one per page of a paged cache): scores per run,
// P·V over the runs in order — the same bits as one run. A tile of several kv heads reads
// each run for all of its heads before the next run (scores, then P·V): what a page holds for
// every head is read as one sweep, and each head's arithmetic is what it would be alone.
// No software prefetch for contiguous rows: the row kernels read K and V as plain forward
// streams, which the hardware prefetchers follow (asking for the next block in software, at
// once or spread over the block, measured slower on Zen 4 and on Zen 2). Short pages read for
// one head at a time are another matter: every page starts a new stream, and a 16-key page
// (8 KB of fp32 K rows at D = 128) ends before the prefetchers have ramped up; asking for the
// rows 32 keys ahead into L2 took page-16 decoding from 0.4 to 0.6 of the contiguous speed
// (Zen 4, 32/8 heads, 32k keys). Tiles of several heads do without it: their sweeps are the
// streams (Zen 2: page 16, 8 heads a tile, 15.3 ms without, 16.6 ms with).
static void attend_rows(const fa_forward_plan *pl, const tile_group *groups, int ng,
                        const tile_row *rows, int n, const float *q, fa_softmax_state *state,
                        float *s, float *pv, uint16_t *pairs, int64_t k_begin, int64_t k_end,
                        int mods_active) {
    const fa_problem *p = pl->p;
    const fa_kernels *kr = pl->kr;
    const fa_row_layout *l = &pl->row_layout;
    const fa_kv_source *src = &groups[0].src;
    const int64_t dqk = p->shape.head_dim_qk, dv = p->shape.head_dim_v;
    const int dots = fa_row_bf16_dots(pl);
    const int block = fa_row_block_keys(p);
    const int prefetch = ng == 1 && src->page_size && src->page_size < FA_PAGED_PREFETCH_MAX_PAGE;
    fa_row_run k_runs[FA_ROW_TILE_HALF_KEYS], v_runs[FA_ROW_TILE_HALF_KEYS];
    for (int64_t k0 = k_begin; k0 < k_end; k0 += block) {
        const int keys = (int)(k_end - k0 < block ? k_end - k0 : block);
        int runs = fa_kv_runs(src, k0, keys, k_runs, v_runs);
        for (int i = 0; i < runs; i++) {
            if (prefetch) {  // the keys FA_PAGED_PREFETCH_KEYS ahead, into L2
                const int64_t at = k0 + k_runs[i].key + FA_PAGED_PREFETCH_KEYS;
                if (at < k_end)
                    fa_kv_prefetch_l2(src, at, (int)(k_end - at < k_runs[i].keys ? k_end - at : k_runs[i].keys), dqk, dv);
            }
            for (int gi = 0; gi < ng; gi++) {
                const tile_group *g = &groups[gi];
                const fa_row_run r = gi == 0 ? k_runs[i] : run_in(g, k0, &k_runs[i], 0);
                if (dots)
                    kr->scores_q_bf16dot(g->r1 - g->r0, r.keys, dqk,
                                         (const uint16_t *)q + (int64_t)g->r0 * 2 * l->ldq,
                                         2 * l->ldq, (const uint16_t *)r.rows, r.ld,
                                         pl->scale_log2, s + g->r0 * l->lds + r.key, l->lds);
                else
                    kr->scores_q[src->k_type](g->r1 - g->r0, r.keys, dqk, q + g->r0 * l->ldq,
                                              l->ldq, r.rows, r.ld, s + g->r0 * l->lds + r.key,
                                              l->lds);
            }
        }
        modify_rows(rows, n, k0, keys, s, l->lds, mods_active);
        kr->softmax_q(n, keys, s, l->lds, state->row_max, state->row_sum, state->alpha);
        if (dots) {
            // P is rounded to bf16 once per block: each head takes all of its runs in one call.
            for (int gi = 0; gi < ng; gi++) {
                const tile_group *g = &groups[gi];
                fa_row_run k_unused[FA_ROW_TILE_HALF_KEYS];
                int nr = gi == 0 ? runs : fa_kv_runs(&g->src, k0, keys, k_unused, v_runs);
                nr = pair_runs(v_runs, nr, keys, dv, pairs);
                kr->block_pv_q_bf16dot(g->r1 - g->r0, keys, dv, s + g->r0 * l->lds, l->lds,
                                       v_runs, nr, pv + g->r0 * l->ldacc, l->ldacc);
            }
        } else if (ng == 1) {
            kr->block_pv_q[src->v_type](n, keys, dv, s, l->lds, v_runs, runs, pv, l->ldacc);
        } else {
            for (int i = 0; i < runs; i++)
                for (int gi = 0; gi < ng; gi++) {
                    const tile_group *g = &groups[gi];
                    const fa_row_run r = gi == 0 ? v_runs[i] : run_in(g, k0, &v_runs[i], 1);
                    kr->block_pv_q[src->v_type](g->r1 - g->r0, keys, dv, s + g->r0 * l->lds,
                                                l->lds, &r, 1, pv + g->r0 * l->ldacc, l->ldacc);
                }
        }
        kr->fold_q(n, dv, state->alpha, pv, l->ldacc, state->acc, state->ldacc);
    }
}

void fa_row_tile(const fa_forward_plan *pl, int64_t b, int64_t pack, int64_t chunk,
                 int64_t split, float *ws) {
    const fa_problem *p = pl->p;
    // A shorter sequence's extra chunks; entries on key-major tiles (forward.c).
    if (split >= fa_splits_of(&pl->split, p, b) || !fa_is_row_entry(p, b)) return;
    const int64_t q_valid = fa_q_len_of(p, b), q_rows = fa_q_rows_of(p, b);
    const int64_t group = pl->group;
    const int64_t g0 = pack * pl->row_heads;
    const int64_t heads = p->shape.kv_heads - g0 < pl->row_heads ? p->shape.kv_heads - g0
                                                                 : pl->row_heads;
    // Padding rows of a padded batch entry: cleared once, by the entry's first item.
    if (chunk == 0 && split == 0)
        for (int64_t hh = g0 * group; hh < (g0 + heads) * group; hh++)
            for (int64_t i = q_valid; i < q_rows; i++) fa_clear_row(p, b, hh, i);
    const int64_t per_head = group * q_valid, total = heads * per_head;
    const int64_t t0 = chunk * FA_ROW_TILE_ROWS;
    if (t0 >= total) return;
    const int n = (int)(total - t0 < FA_ROW_TILE_ROWS ? total - t0 : FA_ROW_TILE_ROWS);

    const fa_row_layout *l = &pl->row_layout;
    const int64_t dqk = p->shape.head_dim_qk;
    const fa_row_band band = fa_row_band_for(p, b);
    tile_row rows[FA_ROW_TILE_ROWS];
    tile_group groups[FA_ROW_TILE_ROWS];
    int ng = 0;
    const int mods_active = fa_score_mods_for(p, b, g0 * group).active;  // the same for every head
    int64_t lo = INT64_MAX, hi = 0;
    float *q = ws + l->q;
    for (int r = 0; r < n; r++) {
        // Tile row t: kv head g0 + t / per_head, its group's head (t mod per_head) / q_valid,
        // query row (t mod per_head) mod q_valid.
        const int64_t t = t0 + r, g = g0 + t / per_head, u = t % per_head;
        if (ng == 0 || (r > 0 && u == 0)) {
            groups[ng] = (tile_group){fa_kv_source_for(p, b, g), r, r};
            ng++;
        }
        groups[ng - 1].r1 = r + 1;
        tile_row *row = &rows[r];
        row->h = g * group + u / q_valid;
        row->i = u % q_valid;
        row->lo = fa_row_lo(&band, row->i);
        row->hi = fa_row_hi(&band, row->i);
        if (mods_active) row->mods = fa_score_mods_for(p, b, row->h);
        if (row->hi > row->lo) {  // rows that see no key do not widen the range
            lo = row->lo < lo ? row->lo : lo;
            hi = row->hi > hi ? row->hi : hi;
        }
        if (fa_row_bf16_dots(pl)) {
            // bf16 dots: the row as stored (bf16, unscaled: the scale goes on each score),
            // zero up to 2·ldq elements (≥ the next multiple of 32).
            uint16_t *dst = (uint16_t *)q + (int64_t)r * 2 * l->ldq;
            const uint16_t *src = (const uint16_t *)fa_q_row(p, b, row->h, row->i);
            for (int64_t d = 0; d < 2 * l->ldq; d++) dst[d] = d < dqk ? src[d] : 0;
            continue;
        }
        // q[r, :] = scale·log2(e) · Q[b, h, i, :], zero up to ldq.
        float *dst = q + (int64_t)r * l->ldq;
        fa_get_q_row(pl->kr, p, fa_q_row(p, b, row->h, row->i), dst, dqk);
        for (int64_t d = 0; d < dqk; d++) dst[d] = pl->scale_log2 * dst[d];
        for (int64_t d = dqk; d < l->ldq; d++) dst[d] = 0.0f;
    }
    fa_softmax_state state = {ws + l->row_max, ws + l->row_sum, ws + l->alpha, ws + l->acc,
                              l->ldacc, n};
    fa_state_reset(&state);
    if (hi > lo) {
        int64_t k_begin, k_end;
        fa_chunk_range(pl, b, split, lo, hi, fa_row_block_keys(p), &k_begin, &k_end);
        attend_rows(pl, groups, ng, rows, n, q, &state, ws + l->s, ws + l->pv,
                    (uint16_t *)(ws + l->pairs), k_begin, k_end, mods_active);
    }
    for (int r = 0; r < n; r++) fa_store_row(pl, b, rows[r].h, rows[r].i, split, &state, r);
}
