// backward.c — the FlashAttention-2 backward loop nest. No ISA code: tiles go to fa_kernels.
//
// For each (batch b, key/value head g) — one work item, one thread:
//  for each chunk of keys (as many as fit dK_acc, dV_acc in the L2 cache):
//   dK_acc = 0, dV_acc = 0                                  (the chunk's rows, in the workspace)
//   for each query head h of the group, for each block of BQ query rows:
//     Qᵀ  = scale·log2(e) · Q[b,h,rows]ᵀ;   dOᵀ = dO[b,h,rows]ᵀ       (pack_qt)
//     L2  = LSE·log2(e);  D = rowsum(dO ∘ O)                  (the forward's O and LSE)
//     dQ_acc = 0
//     for each key block of BK keys of the chunk that some row of the block can see:
//       Sᵀ  = K·Qᵀ (masked on diagonal blocks)                (scores_t)
//       dPᵀ = V·dOᵀ                                           (scores_t)
//       Pᵀ  = 2^(Sᵀ − L2);  dSᵀ = Pᵀ ∘ (dPᵀ − D)               (softmax_grad_t)
//       dV_acc[keys] += Pᵀ · dO[rows]                         (gemm_acc)
//       dK_acc[keys] += dSᵀ · Q[rows]                         (gemm_acc)
//       dQ_acc       += dS · K[keys]                          (gemm_acc, dSᵀ read transposed)
//     dQ[b,h,rows] (+)= scale · dQ_acc            (= in the first chunk, += in later ones)
//   dK[b,g,chunk] = scale · dK_acc;  dV[b,g,chunk] = dV_acc
//
// Five GEMM-sized products per (query block, key block), as in FlashAttention-2. The item
// owns every row of dQ, dK and dV it writes, so no two threads ever add into the same memory:
// no atomics, and a fixed loop order — the gradients are bitwise identical for any thread
// count. The query block (BQ = 96), key block (64) and key chunk never depend on the thread
// count (the chunk follows the L2 size, so the summation order is fixed per machine).
//
// With fewer (batch, kv head) items than threads (MQA or GQA at batch 1, many cores), the
// work is split in two phases that recompute P and dS, seven products instead of five but
// every thread busy:
//   A. items (b, g, key range): dK, dV of the range, as above without dQ;
//   B. items (b, h, query block): dQ, chunk by chunk as above, without dK, dV.
// Each key row's dK, dV and each query row's dQ see the same products in the same order as in
// the one-phase loop (key ranges are whole key blocks; phase B keeps the chunks), so the
// gradients are bitwise the same whichever way a call runs.
//
// Half-precision tensors (fp16, bf16) are widened to fp32 tiles as they are read: a query
// block's Q and dO rows once per block, each K and V block once per query block, O one row
// at a time. dK and dV rows are rounded into their type once, when their chunk is finished;
// dQ, which sums over the chunks, is accumulated in an fp32 copy for the whole call (Lq × Dqk
// per query head: O(N·D), never O(N²)) and rounded once at the end.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "kv_source.h"

enum { BACKWARD_BLOCK_Q = 96, BACKWARD_BLOCK_K = 64 };

/// Per-thread workspace of the backward, offsets in floats, each region FA_ALIGN-aligned.
typedef struct backward_layout {
    int64_t chunk;          ///< keys per chunk (a multiple of BK)
    size_t dk_acc, dv_acc;  ///< chunk × ldk, chunk × ldv
    size_t qt, dot;         ///< Dqk × BQ, Dv × BQ
    size_t st, dpt;         ///< BK × BQ each
    size_t dq_acc;          ///< BQ × ldk
    size_t lse2, lse2_fix, dsum, scratch;  ///< BQ each
    size_t dmod;            ///< BK × BQ: ∂s'/∂s of the score modifiers (softcap)
    size_t qw, dow, orow;   ///< BQ × Dqk, BQ × Dv, Dv: half Q, dO rows, an O row, widened
    size_t kw, vw;          ///< BK × Dqk, BK × Dv: a half K, V block, widened
    // bf16 dot products (Q, K, V all bf16; else size 0), 32-bit pairs:
    size_t qt2, dot2;       ///< ⌈Dqk/2⌉ × BQ, ⌈Dv/2⌉ × BQ: Q, dO paired along d (scores_t_bf16)
    size_t q2, do2;         ///< ⌈BQ/2⌉ × ldk, ⌈BQ/2⌉ × ldv: Q, dO paired along the queries
    size_t k2, ds2;         ///< ⌈BK/2⌉ × ldk, ⌈BK/2⌉ × BQ: K, dS paired along the keys
    int64_t ldk, ldv;       ///< Dqk and Dv rounded up to 16
    int bq, bk;
    size_t per_thread_bytes;
} backward_layout;

