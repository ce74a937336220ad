// kv_source.h — the key/value block source: the only code that turns (batch entry, kv head,
// key index) into row pointers and row strides.
//
// The loops ask it for "the K and V rows of keys key … key + n − 1 of this (entry, kv head)"
// and never compute an address themselves. A source is the caller's tensors, one row stride
// per tensor, or a paged cache (fa_kv_pages): pools of fixed-size pages and the entry's page
// list, rows at one stride within a page. Either way its rows are fp32 or a half type: the
// row kernels (decoding) read half rows directly and widen them as they load, the key-major
// kernels get fp32 tiles widened once per block (fa_kv_block_gather).
//
// A block of keys is one run of rows at one stride when the source is contiguous, and one run
// per page it touches when paged (fa_kv_runs). The row tiles hand the runs to their kernels
// (scores per run; P·V over the runs in order, the same chains as over one run, so the bits
// are those of contiguous rows); the key-major tiles gather a paged block into their fp32 (or
// bf16) tiles first (fa_kv_block_gather), then run as on contiguous rows.
#ifndef FA_KV_SOURCE_H
#define FA_KV_SOURCE_H

#include <string.h>
#include "internal.h"

_Static_assert(FA_KV_F32 == (int)FA_DTYPE_F32 && FA_KV_F16 == (int)FA_DTYPE_F16 &&
                   FA_KV_BF16 == (int)FA_DTYPE_BF16,
               "the row kernels' table is indexed by fa_dtype");

/// Where the keys and values of one (batch entry, kv head) lie, and in what element type.
typedef struct fa_kv_source {
    const void *k, *v;           ///< key 0's rows; paged: the pools' page 0 at this kv head
    int64_t ldk, ldv;            ///< elements between consecutive keys' rows (within a page)
    fa_dtype k_type, v_type;     ///< fp32, or fp16 / bf16 (widened as the kernels load them)
    int64_t page_size;           ///< keys per page; 0: contiguous rows
    const int32_t *pages;        ///< paged: the entry's page indices, in key order
    int64_t k_page, v_page;      ///< paged: elements between consecutive pages of each pool
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
    fa_kv_source s = {0};
    if (fa_is_paged(p)) {
        s.k = fa_elements_at(p->k, p->k_dtype, g * p->k_strides.head);
        s.v = fa_elements_at(p->v, p->v_dtype, g * p->v_strides.head);
        s.ldk = p->k_strides.seq;
        s.ldv = p->v_strides.seq;
        s.k_type = p->k_dtype;
        s.v_type = p->v_dtype;
        s.page_size = p->kv_pages.page_size;
        s.pages = fa_pages_of(p, b);
        s.k_page = p->k_strides.batch;
        s.v_page = p->v_strides.batch;
        return s;
    }
    s.k = fa_elements_at(p->k, p->k_dtype, fa_kv_entry(p, b, p->k_strides) + g * p->k_strides.head);
    s.v = fa_elements_at(p->v, p->v_dtype, fa_kv_entry(p, b, p->v_strides) + g * p->v_strides.head);
    s.ldk = p->k_strides.seq;
    s.ldv = p->v_strides.seq;
    s.k_type = p->k_dtype;
    s.v_type = p->v_dtype;
    return s;
}

/// Whether the source stores K or V in a half type (the key-major kernels then read blocks
/// widened into fp32 tiles: fa_kv_block_gather).
static inline int fa_kv_source_is_half(const fa_kv_source *s) {
    return s->k_type != FA_DTYPE_F32 || s->v_type != FA_DTYPE_F32;
}

/// The rows of keys from `key` on (within the entry's keys): contiguous, or to the end of
/// key's page (fa_kv_run_keys).
static inline fa_kv_block fa_kv_block_at(const fa_kv_source *s, int64_t key) {
    // (Paged, key · ld may overflow: a one-key page's row stride is never multiplied.)
    int64_t k_at, v_at;
    if (s->page_size) {
        const int64_t page = s->pages[key / s->page_size], row = key % s->page_size;
        k_at = page * s->k_page + row * s->ldk;
        v_at = page * s->v_page + row * s->ldv;
    } else {
        k_at = key * s->ldk;
        v_at = key * s->ldv;
    }
    fa_kv_block b = {fa_elements_at(s->k, s->k_type, k_at), fa_elements_at(s->v, s->v_type, v_at),
                     s->ldk, s->ldv, s->k_type, s->v_type};
    return b;
}

