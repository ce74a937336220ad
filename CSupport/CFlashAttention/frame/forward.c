// forward.c — the FlashAttention-2 forward loop nest. No ISA code: tiles go to fa_kernels.
//
// For each (batch b, query head h, query block of BQ rows), with g = h / (Hq / Hkv):
//   Qs = scale · Q[b,h,rows]                               (once per block)
//   m = −inf, l = 0, acc = 0                               (running max, sum, output)
//   for each key block of BK keys that some row of the block can see:
//     S = Qs · K[b,g,keys]ᵀ                                 (kernels->scores)
//     S[i,j] = −inf where key j is causally hidden from row i (diagonal blocks only)
//     m' = max(m, rowmax S);  P = exp(S − m');  α = exp(m − m')
//     l = α·l + rowsum P;     acc = α·acc + P · V[b,g,keys]  (kernels->accumulate_pv)
//   O = acc / l,  LSE = m + log l;  rows that saw no key: O = 0, LSE = −inf
//
// Work items are (b, h, query block); threads claim them one at a time, heaviest first under a
// causal mask, so late (long) query blocks do not finish last. Each item is computed by one
// thread in a fixed order, so results are bitwise independent of the thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#ifdef _OPENMP
int omp_get_thread_num(void);
#endif

/// Everything a work item needs, resolved once per call.
typedef struct forward_plan {
    const fa_problem *p;
    const fa_kernels *kr;
    fa_forward_layout layout;
    float scale;
    int64_t group;          ///< query heads per key/value head
    int64_t causal_offset;  ///< row i sees keys j ≤ i + causal_offset (when causal)
    int causal;
    int64_t q_blocks;       ///< ceil(Lq / BQ)
} forward_plan;

/// The keys row `i` may see end before this index (exclusive), clamped to [0, Lk].
static int64_t visible_end(const forward_plan *pl, int64_t i) {
    const int64_t lk = pl->p->shape.kv_len;
    if (!pl->causal) return lk;
    const int64_t end = i + pl->causal_offset + 1;
    return end < 0 ? 0 : (end > lk ? lk : end);
}

// One query block of one (b, h): the whole inner loop of the algorithm above.
static void forward_tile(const forward_plan *pl, int64_t b, int64_t h, int64_t qb, float *ws) {
    const fa_problem *p = pl->p;
    const fa_kernels *kr = pl->kr;
    const int64_t dqk = p->shape.head_dim_qk, dv = p->shape.head_dim_v;
    const int bq = kr->block_q, bk = kr->block_k;
    const int64_t q0 = qb * bq;
    const int rows = (int)(p->shape.q_len - q0 < bq ? p->shape.q_len - q0 : bq);
    const int64_t g = h / pl->group;

    const float *q = p->q + b * p->q_strides.batch + h * p->q_strides.head + q0 * p->q_strides.seq;
    const float *k = p->k + b * p->k_strides.batch + g * p->k_strides.head;
    const float *v = p->v + b * p->v_strides.batch + g * p->v_strides.head;

    float *q_tile = ws + pl->layout.q_tile;
    float *kt_tile = ws + pl->layout.kt_tile;
    float *s_tile = ws + pl->layout.s_tile;
    float *acc = ws + pl->layout.acc;
    float *row_max = ws + pl->layout.row_max;
    float *row_sum = ws + pl->layout.row_sum;

    // Qs = scale · Q: packed contiguous, so the kernels never see caller strides of Q.
    for (int i = 0; i < rows; i++) {
        const float *qi = q + i * p->q_strides.seq;
        float *ti = q_tile + (int64_t)i * dqk;
        for (int64_t d = 0; d < dqk; d++) ti[d] = qi[d] * pl->scale;
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
    }
    memset(acc, 0, sizeof(float) * (size_t)rows * (size_t)dv);

    // Keys beyond the last row's horizon are hidden from every row: those blocks are skipped.
    const int64_t kv_end = visible_end(pl, q0 + rows - 1);
    // From this key on, some row of the block is masked: element masks are needed.
    const int64_t first_hidden = visible_end(pl, q0);

    for (int64_t k0 = 0; k0 < kv_end; k0 += bk) {
        const int cols = (int)(kv_end - k0 < bk ? kv_end - k0 : bk);
        kr->pack_kt(cols, dqk, k + k0 * p->k_strides.seq, p->k_strides.seq, kt_tile, bk);
        kr->scores(rows, cols, dqk, q_tile, dqk, kt_tile, bk, s_tile, bk);

        const int diagonal = pl->causal && k0 + cols > first_hidden;
        for (int i = 0; i < rows; i++) {
            float *si = s_tile + (int64_t)i * bk;
            if (diagonal) {  // S[i, j] = −inf for keys j ≥ visible_end(i)
                int64_t end = visible_end(pl, q0 + i) - k0;
                for (int j = end < 0 ? 0 : (int)end; j < cols; j++) si[j] = -INFINITY;
            }
            // m' = max(m, rowmax S)
            const float m_old = row_max[i];
            const float block_max = kr->row_max(si, cols);
            const float m_new = block_max > m_old ? block_max : m_old;
            if (m_new == -INFINITY) {  // nothing visible yet: P = 0, state unchanged
                memset(si, 0, sizeof(float) * (size_t)cols);
                continue;
            }
            // P = exp(S − m');  l = α·l + rowsum P
            const float p_sum = kr->exp_sum(si, cols, m_new);
            if (m_new != m_old) {  // α = exp(m − m') < 1; exp(−inf) = 0 on the first block
                const float alpha = expf(m_old - m_new);
                row_sum[i] = row_sum[i] * alpha + p_sum;
                kr->scale_row(acc + (int64_t)i * dv, dv, alpha);
                row_max[i] = m_new;
            } else {
                row_sum[i] += p_sum;
            }
        }
        // acc += P · V
        kr->accumulate_pv(rows, cols, dv, s_tile, bk, v + k0 * p->v_strides.seq, p->v_strides.seq,
                          acc, dv);
    }

    // O = acc / l,  LSE = m + log l  (0 and −inf for rows that saw no key)
    float *o = p->o + b * p->o_strides.batch + h * p->o_strides.head + q0 * p->o_strides.seq;
    for (int i = 0; i < rows; i++) {
        float *oi = o + i * p->o_strides.seq;
        const float l = row_sum[i];
        if (l > 0.0f) {
            const float inv = 1.0f / l;
            const float *ai = acc + (int64_t)i * dv;
            for (int64_t d = 0; d < dv; d++) oi[d] = ai[d] * inv;
        } else {
            for (int64_t d = 0; d < dv; d++) oi[d] = 0.0f;
        }
        if (p->lse) {
            float *lse = p->lse + b * p->lse_strides.batch + h * p->lse_strides.head +
                         (q0 + i) * p->lse_strides.seq;
            *lse = l > 0.0f ? row_max[i] + logf(l) : -INFINITY;
        }
    }
}