/// Whether the backward runs its products over bf16 pairs: Q, K and V all bf16 on an ISA with
/// bf16 dot products (as the forward; see the top of the file).
static int backward_bf16_dots(const fa_problem *p, const fa_kernels *kr) {
    return kr->gemm_acc_bf16 && p->q_dtype == FA_DTYPE_BF16 && p->k_dtype == FA_DTYPE_BF16 &&
           p->v_dtype == FA_DTYPE_BF16;
}

static backward_layout backward_layout_for(const fa_problem *p, const fa_kernels *kr) {
    const fa_shape *s = &p->shape;
    backward_layout l = {0};
    l.bq = (BACKWARD_BLOCK_Q + kr->query_tile - 1) / kr->query_tile * kr->query_tile;
    l.bk = BACKWARD_BLOCK_K;
    l.ldk = (s->head_dim_qk + 15) / 16 * 16;
    l.ldv = (s->head_dim_v + 15) / 16 * 16;
    // The dK/dV accumulators of a chunk take as much as the L2 cache (at least one key block):
    // measured, that beats half the L2 (≈ 6 % at D = 128) and is within 2 % of 4× the L2.
    const int64_t l2 = fa_l2_bytes() > 0 ? fa_l2_bytes() : 512 * 1024;
    int64_t chunk = l2 / (4 * (l.ldk + l.ldv)) / l.bk * l.bk;
    const int64_t all = (s->kv_len + l.bk - 1) / l.bk * l.bk;
    l.chunk = chunk < l.bk ? l.bk : (chunk > all ? all : chunk);
    const size_t bq = (size_t)l.bq, bk = (size_t)l.bk, lk = (size_t)l.chunk;
    const size_t dqk = (size_t)s->head_dim_qk, dv = (size_t)s->head_dim_v;
    const int qh = p->q_dtype != FA_DTYPE_F32;  // q, o and dout share it
    const int b2 = backward_bf16_dots(p, kr);  // then Q, K, V are read as pairs, not widened
    const size_t ldk = (size_t)l.ldk, ldv = (size_t)l.ldv;
    enum { REGIONS = 23 };
    const size_t sizes[REGIONS] = {
        lk * ldk, lk * ldv, b2 ? 0 : dqk * bq, b2 ? 0 : dv * bq, bk * bq, bk * bq, bq * ldk,
        bq, bq, bq, bq, bk * bq, qh && !b2 ? bq * dqk : 0, qh ? bq * dv : 0, qh ? dv : 0,
        p->k_dtype != FA_DTYPE_F32 && !b2 ? bk * dqk : 0,
        p->v_dtype != FA_DTYPE_F32 && !b2 ? bk * dv : 0,
        b2 ? (dqk + 1) / 2 * bq : 0, b2 ? (dv + 1) / 2 * bq : 0, b2 ? (bq + 1) / 2 * ldk : 0,
        b2 ? (bq + 1) / 2 * ldv : 0, b2 ? (bk + 1) / 2 * ldk : 0, b2 ? (bk + 1) / 2 * bq : 0};
    size_t *slots[REGIONS] = {&l.dk_acc, &l.dv_acc, &l.qt, &l.dot, &l.st, &l.dpt, &l.dq_acc,
                              &l.lse2, &l.lse2_fix, &l.dsum, &l.scratch, &l.dmod, &l.qw, &l.dow, &l.orow,
                              &l.kw, &l.vw, &l.qt2, &l.dot2, &l.q2, &l.do2, &l.k2, &l.ds2};
    size_t offsets[REGIONS];
    l.per_thread_bytes = fa_layout_regions(sizes, offsets, REGIONS);
    for (int i = 0; i < REGIONS; i++) *slots[i] = offsets[i];
    return l;
}

/// Threads of a call: all it asks for (with fewer (batch, kv head) items than threads the
/// work is split so that every thread has some; see fa_backward).
static int backward_threads(const fa_problem *p) { return fa_resolve_threads(p->num_threads); }

