// kv_source.h — the key/value block source: the only code that turns (batch entry, kv head,
// key index) into row pointers and row strides.
//
// The loops ask it for "the K and V rows of keys key … key + n − 1 of this (entry, kv head)"
// and never compute an address themselves. A source is the caller's tensors, one row stride
// per tensor, in fp32 or a half type: the row kernels (decoding) read half rows directly and
// widen them as they load, the key-major kernels get fp32 tiles widened once per block
// (fa_kv_block_widen). Paged caches (a page table of fixed-size pages) become a further kind
// here: a paged source answers for blocks that stay within one page (the key block size
// divides the page size), and the loops stay as they are.
#ifndef FA_KV_SOURCE_H
#define FA_KV_SOURCE_H

#include "internal.h"

_Static_assert(FA_KV_F32 == (int)FA_DTYPE_F32 && FA_KV_F16 == (int)FA_DTYPE_F16 &&
                   FA_KV_BF16 == (int)FA_DTYPE_BF16,
               "the row kernels' table is indexed by fa_dtype");

/// Where the keys and values of one (batch entry, kv head) lie, and in what element type.
typedef struct fa_kv_source {
    const void *k, *v;           ///< key 0's rows
    int64_t ldk, ldv;            ///< elements between consecutive keys' rows
    fa_dtype k_type, v_type;     ///< fp32, or fp16 / bf16 (widened as the kernels load them)
} fa_kv_source;

/// One block of keys: row pointers of its first key, the strides to the next, the types.
typedef struct fa_kv_block {
    const void *k, *v;
    int64_t ldk, ldv;
    fa_dtype k_type, v_type;
} fa_kv_block;

static inline const void *fa_elements_at(const void *base, fa_dtype t, int64_t n) {
    return (const char *)base + n * (int64_t)fa_dtype_size(t);
}

/// The source of batch entry b's kv head g in a (validated) problem.
static inline fa_kv_source fa_kv_source_for(const fa_problem *p, int64_t b, int64_t g) {
    fa_kv_source s;
    s.k = fa_elements_at(p->k, p->k_dtype, fa_kv_entry(p, b, p->k_strides) + g * p->k_strides.head);
    s.v = fa_elements_at(p->v, p->v_dtype, fa_kv_entry(p, b, p->v_strides) + g * p->v_strides.head);
    s.ldk = p->k_strides.seq;
    s.ldv = p->v_strides.seq;
    s.k_type = p->k_dtype;
    s.v_type = p->v_dtype;
    return s;
}

/// Whether the source stores K or V in a half type (the key-major kernels then read blocks
/// widened into fp32 tiles: fa_kv_block_widen).
static inline int fa_kv_source_is_half(const fa_kv_source *s) {
    return s->k_type != FA_DTYPE_F32 || s->v_type != FA_DTYPE_F32;
}

/// The block of keys from `key` on (within the entry's keys).
static inline fa_kv_block fa_kv_block_at(const fa_kv_source *s, int64_t key) {
    fa_kv_block b = {fa_elements_at(s->k, s->k_type, key * s->ldk),
                     fa_elements_at(s->v, s->v_type, key * s->ldv),
                     s->ldk, s->ldv, s->k_type, s->v_type};
    return b;
}

/// `keys` rows of a block as fp32: half K and V rows widened (exactly) into kw [keys × dqk]
/// and vw [keys × dv]; fp32 rows where they lie.
static inline fa_kv_block fa_kv_block_widen(const fa_kernels *kr, const fa_kv_block *b,
                                            int keys, int64_t dqk, int64_t dv, float *kw,
                                            float *vw) {
    fa_kv_block w = *b;
    if (b->k_type != FA_DTYPE_F32) {
        for (int j = 0; j < keys; j++)
            kr->widen[b->k_type](fa_elements_at(b->k, b->k_type, j * b->ldk), kw + j * dqk, dqk);
        w.k = kw, w.ldk = dqk, w.k_type = FA_DTYPE_F32;
    }
    if (b->v_type != FA_DTYPE_F32) {
        for (int j = 0; j < keys; j++)
            kr->widen[b->v_type](fa_elements_at(b->v, b->v_type, j * b->ldv), vw + j * dv, dv);
        w.v = vw, w.ldv = dv, w.v_type = FA_DTYPE_F32;
    }
    return w;
}

/// Asks for `keys` rows of a block's K and V (dqk and dv elements each) ahead of their use:
/// the hardware prefetchers do not follow 2·keys short row streams at a large stride.
static inline void fa_kv_block_prefetch(const fa_kv_block *b, int keys, int64_t dqk, int64_t dv) {
    const int64_t kb = (int64_t)fa_dtype_size(b->k_type), vb = (int64_t)fa_dtype_size(b->v_type);
    for (int r = 0; r < keys; r++) {
        const char *k = (const char *)b->k + r * b->ldk * kb, *v = (const char *)b->v + r * b->ldv * vb;
        for (int64_t d = 0; d < dqk * kb; d += 64) __builtin_prefetch(k + d, 0, 3);
        for (int64_t d = 0; d < dv * vb; d += 64) __builtin_prefetch(v + d, 0, 3);
    }
}

#endif  // FA_KV_SOURCE_H