fa_status fa_forward(const fa_problem *p) {
    fa_resolved r;
    fa_status st = fa_validate(p, NULL, &r);
    if (st != FA_OK) return st;

    forward_plan pl = {0};
    pl.p = p;
    pl.kr = fa_select_kernels();
    pl.layout = fa_forward_layout_for(&p->shape, pl.kr);
    pl.scale = r.scale;
    pl.group = r.group;
    pl.causal = p->causal != FA_CAUSAL_NONE;
    pl.causal_offset = p->causal == FA_CAUSAL_BOTTOM_RIGHT ? p->shape.kv_len - p->shape.q_len : 0;
    pl.q_blocks = (p->shape.q_len + pl.kr->block_q - 1) / pl.kr->block_q;

    size_t bytes = 0;
    st = fa_workspace_bytes(p, &bytes);
    if (st != FA_OK) return st;
    void *owned = NULL;
    void *base = p->workspace;
    if (!base) {
        owned = malloc(bytes);
        if (!owned) return FA_ERR_OUT_OF_MEMORY;
        base = owned;
    }
    float *ws = (float *)(((uintptr_t)base + FA_ALIGN - 1) & ~(uintptr_t)(FA_ALIGN - 1));
    const size_t ws_stride = pl.layout.per_thread_bytes / sizeof(float);

    const int64_t heads = p->shape.batch * p->shape.q_heads;
    const int64_t items = heads * pl.q_blocks;
    // Items are claimed from a shared counter (dynamic scheduling by hand: the Debian libomp
    // predates the runtime entry points clang emits for schedule(dynamic)).
    int64_t next_item = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(r.threads)
#endif
    {
#ifdef _OPENMP
        float *mine = ws + (size_t)omp_get_thread_num() * ws_stride;
#else
        float *mine = ws;
#endif
        for (;;) {
            const int64_t t = __atomic_fetch_add(&next_item, 1, __ATOMIC_RELAXED);
            if (t >= items) break;
            // Causal: the last query blocks see the most keys, so they are handed out first.
            int64_t qb = t / heads;
            if (pl.causal) qb = pl.q_blocks - 1 - qb;
            const int64_t bh = t % heads;
            forward_tile(&pl, bh / p->shape.q_heads, bh % p->shape.q_heads, qb, mine);
        }
    }
    free(owned);
    return FA_OK;
}