/// Half dQ: the fp32 dQ the call accumulates, dense [B (1 if packed), Hq, Lq, Dqk].
static fa_strides dq32_strides(const fa_problem *p) {
    const fa_shape *s = &p->shape;
    return fa_strides_bhld(s->q_heads, s->q_len, s->head_dim_qk);
}
static int dq_is_half(const fa_problem *p) { return p->q_dtype != FA_DTYPE_F32; }

/// Floats of the fp32 dQ (0 unless dQ is half).
static fa_status dq32_floats(const fa_problem *p, size_t *n) {
    *n = 0;
    if (!dq_is_half(p)) return FA_OK;
    const fa_shape *s = &p->shape;
    const size_t batches = p->cu_seqlens_q ? 1 : (size_t)s->batch;
    if (__builtin_mul_overflow(batches, (size_t)s->q_heads, n) ||
        __builtin_mul_overflow(*n, (size_t)s->q_len, n) ||
        __builtin_mul_overflow(*n, (size_t)s->head_dim_qk, n))
        return FA_ERR_SIZE_OVERFLOW;
    return FA_OK;
}

fa_status fa_backward_workspace_bytes(const fa_problem *p, size_t *bytes) {
    if (!p || !bytes) return FA_ERR_NULL_POINTER;
    fa_status st = fa_validate_shape_options(p, NULL);
    if (st != FA_OK) return st;
    const backward_layout l = backward_layout_for(p, fa_kernels_for(p->isa));
    size_t total, dq32;
    st = dq32_floats(p, &dq32);
    if (st != FA_OK) return st;
    // Lk × (Dqk + Dv) < 2^31 · 2^32: fits 64 bits; the product with threads is checked.
    if (__builtin_mul_overflow(l.per_thread_bytes, (size_t)backward_threads(p), &total) ||
        __builtin_add_overflow(total, (size_t)FA_ALIGN, &total) ||
        __builtin_mul_overflow(dq32, sizeof(float), &dq32) ||
        __builtin_add_overflow(total, dq32, &total))
        return FA_ERR_SIZE_OVERFLOW;
    *bytes = total;
    return FA_OK;
}

typedef struct backward_plan {
    const fa_problem *p;
    const fa_kernels *kr;
    backward_layout layout;
    float scale;
    int64_t group;
    float *dq32;  ///< half dQ: the fp32 dQ accumulated over the chunks (dq32_strides); else NULL
    int bf16_dots;  ///< the products over bf16 pairs (backward_bf16_dots)
} backward_plan;

/// Row i of entry b, head h of the dQ the loops write: the caller's (fp32), or the fp32 copy.
static float *dq_row(const backward_plan *pl, int64_t b, int64_t h, int64_t i) {
    const fa_problem *p = pl->p;
    if (pl->dq32) {
        const fa_strides s = dq32_strides(p);
        return pl->dq32 + fa_q_entry(p, b, s) + h * s.head + i * s.seq;
    }
    return (float *)p->dq + fa_q_entry(p, b, p->dq_strides) + h * p->dq_strides.head +
           i * p->dq_strides.seq;
}

/// `rows` rows of `width` elements of type t from `src` (row stride ld, elements) as fp32:
/// `src` itself when fp32, else widened into `buf` (row stride width).
static const float *widened_rows(const fa_kernels *kr, const void *src, fa_dtype t,
                                 int64_t ld, int rows, int64_t width, float *buf,
                                 int64_t *ld_out) {
    if (t == FA_DTYPE_F32) {
        *ld_out = ld;
        return (const float *)src;
    }
    for (int i = 0; i < rows; i++)
        kr->widen[t]((const uint16_t *)src + i * ld, buf + i * width, width);
    *ld_out = width;
    return buf;
}

/// Which gradients a pass over a query block produces.
enum { BACKWARD_DKDV = 1, BACKWARD_DQ = 2, BACKWARD_ALL = 3 };

