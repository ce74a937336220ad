// packed.c — packed variable-length sequences (cu_seqlens): the rows no sequence owns.
//
// With cu_seqlens_q (cu_seqlens_k), batch entry b is the sequence in rows cu[b] … cu[b+1] − 1
// of the packed dimension; internal.h maps entries to rows (fa_q_entry, fa_q_rows_of). Rows
// from cu[batch] to the extent belong to no sequence: they are cleared here, so every output
// element is written by every call, as for padded batches.
#include <math.h>
#include <string.h>
#include "internal.h"

int64_t fa_max_q_rows(const fa_problem *p) {
    if (!p->cu_seqlens_q) return p->shape.q_len;
    int64_t m = 0;
    for (int64_t b = 0; b < p->shape.batch; b++) m = fa_q_len_of(p, b) > m ? fa_q_len_of(p, b) : m;
    return m;
}

int64_t fa_max_kv_rows(const fa_problem *p) {
    if (!p->cu_seqlens_k) return p->shape.kv_len;
    int64_t m = 0;
    for (int64_t b = 0; b < p->shape.batch; b++)
        m = fa_kv_len_of(p, b) > m ? fa_kv_len_of(p, b) : m;
    return m;
}

// rows [from, to) of every head of a [H, L, width] view: set to `value`.
static void fill_rows(float *base, fa_strides s, int64_t heads, int64_t from, int64_t to,
                      int64_t width, float value) {
    if (!base) return;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = from; i < to; i++)
            for (int64_t d = 0; d < width; d++) base[h * s.head + i * s.seq + d] = value;
}

// The same rows of a tensor of element type t set to zero (all-zero bits in every type).
static void zero_rows(void *base, fa_dtype t, fa_strides s, int64_t heads, int64_t from,
                      int64_t to, int64_t width) {
    if (!base) return;
    const size_t size = fa_dtype_size(t);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = from; i < to; i++)
            memset((char *)base + (h * s.head + i * s.seq) * (int64_t)size, 0, (size_t)width * size);
}

void fa_clear_unpacked_rows(const fa_problem *p, int backward) {
    const fa_shape *sh = &p->shape;
    if (p->cu_seqlens_q) {
        const int64_t end = p->cu_seqlens_q[sh->batch];
        if (backward) {
            zero_rows(p->dq, p->q_dtype, p->dq_strides, sh->q_heads, end, sh->q_len, sh->head_dim_qk);
        } else {
            zero_rows(p->o, p->o_dtype, p->o_strides, sh->q_heads, end, sh->q_len, sh->head_dim_v);
            fill_rows(p->lse, p->lse_strides, sh->q_heads, end, sh->q_len, 1, -INFINITY);
        }
    }
    if (p->cu_seqlens_k && backward) {
        const int64_t end = p->cu_seqlens_k[sh->batch];
        zero_rows(p->dk, p->k_dtype, p->dk_strides, sh->kv_heads, end, sh->kv_len, sh->head_dim_qk);
        zero_rows(p->dv, p->v_dtype, p->dv_strides, sh->kv_heads, end, sh->kv_len, sh->head_dim_v);
    }
}