/// Keys from `key` on whose rows lie at one stride: to the end of its page, or all.
static inline int64_t fa_kv_run_keys(const fa_kv_source *s, int64_t key) {
    return s->page_size ? s->page_size - key % s->page_size : INT64_MAX;
}

/// The runs of keys key … key + keys − 1 (at most `keys` of them), their offsets counted from
/// `key`: one for contiguous rows, one per page touched when paged. Returns how many.
static inline int fa_kv_runs(const fa_kv_source *s, int64_t key, int keys, fa_row_run *k_runs,
                             fa_row_run *v_runs) {
    int n = 0;
    for (int j = 0; j < keys;) {
        const int64_t left = fa_kv_run_keys(s, key + j);
        const int take = left < keys - j ? (int)left : keys - j;
        const fa_kv_block b = fa_kv_block_at(s, key + j);
        k_runs[n] = (fa_row_run){j, take, b.k, b.ldk};
        v_runs[n] = (fa_row_run){j, take, b.v, b.ldv};
        n++;
        j += take;
    }
    return n;
}

/// A block gathered into contiguous tiles — a paged one, or half rows for the key-major
/// kernels: `keys` K rows into kw [keys × dqk] and V rows into vw [keys × dv], widened to fp32
/// (exactly) when `widen`, else copied as stored (kw and vw hold keys × D floats, enough for
/// either).
static inline fa_kv_block fa_kv_block_gather(const fa_kernels *kr, const fa_kv_source *s,
                                             int64_t key, int keys, int64_t dqk, int64_t dv,
                                             int widen, float *kw, float *vw) {
    fa_kv_block g = {kw, vw, dqk, dv, s->k_type, s->v_type};
    if (widen) g.k_type = g.v_type = FA_DTYPE_F32;
    const size_t kb = fa_dtype_size(s->k_type), vb = fa_dtype_size(s->v_type);
    for (int j = 0; j < keys; j++) {
        const fa_kv_block r = fa_kv_block_at(s, key + j);
        if (widen) {
            kr->widen[s->k_type](r.k, kw + j * dqk, dqk);
            kr->widen[s->v_type](r.v, vw + j * dv, dv);
        } else {
            memcpy((char *)kw + (size_t)j * (size_t)dqk * kb, r.k, (size_t)dqk * kb);
            memcpy((char *)vw + (size_t)j * (size_t)dv * vb, r.v, (size_t)dv * vb);
        }
    }
    return g;
}

/// Row tiles over pages shorter than this ask for the rows FA_PAGED_PREFETCH_KEYS ahead (decode.c).
#define FA_PAGED_PREFETCH_MAX_PAGE 128
#define FA_PAGED_PREFETCH_KEYS 32

/// Asks for the K and V rows (dqk and dv elements each) of keys key … key + keys − 1 ahead of
/// their use: the hardware prefetchers do not follow 2·keys short row streams at a large
/// stride. Into L1 (prefetcht0), or with `l2` into L2 only (prefetcht2: rows read a little
/// later, without displacing what L1 holds now).
static inline void fa_kv_prefetch_into(const fa_kv_source *s, int64_t key, int keys, int64_t dqk,
                                       int64_t dv, int l2) {
    const int64_t kb = (int64_t)fa_dtype_size(s->k_type), vb = (int64_t)fa_dtype_size(s->v_type);
    for (int j = 0; j < keys;) {
        const int64_t left = fa_kv_run_keys(s, key + j);
        const int take = left < keys - j ? (int)left : keys - j;
        const fa_kv_block b = fa_kv_block_at(s, key + j);
        for (int r = 0; r < take; r++) {
            const char *k = (const char *)b.k + r * b.ldk * kb, *v = (const char *)b.v + r * b.ldv * vb;
            for (int64_t d = 0; d < dqk * kb; d += 64) {
                if (l2) __builtin_prefetch(k + d, 0, 1);
                else __builtin_prefetch(k + d, 0, 3);
            }
            for (int64_t d = 0; d < dv * vb; d += 64) {
                if (l2) __builtin_prefetch(v + d, 0, 1);
                else __builtin_prefetch(v + d, 0, 3);
            }
        }
        j += take;
    }
}

static inline void fa_kv_prefetch(const fa_kv_source *s, int64_t key, int keys, int64_t dqk,
                                  int64_t dv) {
    fa_kv_prefetch_into(s, key, keys, dqk, dv, 0);
}

static inline void fa_kv_prefetch_l2(const fa_kv_source *s, int64_t key, int keys, int64_t dqk,
                                     int64_t dv) {
    fa_kv_prefetch_into(s, key, keys, dqk, dv, 1);
}

#endif  // FA_KV_SOURCE_H