// One block of query rows of head h against the key blocks of [kc0, kc1) it sees: adds into
// dK_acc, dV_acc (rows relative to kc0) and into dQ (written in the first chunk, kc0 = 0),
// as `parts` asks.
static void backward_query_block(const backward_plan *pl, int64_t b, int64_t h, int64_t q0,
                                 int64_t kc0, int64_t kc1, float *ws, int parts) {
    const fa_problem *p = pl->p;
    const fa_kernels *kr = pl->kr;
    const backward_layout *l = &pl->layout;
    const int64_t dqk = p->shape.head_dim_qk, dv = p->shape.head_dim_v;
    const int64_t g = h / pl->group;
    const int bq = l->bq, bk = l->bk;
    const int64_t entry_rows = fa_q_rows_of(p, b);
    const int block_rows = (int)(entry_rows - q0 < bq ? entry_rows - q0 : bq);
    // Rows past the batch entry's valid length are padding: zero dQ, nothing added to dK, dV.
    const int64_t q_valid = fa_q_len_of(p, b) - q0;
    const int rows = (int)(q_valid < 0 ? 0 : (q_valid < block_rows ? q_valid : block_rows));
    const fa_row_band band = fa_row_band_for(p, b);
    if (kc0 == 0 && (parts & BACKWARD_DQ))
        for (int i = rows; i < block_rows; i++) {
            float *di = dq_row(pl, b, h, q0 + i);
            for (int64_t c = 0; c < p->shape.head_dim_qk; c++) di[c] = 0.0f;
        }
    if (rows == 0) return;
    const int vw = kr->vector_width;
    const int rows_padded = (rows + vw - 1) / vw * vw;

    // Element offsets of this block's first Q, O and dO rows and of the group's K, V.
    const size_t qs = fa_dtype_size(p->q_dtype), ks = fa_dtype_size(p->k_dtype);
    const size_t vs = fa_dtype_size(p->v_dtype);
    const char *q_at = (const char *)p->q + (fa_q_entry(p, b, p->q_strides) +
                       h * p->q_strides.head + q0 * p->q_strides.seq) * (int64_t)qs;
    const char *o_at = (const char *)p->o + (fa_q_entry(p, b, p->o_strides) +
                       h * p->o_strides.head + q0 * p->o_strides.seq) * (int64_t)qs;
    const char *dout_at = (const char *)p->dout + (fa_q_entry(p, b, p->dout_strides) +
                          h * p->dout_strides.head + q0 * p->dout_strides.seq) * (int64_t)qs;
    const float *lse = p->lse + fa_q_entry(p, b, p->lse_strides) + h * p->lse_strides.head +
                       q0 * p->lse_strides.seq;
    // K and V rows of (b, g), key 0 on, at their tensors' row strides: a paged entry's one
    // page (validated: every sequence lies in one page).
    const fa_kv_source src = fa_kv_source_for(p, b, g);
    const fa_kv_block first = fa_kv_block_at(&src, 0);
    const char *k = (const char *)first.k, *v = (const char *)first.v;

    float *qt = ws + l->qt, *dot = ws + l->dot, *st = ws + l->st, *dpt = ws + l->dpt;
    float *dq_acc = ws + l->dq_acc, *lse2 = ws + l->lse2, *dsum = ws + l->dsum;
    float *lse2_fix = ws + l->lse2_fix;
    float *scratch = ws + l->scratch, *dmod = ws + l->dmod;
    const fa_score_mods mods = fa_score_mods_for(p, b, h);
    float *dk_acc = ws + l->dk_acc, *dv_acc = ws + l->dv_acc;

    // The band's key blocks (aligned to BK) within this chunk.
    const int64_t kv_begin = fa_row_lo(&band, q0) / l->bk * l->bk;
    const int64_t kv_end = fa_row_hi(&band, q0 + rows - 1);
    const int64_t begin = kv_begin > kc0 ? kv_begin : kc0;
    const int64_t end = kv_end < kc1 ? kv_end : kc1;
    if (kc0 > 0 && end <= begin) return;  // nothing to add to dQ, dK, dV from this chunk

    const int bf16 = pl->bf16_dots;
    uint32_t *qt2 = (uint32_t *)(ws + l->qt2), *dot2 = (uint32_t *)(ws + l->dot2);
    uint32_t *q2 = (uint32_t *)(ws + l->q2), *do2 = (uint32_t *)(ws + l->do2);
    uint32_t *k2 = (uint32_t *)(ws + l->k2), *ds2 = (uint32_t *)(ws + l->ds2);
    // dO rows as fp32 (widened once per block if half), for D.
    int64_t ldq = 0, lddo;
    const float *q = NULL;
    const float *dout = widened_rows(kr, dout_at, p->o_dtype, p->dout_strides.seq, rows, dv,
                                     ws + l->dow, &lddo);
    if (bf16) {
        // Q, dO paired along d for the scores (unscaled: the scale goes on each score), and
        // along the queries for dK, dV.
        const uint16_t *qh = (const uint16_t *)q_at, *gh = (const uint16_t *)dout_at;
        kr->pack_qt_bf16(rows, rows_padded, dqk, qh, p->q_strides.seq, qt2, bq);
        kr->pack_qt_bf16(rows, rows_padded, dv, gh, p->dout_strides.seq, dot2, bq);
        if (parts & BACKWARD_DKDV) {
            kr->pack_pairs_bf16(rows, dqk, qh, p->q_strides.seq, q2, l->ldk);
            kr->pack_pairs_bf16(rows, dv, gh, p->dout_strides.seq, do2, l->ldv);
        }
    } else {
        // Q as fp32 (widened once per block if half); Qᵀ scaled into base 2, dOᵀ as it is.
        q = widened_rows(kr, q_at, p->q_dtype, p->q_strides.seq, rows, dqk, ws + l->qw, &ldq);
        kr->pack_qt(rows, rows_padded, dqk, q, ldq, fa_scale_log2(pl->scale), qt, bq);
        kr->pack_qt(rows, rows_padded, dv, dout, lddo, 1.0f, dot, bq);
    }
    // L2 = LSE·log2(e) in double, split into its float rounding (lse2) and the factor
    // 2^(hi − L2) − 1 that restores the rest (lse2_fix; softmax_grad_t): P then carries only
    // the error of the stored LSE, not a second rounding. D = rowsum(dO ∘ O), summed in
    // double: dS = P·(dP − D) cancels, and D's rounding would pass into every dS of the row.
    for (int i = 0; i < rows_padded; i++) {
        double d = 0.0;
        if (i < rows) {
            int64_t unused;
            const float *oi = widened_rows(kr, o_at + i * p->o_strides.seq * (int64_t)qs,
                                           p->o_dtype, 0, 1, dv, ws + l->orow, &unused);
            const float *gi = dout + i * lddo;
            for (int64_t c = 0; c < dv; c++) d += (double)gi[c] * oi[c];
        }
        const float li = i < rows ? lse[i * p->lse_strides.seq] : -INFINITY;
        const double l2 = (double)li * FA_LOG2E_F64;  // −inf stays −inf
        lse2[i] = (float)l2;
        lse2_fix[i] = isfinite(li) ? (float)expm1(((double)lse2[i] - l2) * FA_LN2_F64) : 0.0f;
        dsum[i] = (float)d;
        scratch[i] = -INFINITY;
    }
    memset(dq_acc, 0, sizeof(float) * (size_t)rows_padded * (size_t)l->ldk);

    for (int64_t k0 = begin; k0 < end; k0 += bk) {
        const int keys = (int)(end - k0 < bk ? end - k0 : bk);
        const fa_tile_kind tile = fa_classify_tile(&mods, q0, rows, k0, keys);
        if (tile == FA_TILE_HIDDEN) continue;  // P = 0: adds nothing
        int64_t lo, hi;
        const int masked = fa_tile_band(&band, q0, rows, k0, keys, &lo, &hi);
        const char *k_at = k + k0 * p->k_strides.seq * (int64_t)ks;
        const char *v_at = v + k0 * p->v_strides.seq * (int64_t)vs;
        const uint16_t *kh = (const uint16_t *)k_at, *vh = (const uint16_t *)v_at;
        // Sᵀ = K·Qᵀ (log2 units, −inf where hidden); dPᵀ = V·dOᵀ: over bf16 pairs, or fp32
        // (K and V widened if half).
        int64_t ldkb = 0, ldvb;
        const float *kb = NULL;
        if (bf16) {
            kr->scores_t_bf16(keys, rows_padded, dqk, kh, p->k_strides.seq, qt2, bq,
                              fa_scale_log2(pl->scale), st, bq, masked, lo, hi, scratch);
            kr->scores_t_bf16(keys, rows_padded, dv, vh, p->v_strides.seq, dot2, bq, 1.0f, dpt,
                              bq, 0, 0, 0, scratch);
        } else {
            kb = widened_rows(kr, k_at, p->k_dtype, p->k_strides.seq, keys, dqk, ws + l->kw, &ldkb);
            const float *vb = widened_rows(kr, v_at, p->v_dtype, p->v_strides.seq, keys, dv,
                                           ws + l->vw, &ldvb);
            kr->scores_t(keys, rows_padded, dqk, kb, ldkb, qt, bq, st, bq, masked, lo, hi, scratch);
            kr->scores_t(keys, rows_padded, dv, vb, ldvb, dot, bq, dpt, bq, 0, 0, 0, scratch);
        }
        // The forward's score modifiers, keeping ∂s'/∂s for the chain rule below.
        const int modded = tile == FA_TILE_MODIFIED || tile == FA_TILE_PARTIAL;
        if (modded)
            fa_modify_tile(kr, tile, &mods, keys, rows, rows_padded, st, bq, q0, k0, scratch,
                           mods.softcap > 0.0f ? dmod : NULL);
        // Pᵀ = 2^(Sᵀ − L2);  dSᵀ = Pᵀ ∘ (dPᵀ − D).
        kr->softmax_grad_t(keys, rows_padded, st, dpt, bq, lse2, lse2_fix, dsum);
        // dS with respect to the raw score: times ∂s'/∂s (1 − tanh² under soft-capping).
        if (modded && mods.softcap > 0.0f)
            for (int j = 0; j < keys; j++)
                for (int i = 0; i < rows_padded; i++) dpt[j * bq + i] *= dmod[j * bq + i];
        float *dv_rows = dv_acc + (k0 - kc0) * l->ldv, *dk_rows = dk_acc + (k0 - kc0) * l->ldk;
        if (bf16) {
            // The same three products over bf16 pairs, P and dS rounded to bf16 (nearest even).
            // dQ += dS·K: dS and K paired along the keys (dS before it is rounded in place).
            if (parts & BACKWARD_DQ) {
                kr->round_pairs_bf16(keys, rows_padded, dpt, bq, ds2, bq);
                kr->pack_pairs_bf16(keys, dqk, kh, p->k_strides.seq, k2, l->ldk);
                kr->gemm_acc_bf16(rows_padded, dqk, (keys + 1) / 2, ds2, 1, bq, k2, l->ldk,
                                  dq_acc, l->ldk);
            }
            // dV += Pᵀ·dO, dK += dSᵀ·Q: P and dS rows rounded in place (each key's queries
            // become pairs along its row), against dO and Q paired along the queries.
            if (parts & BACKWARD_DKDV) {
                const int pairs = (rows + 1) / 2;  // a pad query's P and dS are 0
                kr->round_rows_bf16(keys, rows_padded, st, bq, (uint16_t *)st, 2 * bq);
                kr->round_rows_bf16(keys, rows_padded, dpt, bq, (uint16_t *)dpt, 2 * bq);
                kr->gemm_acc_bf16(keys, dv, pairs, (const uint32_t *)st, bq, 1, do2, l->ldv,
                                  dv_rows, l->ldv);
                kr->gemm_acc_bf16(keys, dqk, pairs, (const uint32_t *)dpt, bq, 1, q2, l->ldk,
                                  dk_rows, l->ldk);
            }
            continue;
        }
        // dV[keys] += Pᵀ·dO;  dK[keys] += dSᵀ·Q  (reductions over the real rows only).
        if (parts & BACKWARD_DKDV) {
            kr->gemm_acc(keys, dv, rows, st, bq, 1, dout, lddo, dv_rows, l->ldv);
            kr->gemm_acc(keys, dqk, rows, dpt, bq, 1, q, ldq, dk_rows, l->ldk);
        }
        // dQ += dS·K  (dS = (dSᵀ)ᵀ: row stride 1, column stride bq).
        if (parts & BACKWARD_DQ)
            kr->gemm_acc(rows_padded, dqk, keys, dpt, 1, bq, kb, ldkb, dq_acc, l->ldk);
    }
    if (!(parts & BACKWARD_DQ)) return;

    for (int i = 0; i < rows; i++) {
        float *di = dq_row(pl, b, h, q0 + i);
        const float *ai = dq_acc + (int64_t)i * l->ldk;
        if (kc0 == 0)
            for (int64_t c = 0; c < dqk; c++) di[c] = pl->scale * ai[c];
        else
            for (int64_t c = 0; c < dqk; c++) di[c] += pl->scale * ai[c];
    }
}

