// kv_source.h — the key/value block source: the only code that turns (batch entry, kv head,
// key index) into row pointers and row strides.
//
// The loops ask it for "the K and V rows of keys key … key + n − 1 of this (entry, kv head)"
// and never compute an address themselves. Today every source is the caller's contiguous fp32
// tensors, one row stride per tensor. Paged caches (a page table of fixed-size pages) and
// half-precision storage (rows converted to fp32 tiles on the fly) become further kinds here:
// a paged source answers for blocks that stay within one page (the key block size divides
// the page size), and the loops stay as they are.
#ifndef FA_KV_SOURCE_H
#define FA_KV_SOURCE_H

#include "internal.h"

/// Where the keys and values of one (batch entry, kv head) lie.
typedef struct fa_kv_source {
    const float *k, *v;  ///< key 0's rows
    int64_t ldk, ldv;    ///< elements between consecutive keys' rows
} fa_kv_source;

/// One block of keys: row pointers of its first key and the strides to the next.
typedef struct fa_kv_block {
    const float *k, *v;
    int64_t ldk, ldv;
} fa_kv_block;

/// The source of batch entry b's kv head g in a (validated) problem.
static inline fa_kv_source fa_kv_source_for(const fa_problem *p, int64_t b, int64_t g) {
    fa_kv_source s;
    s.k = p->k + fa_kv_entry(p, b, p->k_strides) + g * p->k_strides.head;
    s.v = p->v + fa_kv_entry(p, b, p->v_strides) + g * p->v_strides.head;
    s.ldk = p->k_strides.seq;
    s.ldv = p->v_strides.seq;
    return s;
}

/// The block of keys from `key` on (within the entry's keys).
static inline fa_kv_block fa_kv_block_at(const fa_kv_source *s, int64_t key) {
    fa_kv_block b = {s->k + key * s->ldk, s->v + key * s->ldv, s->ldk, s->ldv};
    return b;
}

/// Asks for `keys` rows of a block's K and V (dqk and dv floats each) ahead of their use: the
/// hardware prefetchers do not follow 2·keys short row streams at a large stride.
static inline void fa_kv_block_prefetch(const fa_kv_block *b, int keys, int64_t dqk, int64_t dv) {
    for (int r = 0; r < keys; r++) {
        for (int64_t d = 0; d < dqk; d += 16) __builtin_prefetch(b->k + r * b->ldk + d, 0, 3);
        for (int64_t d = 0; d < dv; d += 16) __builtin_prefetch(b->v + r * b->ldv + d, 0, 3);
    }
}

#endif  // FA_KV_SOURCE_H
