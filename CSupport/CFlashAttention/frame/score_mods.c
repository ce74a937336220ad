// score_mods.c — the elementwise score modifiers: logit soft-capping, ALiBi, element masks.
//
// Applied to a key-major score tile after scores_t, in this order (FlashAttention's):
//   s ← c · tanh(s / c)                  (softcap c > 0; s the scaled score, natural units)
//   s ← s − slope_h · |i + Lk − Lq − j|   (ALiBi, per query head)
//   s ← s + mask[b,h,i,j]  or  −inf where a boolean mask is 0   (element mask)
// Tiles hold scores in log2 units (scale·log2 e was folded into Q), so each element is taken
// to natural units and back. Masked scores (−inf) stay −inf. The tile's row max is recomputed.
// The backward also gets ∂s_capped/∂s = sech²(s/c) (= 1 − tanh², computed without the
// cancellation of 1 − tanh² where tanh rounds to ±1), by which dS is multiplied.
//
// Tiles run through the kernels' vectorised score_mods (kernels/*.c, same definitions); this
// plain C version (tanh through libm) is the general path, kept for tiles a block mask covers
// only partly, and the reference the kernels are written against.
#include <math.h>
#include "internal.h"

void fa_apply_score_mods(const fa_score_mods *m, int keys, int rows, int rows_padded,
                         float *st, int64_t ldst, int64_t q0, int64_t k0, float *block_max,
                         float *derivative) {
    const float c = m->softcap;
    const float slope2 = m->alibi_slope * FA_LOG2E;  // bias in log2 units per key of distance
    for (int i = 0; i < rows_padded; i++) block_max[i] = -INFINITY;
    for (int j = 0; j < keys; j++) {
        float *sj = st + j * ldst;
        float *dj = derivative ? derivative + j * ldst : NULL;
        // Distance of key k0 + j from row q0 + i's diagonal: (q0 + i + offset) − (k0 + j).
        const int64_t base = q0 + m->offset - (k0 + j);
        for (int i = 0; i < rows_padded; i++) {
            float s = sj[i];
            if (s == -INFINITY) {
                if (dj) dj[i] = 0.0f;
                continue;
            }
            if (c > 0.0f) {
                const float x = s * FA_LN2 / c;
                s = c * tanhf(x) * FA_LOG2E;
                if (dj) dj[i] = fa_sech2(x);
            } else if (dj) {
                dj[i] = 1.0f;
            }
            if (m->has_alibi) {
                const int64_t dist = base + i;
                s -= slope2 * (float)(dist < 0 ? -dist : dist);
            }
            // Pad rows (i ≥ rows) are past the problem: their results are discarded, and the
            // masks have no element for them, so they keep their raw scores.
            if (i >= rows) {
                sj[i] = s;
                block_max[i] = s > block_max[i] ? s : block_max[i];
                continue;
            }
            if (m->blocks && m->blocks[(q0 + i) / m->block_q * m->blocks_q +
                                       (k0 + j) / m->block_k * m->blocks_k] == 0) {
                sj[i] = -INFINITY;  // a block marked off
                if (dj) dj[i] = 0.0f;
                continue;
            }
            if (m->mask_kind != FA_MASK_NONE) {
                const int64_t at = (q0 + i) * m->mask_q + (k0 + j) * m->mask_k;
                if (m->mask_kind == FA_MASK_BOOL ? m->mask_bool[at] == 0 : 0) s = -INFINITY;
                else if (m->mask_kind == FA_MASK_ADDITIVE)  // −inf masks whatever s is
                    s = m->mask_add[at] == -INFINITY ? -INFINITY : s + m->mask_add[at] * FA_LOG2E;
                if (s == -INFINITY) {  // masked now: P = 0, and no derivative
                    sj[i] = s;
                    if (dj) dj[i] = 0.0f;
                    continue;
                }
            }
            sj[i] = s;
            block_max[i] = s > block_max[i] ? s : block_max[i];
        }
    }
}