// dK, dV of keys [k0, k1) (at most one chunk) of (batch b, kv head g): every query head of
// the group and every query block, then the rows are written. With BACKWARD_ALL the query
// blocks also add this range's dQ terms (so ranges must then come in chunk order).
static void backward_keys(const backward_plan *pl, int64_t b, int64_t g, int64_t k0, int64_t k1,
                          float *ws, int parts) {
    const fa_problem *p = pl->p;
    const backward_layout *l = &pl->layout;
    const int64_t lq = fa_q_rows_of(p, b);
    const int64_t dqk = p->shape.head_dim_qk, dv = p->shape.head_dim_v;
    float *dk_acc = ws + l->dk_acc, *dv_acc = ws + l->dv_acc;
    const size_t ks = fa_dtype_size(p->k_dtype), vs = fa_dtype_size(p->v_dtype);
    char *dk = (char *)p->dk +
               (fa_kv_entry(p, b, p->dk_strides) + g * p->dk_strides.head) * (int64_t)ks;
    char *dvo = (char *)p->dv +
                (fa_kv_entry(p, b, p->dv_strides) + g * p->dv_strides.head) * (int64_t)vs;
    memset(dk_acc, 0, sizeof(float) * (size_t)(k1 - k0) * (size_t)l->ldk);
    memset(dv_acc, 0, sizeof(float) * (size_t)(k1 - k0) * (size_t)l->ldv);
    for (int64_t h = g * pl->group; h < (g + 1) * pl->group; h++)
        for (int64_t q0 = 0; q0 < lq; q0 += l->bq)
            backward_query_block(pl, b, h, q0, k0, k1, ws, parts);
    // dK = scale · dK_acc, dV = dV_acc: in place, then into their types (one rounding).
    for (int64_t j = k0; j < k1; j++) {
        float *ak = dk_acc + (j - k0) * l->ldk, *av = dv_acc + (j - k0) * l->ldv;
        for (int64_t c = 0; c < dqk; c++) ak[c] = pl->scale * ak[c];
        fa_convert(FA_DTYPE_F32, ak, p->k_dtype, dk + j * p->dk_strides.seq * (int64_t)ks, dqk);
        fa_convert(FA_DTYPE_F32, av, p->v_dtype, dvo + j * p->dv_strides.seq * (int64_t)vs, dv);
    }
}

// One (batch, kv head): every chunk of keys in order, with dQ — the one-phase work item.
static void backward_item(const backward_plan *pl, int64_t b, int64_t g, float *ws) {
    const fa_problem *p = pl->p;
    const backward_layout *l = &pl->layout;
    const int64_t lk = fa_kv_rows_of(p, b), lq = fa_q_rows_of(p, b);
    // A sequence without keys: its dQ rows still have to be written (zero).
    if (lk == 0)
        for (int64_t h = g * pl->group; h < (g + 1) * pl->group; h++)
            for (int64_t q0 = 0; q0 < lq; q0 += l->bq)
                backward_query_block(pl, b, h, q0, 0, 0, ws, BACKWARD_ALL);
    for (int64_t kc0 = 0; kc0 < lk; kc0 += l->chunk)
        backward_keys(pl, b, g, kc0, kc0 + l->chunk < lk ? kc0 + l->chunk : lk, ws, BACKWARD_ALL);
}

// Phase B of the split: dQ of one query block of (b, h), chunk by chunk as backward_item.
static void backward_queries(const backward_plan *pl, int64_t b, int64_t h, int64_t q0, float *ws) {
    const int64_t lk = fa_kv_rows_of(pl->p, b);
    const int64_t chunk = pl->layout.chunk;
    if (lk == 0) backward_query_block(pl, b, h, q0, 0, 0, ws, BACKWARD_DQ);
    for (int64_t kc0 = 0; kc0 < lk; kc0 += chunk)
        backward_query_block(pl, b, h, q0, kc0, kc0 + chunk < lk ? kc0 + chunk : lk, ws, BACKWARD_DQ);
}