// The block mask over a tile: 0 every block it touches is off, 1 all kept (or no block
// mask), 2 mixed.
static int block_mask_state(const fa_score_mods *m, int64_t q0, int rows, int64_t k0, int keys) {
    if (!m->blocks) return 1;
    int kept = 0, off = 0;
    for (int64_t qb = q0 / m->block_q; qb <= (q0 + rows - 1) / m->block_q; qb++)
        for (int64_t kb = k0 / m->block_k; kb <= (k0 + keys - 1) / m->block_k; kb++) {
            if (m->blocks[qb * m->blocks_q + kb * m->blocks_k]) kept = 1;
            else off = 1;
        }
    return kept ? (off ? 2 : 1) : 0;
}

// Whether the element mask hides every (row, key) of the tile.
static int element_mask_hides(const fa_score_mods *m, int64_t q0, int rows, int64_t k0,
                              int keys) {
    if (m->mask_kind == FA_MASK_NONE) return 0;
    for (int i = 0; i < rows; i++) {
        const int64_t row = (q0 + i) * m->mask_q;
        for (int j = 0; j < keys; j++) {
            const int64_t at = row + (k0 + j) * m->mask_k;
            if (m->mask_kind == FA_MASK_BOOL ? m->mask_bool[at] != 0
                                             : m->mask_add[at] != -INFINITY)
                return 0;  // one visible element: the tile is needed
        }
    }
    return 1;
}

fa_tile_kind fa_classify_tile(const fa_score_mods *m, int64_t q0, int rows, int64_t k0,
                              int keys) {
    if (!m->active) return FA_TILE_PLAIN;
    const int blocks = block_mask_state(m, q0, rows, k0, keys);
    if (blocks == 0 || element_mask_hides(m, q0, rows, k0, keys)) return FA_TILE_HIDDEN;
    if (blocks == 2) return FA_TILE_PARTIAL;
    if (m->softcap > 0.0f || m->has_alibi || m->mask_kind != FA_MASK_NONE) return FA_TILE_MODIFIED;
    return FA_TILE_PLAIN;
}

void fa_prefetch_tile_mask(const fa_score_mods *m, int64_t q0, int rows, int64_t k0,
                           int keys) {
    if (m->mask_kind == FA_MASK_NONE || rows <= 0 || keys <= 0) return;
    const char *base = m->mask_kind == FA_MASK_BOOL ? (const char *)m->mask_bool
                                                     : (const char *)m->mask_add;
    const int64_t size = m->mask_kind == FA_MASK_BOOL ? 1 : 4;
    // Rows of `keys` contiguous elements (key stride 1), or columns of `rows` (query stride 1).
    int64_t lines, along, across, start = (q0 * m->mask_q + k0 * m->mask_k) * size;
    if (m->mask_k == 1) lines = m->mask_q == 0 ? 1 : rows, along = keys, across = m->mask_q;
    else if (m->mask_q == 1) lines = m->mask_k == 0 ? 1 : keys, along = rows, across = m->mask_k;
    else return;  // scattered elements: left to the hardware
    for (int64_t r = 0; r < lines; r++) {
        const char *p = base + start + r * across * size;
        // Every cache line the run touches, the last one included.
        for (int64_t b = 0; b < along * size + 63; b += 64)
            __builtin_prefetch(p + (b < along * size ? b : along * size - 1), 0, 2);
    }
}

fa_tile_mods fa_tile_mods_for(const fa_score_mods *m, int64_t q0, int64_t k0) {
    fa_tile_mods t = {0};
    t.softcap = m->softcap;
    t.has_alibi = m->has_alibi;
    t.alibi_slope2 = m->alibi_slope * FA_LOG2E;
    t.alibi_base = q0 + m->offset - k0;
    const int64_t at = q0 * m->mask_q + k0 * m->mask_k;  // the tile's (row 0, key 0)
    if (m->mask_kind == FA_MASK_BOOL) t.mask_bool = m->mask_bool + at;
    if (m->mask_kind == FA_MASK_ADDITIVE) t.mask_add = m->mask_add + at;
    t.mask_q = m->mask_q;
    t.mask_k = m->mask_k;
    return t;
}