// One thread's share of a backward call: phase A's items (whole (b, g) pairs, or dK, dV of a
// key range), then phase B's (dQ of a query block), each claimed one at a time (see forward.c).
typedef struct {
    const backward_plan *pl;
    float *ws;
    size_t stride;  // floats of one thread's tiles
    int split;
    int64_t ranges, range, q_blocks, items_a, items_b;
    int64_t next_a, next_b;
} backward_region;

static void backward_worker(void *ctx, int me, int n) {
    (void)n;
    backward_region *g = ctx;
    const backward_plan *pl = g->pl;
    const fa_problem *p = pl->p;
    const fa_shape *sh = &p->shape;
    float *mine = g->ws + (size_t)me * g->stride;
    for (;;) {
        const int64_t t = __atomic_fetch_add(&g->next_a, 1, __ATOMIC_RELAXED);
        if (t >= g->items_a) break;
        if (!g->split) {
            backward_item(pl, t / sh->kv_heads, t % sh->kv_heads, mine);
            continue;
        }
        const int64_t bg = t / g->ranges, k0 = t % g->ranges * g->range;  // A: dK, dV of a key range
        const int64_t b = bg / sh->kv_heads, lk = fa_kv_rows_of(p, b);
        if (k0 < lk) backward_keys(pl, b, bg % sh->kv_heads, k0, k0 + g->range < lk ? k0 + g->range : lk,
                                   mine, BACKWARD_DKDV);
    }
    for (;;) {  // B: dQ of a query block (phase A never writes dQ: no barrier needed)
        const int64_t t = __atomic_fetch_add(&g->next_b, 1, __ATOMIC_RELAXED);
        if (t >= g->items_b) break;
        const int64_t bh = t / g->q_blocks, q0 = t % g->q_blocks * pl->layout.bq;
        const int64_t b = bh / sh->q_heads;
        if (q0 < fa_q_rows_of(p, b)) backward_queries(pl, b, bh % sh->q_heads, q0, mine);
    }
}

fa_status fa_backward(const fa_problem *p) {
    fa_resolved r;
    fa_status st = fa_validate_mode(p, NULL, &r, FA_MODE_BACKWARD);
    if (st != FA_OK) return st;

    backward_plan pl = {0};
    pl.p = p;
    pl.kr = fa_kernels_for(p->isa);
    pl.layout = backward_layout_for(p, pl.kr);
    pl.bf16_dots = backward_bf16_dots(p, pl.kr);
    pl.scale = r.scale;
    pl.group = r.group;

    size_t bytes = 0;
    st = fa_backward_workspace_bytes(p, &bytes);
    if (st != FA_OK) return st;
    void *owned = NULL;
    void *base = p->workspace;
    if (!base) {  // one allocation per call, before any output is written
        owned = malloc(bytes);
        if (!owned) return FA_ERR_OUT_OF_MEMORY;
        base = owned;
    }
    float *ws = (float *)(((uintptr_t)base + FA_ALIGN - 1) & ~(uintptr_t)(FA_ALIGN - 1));
    const size_t stride = pl.layout.per_thread_bytes / sizeof(float);
    const int threads = backward_threads(p);
    size_t dq32_n = 0;
    (void)dq32_floats(p, &dq32_n);  // computed without overflow by the workspace size above
    if (dq32_n) pl.dq32 = ws + (size_t)threads * stride;  // after every thread's tiles

    const fa_shape *sh = &p->shape;
    const int64_t items = sh->batch * sh->kv_heads;
    // Fewer (b, g) items than threads: the two-phase split (see the top of the file). Phase A
    // cuts each entry's keys into ranges of whole key blocks, about two items per thread.
    const int split = items < threads;
    const int64_t bk = pl.layout.bk, lk_max = fa_max_kv_rows(p);
    const int64_t per_item = (2 * threads + items - 1) / items;  // ranges wanted per (b, g)
    int64_t range = (lk_max + per_item - 1) / per_item;
    range = (range + bk - 1) / bk * bk;
    range = range < bk ? bk : (range > pl.layout.chunk ? pl.layout.chunk : range);
    const int64_t ranges = (lk_max + range - 1) / range;
    const int64_t q_blocks = (fa_max_q_rows(p) + pl.layout.bq - 1) / pl.layout.bq;
    const int64_t items_a = split ? items * ranges : items;
    const int64_t items_b = split ? sh->batch * sh->q_heads * q_blocks : 0;
    backward_region region = {&pl, ws, stride, split, ranges, range, q_blocks, items_a, items_b, 0, 0};
    fa_parallel(threads, backward_worker, &region);
    // Half dQ: every row the items wrote (each entry's rows of each head), rounded once.
    if (pl.dq32)
        for (int64_t b = 0; b < sh->batch; b++)
            for (int64_t h = 0; h < sh->q_heads; h++)
                for (int64_t i = 0; i < fa_q_rows_of(p, b); i++) {
                    const int64_t at = fa_q_entry(p, b, p->dq_strides) + h * p->dq_strides.head +
                                       i * p->dq_strides.seq;
                    fa_convert(FA_DTYPE_F32, dq_row(&pl, b, h, i), p->q_dtype,
                               (char *)p->dq + at * (int64_t)fa_dtype_size(p->q_dtype),
                               sh->head_dim_qk);
                }
    free(owned);
    fa_clear_unpacked_rows(p, 1);
    return FA_OK;
}
